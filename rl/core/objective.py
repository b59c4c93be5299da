"""The one objective protocol, for every agent: what an objective needs, what it is given,
what it returns; and ``weigh`` (loss maps x ``loss_scales``).

An objective is a representation loss that does not care which agent or model made its
features. Every agent (DrQ-v2, Rainbow, the imagination agent) hosts a list of them:

    obj = get(cfg.name)(cfg, host)                       # host: what the agent offers (below)
    params, state = obj.init(key, example)                  # example: ObjectiveInputs of shape [1]
    losses, metrics = obj.loss(params, state, inputs, key)  # unreduced maps, keys = obj.loss_keys
    state = obj.update_state(state, metrics)                # after the agent's step (duals, EMAs)

- ``needs`` (``Needs``) says what the agent's sampler must provide: windows of K future steps,
  augmented views; the agent reads it before it builds its sampler.
- ``loss`` returns maps of one shape per agent: ``[B]`` for transition agents (DrQ-v2, Rainbow),
  ``[B, T]`` for sequence agents (world models). The agent multiplies them by ``loss_scales``
  (and by its per-sample weights, e.g. PER) and reduces them itself.
- ``replaces``: loss keys of the host (e.g. the world model's ``kl``) that this objective takes
  over; the host drops its own map of that key (RePo's KL budget replaces the free-nats KL).
- ``params`` are trained by the host's optimiser step that the objective joins (the model step
  of a world model, the critic/encoder step of DrQ-v2 unless ``needs.separate_step``); ``state``
  is what is not trained by that gradient (RePo's dual variable and its Adam state, EMA
  targets): read-only in ``loss``, advanced by ``update_state``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Protocol

import jax
import jax.numpy as jnp

from rl.core.registry import Registry

Params = Any
ObjectiveState = Any
LossMaps = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Needs:
    """What an objective asks of the agent's sampler and update.

    window: K > 0 asks for the K steps after each sampled step (``rl.replay.TransitionWindows``
        on transition agents; sequence agents already have them inside ``[B, T]``).
    views: extra independently augmented views of the observations (0: none).
    separate_step: the objective takes its own optimiser step after the agent's (TACO on
        DrQ-v2) instead of joining the agent's loss.
    """

    window: int = 0
    views: int = 0
    separate_step: bool = False

    def __post_init__(self) -> None:
        for name in ("window", "views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Needs.{name} must be an int >= 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ObjectiveInputs:
    """What an agent hands an objective's ``loss`` (a plain container, built inside the jit).

    batch: what the agent sampled (``Transitions``, ``TransitionWindows`` or ``Sequences``).
    features: the agent's features of ``batch``'s observations, with gradient: ``[B, F]``
        (transition agents: the encoder output of the augmented obs) or ``[B, T, F]``.
    encode: ``(obs, key) -> features`` with the online params and gradient (fresh augmented
        views, future frames); ``None`` where the agent has no such function.
    target_encode: the same through the agent's target network (no gradient), or ``None``.
    model: the world model (sequence agents) or ``None``; ``model_out`` its ``observe`` output.
    extras: anything agent-specific an objective may use, keyed by name (Rainbow's projection,
        DrQ-v2's latent actions); an objective that needs a key the agent lacks must say so in
        its constructor.
    step: the agent step.
    """

    batch: Any
    features: jax.Array
    encode: Optional[Callable[..., jax.Array]] = None
    target_encode: Optional[Callable[..., jax.Array]] = None
    model: Any = None
    model_out: Any = None
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    step: Any = 0


class Objective(Protocol):
    name: str
    loss_keys: tuple[str, ...]
    needs: Needs
    replaces: tuple[str, ...]

    def init(self, key: jax.Array, example: ObjectiveInputs) -> tuple[Params, ObjectiveState]:
        """Trainable params and extra state (either may be an empty dict)."""

    def loss(self, params: Params, state: ObjectiveState, inputs: ObjectiveInputs,
             key: jax.Array) -> tuple[LossMaps, Metrics]:
        """Unreduced loss maps keyed by ``loss_keys``, and scalar metrics."""

    def update_state(self, state: ObjectiveState, metrics: Metrics) -> ObjectiveState:
        """Advance the extra state after the agent's step (pure)."""


class ObjectiveBase:
    """Defaults for objectives without params, state, needs or replaced keys."""

    name: str = ""
    loss_keys: tuple[str, ...] = ()
    needs: Needs = Needs()
    replaces: tuple[str, ...] = ()

    def init(self, key: jax.Array, example: Any = None) -> tuple[Params, ObjectiveState]:
        del key, example
        return {}, {}

    def update_state(self, state: ObjectiveState, metrics: Metrics) -> ObjectiveState:
        del metrics
        return state


# The objective registry. Each objective module registers its class at import
# (``register(name, cls)``, ``cls(config, host)`` with ``cls.Config``), and importing
# ``representations`` (a plugin: ``rl.core.registry``) imports every module of the package: a
# new objective is one file. World-model hosts build the registered class; a transition agent
# builds its own variant where one is registered for it (``register(name, cls, host=agent)``:
# TACO on DrQ-v2, SPR on Rainbow), else a registered class that lists it in ``cls.hosts``.
REGISTRY = Registry("objective")
_VARIANTS: dict[str, dict[str, type]] = {}     # host agent -> {name: class}
unregister, get, names = REGISTRY.unregister, REGISTRY.get, REGISTRY.names


def register(name: str, cls: type, host: Optional[str] = None) -> None:
    """``cls`` as objective ``name``; with ``host``, as that agent's own variant of it."""
    if host is None:
        REGISTRY.register(name, cls)
        return
    variants = _VARIANTS.setdefault(host, {})
    if name in variants and variants[name] is not cls:
        raise ValueError(f"objective {name!r} already has a variant for host {host!r}")
    variants[name] = cls


def available(host: str) -> dict[str, type]:
    """The objective classes agent ``host`` can build, by name: its own variants, and the
    registered classes that list ``host`` in their ``hosts``."""
    generic = {n: REGISTRY.get(n) for n in REGISTRY.names()}
    usable = {n: c for n, c in generic.items() if host in getattr(c, "hosts", ())}
    return {**usable, **_VARIANTS.get(host, {})}


def check_loss_scales(loss_keys: Any, loss_scales: Mapping[str, float]) -> None:
    """Raise ``ValueError`` naming missing and unknown keys unless the key sets are equal."""
    keys, scales = set(loss_keys), set(loss_scales)
    if keys != scales:
        missing, unknown = sorted(keys - scales), sorted(scales - keys)
        raise ValueError(f"loss_scales keys do not match the losses: missing {missing}, "
                         f"unknown {unknown}; losses are {sorted(keys)}")


def weigh(losses: LossMaps, loss_scales: Mapping[str, float]) -> tuple[jax.Array, Metrics]:
    """``sum_k scale_k * mean(loss_k)`` and the unweighted means as ``loss/<key>`` metrics."""
    check_loss_scales(losses, loss_scales)
    shapes = {k: v.shape for k, v in losses.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"loss maps must share one [B, T] shape, got {shapes}")
    means = {k: jnp.mean(v) for k, v in losses.items()}
    total = sum(float(loss_scales[k]) * means[k] for k in sorted(means))
    return total, {f"loss/{k}": v for k, v in means.items()}
