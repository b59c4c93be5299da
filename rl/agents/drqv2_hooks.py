"""Extension points of DrQ-v2 (for TACO, DrM, ...), with the faithful DrQ-v2 defaults.

See the docstring of ``rl.agents.drqv2`` for where each hook runs inside ``update``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.agents.base import check_aux_hooks
from rl.agents.drqv2_networks import DrQV2Params

Params = Any
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class AuxState:
    """Plug-in state inside the agent state.

    ``params`` / ``opt_states``: one entry per aux loss, keyed by its name.
    ``extra``: gradient-free plug-in state (e.g. DrM's dormant ratio and awakening step),
    made by ``DrQV2Hooks.init_extra`` and changed only by ``observe_actor_activations``.
    """

    params: dict[str, Params]
    opt_states: dict[str, Any]
    extra: Any


class AuxLossFn(Protocol):
    def __call__(self, params: DrQV2Params, aux_params: Params, batch: Any, features: jax.Array,
                 key: jax.Array) -> tuple[jax.Array, Metrics]:
        """Scalar loss and metrics.

        ``params``: the agent's online params (gradients flow into ``params.encoder`` and
        ``params.critic`` if the loss uses them; stop them where the method says so);
        ``batch``: the un-augmented batch from ``sample``; ``features``: the encoder output
        of the augmented ``batch.obs`` (with gradient to the encoder).
        """


@dataclasses.dataclass(frozen=True)
class AuxLoss:
    """An extra loss with its own parameters and Adam optimiser.

    ``separate_step=False`` (default): the loss is added (times ``weight``) to the critic loss,
    so the encoder takes one Adam step on the sum. ``separate_step=True``: after the critic,
    actor and target updates, the loss takes its own Adam step over the encoder and its own
    params with its own optimiser state (TACO's official ``update_taco``); ``features`` are then
    recomputed with the updated encoder.
    """

    name: str
    init: Callable[[jax.Array, jax.Array], Params]   # (key, features [1, repr_dim]) -> params
    loss: AuxLossFn
    lr: float | None = None                          # None: the agent's cfg.lr
    weight: float = 1.0
    separate_step: bool = False


@flax.struct.dataclass
class TargetInputs:
    """What a value-target function may use; everything is already free of gradients."""

    reward: jax.Array         # [B] n-step discounted reward sum
    discount: jax.Array       # [B] gamma^n times the env discounts along the n steps
    next_q1: jax.Array        # [B] target critic at (next_obs, next_action)
    next_q2: jax.Array        # [B]
    next_features: jax.Array  # [B, repr_dim] online encoder on augmented next_obs
    next_action: jax.Array    # [B, A] actor sample with std(step) and stddev_clip
    aux: AuxState
    step: jax.Array           # agent step


ValueTargetFn = Callable[[TargetInputs], tuple[jax.Array, Metrics]]
NoiseStdFn = Callable[[AuxState, jax.Array], jax.Array]        # (aux, step) -> scalar std
ObserveActivationsFn = Callable[[AuxState, dict, jax.Array], tuple[AuxState, Metrics]]


def min_q_target(inputs: TargetInputs) -> tuple[jax.Array, Metrics]:
    """DrQ-v2's target: ``reward + discount * min(Q1', Q2')``."""
    return inputs.reward + inputs.discount * jnp.minimum(inputs.next_q1, inputs.next_q2), {}


def _empty_extra() -> dict:
    return {}


@dataclasses.dataclass(frozen=True)
class DrQV2Hooks:
    """Hooks passed to ``DrQV2Agent``; the defaults are plain DrQ-v2.

    aux_losses: extra (representation) losses, see ``AuxLoss``.
    value_target: critic target from ``TargetInputs`` (DrM mixes in an expectile V).
    noise_std: exploration/target/actor std from ``(aux, step)``; ``None`` uses
        ``cfg.stddev_schedule`` (DrM's awaken exploration reads the dormant ratio in ``aux.extra``).
    observe_actor_activations: if set, ``update`` first runs the actor on the (stopped)
        features of the augmented obs with the ``"intermediates"`` collection mutable and passes
        them here (DrM computes the dormant ratio and sets its awakening step).
    init_extra: makes the initial ``aux.extra``.
    action_encoder: if set, a module ``phi`` mapping actions ``[B, |A|]`` to latent actions; the
        critic then sees ``Q(features, phi(a))`` everywhere (TACO). ``phi``'s params
        (``params.action_encoder``) take the critic loss's gradient with an Adam of the encoder's
        learning rate, and join the encoder in aux losses' separate steps.
    window_horizon: if > 0, ``sample`` draws ``rl.replay.TransitionWindows`` with this horizon
        (whole windows inside one episode); the RL losses use ``batch.transition`` and aux
        losses get the whole batch (TACO's ``a_{t:t+K-1}`` and ``o_{t+K}``).
    """

    aux_losses: tuple[AuxLoss, ...] = ()
    value_target: ValueTargetFn = min_q_target
    noise_std: NoiseStdFn | None = None
    observe_actor_activations: ObserveActivationsFn | None = None
    init_extra: Callable[[], Any] = _empty_extra
    action_encoder: nn.Module | None = None
    window_horizon: int = 0

    def __post_init__(self) -> None:
        check_aux_hooks(self.aux_losses, self.window_horizon)


def perturb(params: Params, fresh_params: Params, alpha: jax.Array | float,
            where: Callable[[tuple, jax.Array], bool] | None = None) -> Params:
    """Shrink and perturb: ``alpha * params + (1 - alpha) * fresh_params`` leaf by leaf.

    ``where(path, leaf)`` picks the leaves to change (others are kept); ``None`` changes all.
    DrM changes only dense weights and biases: pass ``rl.core.nets.is_dense_param``.
    """
    def mix(path: tuple, old: jax.Array, new: jax.Array) -> jax.Array:
        if where is not None and not where(path, old):
            return old
        return alpha * old + (1.0 - alpha) * new
    return jax.tree_util.tree_map_with_path(mix, params, fresh_params)

