"""A list of objectives on one host (``objective=[repo,taco]``): built, checked, initialised,
evaluated and advanced together, so every agent composes them the same way.

The host (a world model; an agent's own losses) has loss maps ``host_keys`` with scales
``host_scales``; each objective adds its ``loss_keys`` (weighted by its ``loss_scales``: the
objective's attribute where it remaps keys, as TACO on a world model, else its config's) and may
take over host keys (``replaces``). The combined scales are checked once, at construction:
a replaced key the host lacks, a key replaced twice or a key that two parties both produce is a
``ValueError`` naming them.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax

from rl.core import objective as objective_lib
from rl.core.objective import LossMaps, Metrics, ObjectiveInputs, check_loss_scales

Objectives = dict[str, Any]     # slot name (the config key) -> objective


def build(configs: Mapping[str, Any], host: Any) -> Objectives:
    """``{slot: registry[cfg.name](cfg, host)}`` in the configs' order."""
    built = {}
    for slot, cfg in configs.items():
        name = getattr(cfg, "name", None)
        if name is None or not hasattr(cfg, "loss_scales"):
            raise ValueError(f"objectives[{slot!r}] must be an objective config with 'name' and "
                             f"'loss_scales' (valid names: {objective_lib.names()}), got "
                             f"{cfg!r}")
        built[slot] = objective_lib.get(name)(cfg, host)
    return built


def scales_of(objective: Any) -> dict[str, float]:
    return dict(getattr(objective, "loss_scales", None) or objective.cfg.loss_scales)


def replaced_keys(objectives: Objectives, host_keys: tuple[str, ...]) -> tuple[str, ...]:
    """The host keys the objectives take over; each at most once and only keys the host has."""
    owner: dict[str, str] = {}
    for slot, objective in objectives.items():
        for key in objective.replaces:
            if key not in host_keys:
                raise ValueError(f"objective {slot!r} replaces the loss {key!r}, which the host "
                                 f"does not have (its losses: {sorted(host_keys)})")
            if key in owner:
                raise ValueError(f"objectives {owner[key]!r} and {slot!r} both replace the loss "
                                 f"{key!r}; at most one objective may replace a key")
            owner[key] = slot
    return tuple(owner)


def loss_scales(objectives: Objectives, host_keys: tuple[str, ...],
                host_scales: Mapping[str, float]) -> dict[str, float]:
    """The scales of every map the total sums: the host's minus replaced keys, then each
    objective's. Raises on a key produced twice."""
    check_loss_scales(host_keys, host_scales)
    dropped = replaced_keys(objectives, host_keys)
    scales = {k: v for k, v in host_scales.items() if k not in dropped}
    owner = {k: "the host" for k in scales}
    for slot, objective in objectives.items():
        own = scales_of(objective)
        check_loss_scales(objective.loss_keys, own)
        for key, value in own.items():
            if key in owner:
                raise ValueError(f"the loss {key!r} comes from both {owner[key]} and objective "
                                 f"{slot!r}; rename one or let {slot!r} replace it")
            owner[key] = f"objective {slot!r}"
            scales[key] = value
    return scales


def init(objectives: Objectives, key: jax.Array,
         example: ObjectiveInputs) -> tuple[dict[str, Any], dict[str, Any]]:
    """Params and states keyed by slot (one key each)."""
    params, states = {}, {}
    for slot, k in zip(objectives, jax.random.split(key, max(len(objectives), 1))):
        params[slot], states[slot] = objectives[slot].init(k, example)
    return params, states


def losses(objectives: Objectives, params: Mapping[str, Any], states: Mapping[str, Any],
           inputs: ObjectiveInputs, key: jax.Array
           ) -> tuple[LossMaps, Metrics, dict[str, Metrics]]:
    """All objectives' maps and metrics (merged), and each one's metrics (for its
    ``update_state``)."""
    maps, merged, each = {}, {}, {}
    for slot, k in zip(objectives, jax.random.split(key, max(len(objectives), 1))):
        own, metrics = objectives[slot].loss(params[slot], states[slot], inputs, k)
        maps |= own
        merged |= metrics
        each[slot] = metrics
    return maps, merged, each


def update_states(objectives: Objectives, states: Mapping[str, Any],
                  metrics: Mapping[str, Metrics]) -> dict[str, Any]:
    return {slot: objective.update_state(states[slot], metrics[slot])
            for slot, objective in objectives.items()}
