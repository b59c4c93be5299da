"""The representation-objective protocol and ``weigh`` (loss maps x ``loss_scales``).

An objective adds unreduced ``[B, T]`` loss maps on top of a world model's outputs:

    obj = representations.get(cfg.name)(cfg, world_model)
    params, state = obj.init(key)        # params: trained with the world model's optimiser
    losses, metrics = obj.loss(params, state, batch, wm_outputs, key)
    total, weighted = weigh(losses, cfg.loss_scales)
    state = obj.update_state(state, metrics)     # after the model step (dual variables, EMAs)

``params`` are trainable by the model optimiser (projection heads, ...). ``state`` is everything
an objective keeps that is not trained by that gradient (RePo's KL dual variable and its own Adam
state, EMA targets); it is passed in read-only and advanced by ``update_state``.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

import jax
import jax.numpy as jnp

Params = Any
ObjectiveState = Any
LossMaps = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class Objective(Protocol):
    name: str
    loss_keys: tuple[str, ...]

    def init(self, key: jax.Array) -> tuple[Params, ObjectiveState]:
        """Trainable params and extra state (either may be an empty dict)."""

    def loss(self, params: Params, state: ObjectiveState, batch: Any, wm_outputs: Any,
             key: jax.Array) -> tuple[LossMaps, Metrics]:
        """Unreduced ``[B, T]`` loss maps keyed by ``loss_keys``, and scalar metrics."""

    def update_state(self, state: ObjectiveState, metrics: Metrics) -> ObjectiveState:
        """Advance the extra state after the model step (pure)."""


class ObjectiveBase:
    """Defaults for objectives without params or state."""

    name: str = ""
    loss_keys: tuple[str, ...] = ()

    def init(self, key: jax.Array) -> tuple[Params, ObjectiveState]:
        del key
        return {}, {}

    def update_state(self, state: ObjectiveState, metrics: Metrics) -> ObjectiveState:
        del metrics
        return state


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
