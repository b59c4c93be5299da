"""Extension points of Rainbow: auxiliary losses on window samples (the place for SPR).

An ``AuxLoss`` is added per sample to the C51 cross-entropy before the PER importance weights
(SPR's ``loss = (rl + 5 * spr) * is_weight``), inside the same value-and-grad: its gradient
reaches the encoder and the head's first layers through ``params`` and ``inputs.latent``, and
its own parameters (SPR's transition model and predictor) in ``state.aux.params[name]`` take
an Adam step (same lr/eps) after clipping to ``cfg.max_grad_norm`` separately (SPR clips the
dynamics model on its own). Priorities stay the C51 KL.

What a loss can use (``rl.agents.rainbow.RainbowAgent.nets``, a ``RainbowNetworks``):
``nets.prepare(obs, key)`` (uint8 stacks -> augmented float images), ``nets.encode(params,
images)`` (spatial latent, renormalised), ``nets.project(params, latent)`` (the head's first
layer of every stream, no noise, no ReLU: SPR's projection), ``nets.logits``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import flax
import jax

from rl.agents.base import check_aux_hooks

Params = Any
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class AuxInputs:
    """What ``update`` hands an aux loss besides the params."""

    batch: Any               # what ``sample`` returned (``TransitionWindows`` if window_horizon)
    latent: jax.Array        # [B, h, w, c] online encoder output of the augmented obs_t (with
                             # gradient; the same latent the C51 loss uses)
    target_params: Params    # the target Q network's variables (no gradient)
    step: jax.Array          # agent step


class AuxLossFn(Protocol):
    def __call__(self, params: Params, aux_params: Params, inputs: AuxInputs,
                 key: jax.Array) -> tuple[jax.Array, Metrics]:
        """Per-sample loss ``[B]`` (weighted by PER and averaged by the agent) and metrics."""


@dataclasses.dataclass(frozen=True)
class AuxLoss:
    name: str
    init: Callable[[jax.Array, jax.Array], Params]   # (key, latent [1, h, w, c]) -> params
    loss: AuxLossFn
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class RainbowHooks:
    """``aux_losses``: see ``AuxLoss``. ``window_horizon`` K > 0: ``sample`` draws
    ``rl.replay.TransitionWindows`` with ``full_window=False`` (starts near an episode's end
    are kept; ``future_valid`` masks the steps after it, SPR's done-masking); the C51 loss uses
    ``batch.transition``."""

    aux_losses: tuple[AuxLoss, ...] = ()
    window_horizon: int = 0

    def __post_init__(self) -> None:
        check_aux_hooks(self.aux_losses, self.window_horizon)


def combine(a: RainbowHooks, b: RainbowHooks) -> RainbowHooks:
    """Both hooks' aux losses; at most one of them may set ``window_horizon``."""
    if a.window_horizon and b.window_horizon:
        raise ValueError("both hooks set window_horizon")
    return RainbowHooks(aux_losses=a.aux_losses + b.aux_losses,
                        window_horizon=a.window_horizon or b.window_horizon)
