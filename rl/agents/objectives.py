"""Objectives on the transition agents (DrQ-v2, Rainbow): which objective class each agent
builds for ``cfg.objectives``, the slots that hold their params and states in the agent state,
and the pieces every host shares (window K, weighting, metric names).

The objectives themselves implement ``representations.base.Objective`` and live beside their
losses (``representations/taco.py``, ``representations/spr.py``); they are built as
``cls(config, host)`` with the agent as ``host``. World-model objectives use the
``representations`` registry; these transition-agent variants are registered here per agent.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp

import representations
from representations.base import check_loss_scales
from representations.spr import SPRRainbowObjective
from representations.taco import TacoDrQV2Objective

Metrics = dict[str, jax.Array]

_REGISTRY: dict[str, dict[str, type]] = {"drqv2": {"taco": TacoDrQV2Objective},
                                         "rainbow": {"spr": SPRRainbowObjective}}


def register(agent: str, name: str, objective_cls: type) -> None:
    _REGISTRY.setdefault(agent, {})[name] = objective_cls


@flax.struct.dataclass
class ObjectiveSlots:
    """Per objective (keyed by name): trained ``params``, their optimiser state, extra ``state``."""

    params: dict[str, Any]
    opt_states: dict[str, Any]
    states: dict[str, Any]


def available(agent: str) -> dict[str, type]:
    """The objective classes ``agent`` can host: its own variants, and every objective of the
    ``representations`` registry that lists ``agent`` in its ``hosts`` (host-agnostic ones)."""
    generic = {n: representations.get(n) for n in representations.names()}
    valid = {n: c for n, c in generic.items() if agent in getattr(c, "hosts", ())}
    return {**valid, **_REGISTRY.get(agent, {})}


def build(configs: Mapping[str, Any] | None, agent: str, host: Any) -> tuple[Any, ...]:
    """The objectives for ``{name: config}`` in order; errors name what ``agent`` accepts."""
    valid = available(agent)
    objectives = []
    for key, cfg in (configs or {}).items():
        name = getattr(cfg, "name", None)
        if name not in valid:
            raise ValueError(f"objective {name!r} is not available for agent={agent}; valid: "
                             f"{sorted(valid)} or none")
        if name != key:
            raise ValueError(f"objectives[{key!r}] has name {name!r}; an objective config is "
                             f"keyed by its own name")
        objective = valid[name](cfg, host)
        check_loss_scales(objective.loss_keys, objective.loss_scales)
        objectives.append(objective)
    return tuple(objectives)


def window(objectives: tuple[Any, ...]) -> int:
    """The window K the sampler must provide: the largest any objective needs (0: none)."""
    return max((o.needs.window for o in objectives), default=0)


def init_params(objectives: tuple[Any, ...], key: jax.Array, example: Any) -> tuple[dict, dict]:
    """``({name: params}, {name: state})``, one key each (as the agents always split them)."""
    keys = jax.random.split(key, max(len(objectives), 1))
    params, states = {}, {}
    for o, k in zip(objectives, keys):
        params[o.name], states[o.name] = o.init(k, example)
    return params, states


def scaled(objective: Any, losses: Mapping[str, jax.Array]) -> jax.Array:
    """``sum_k scale_k * map_k`` in sorted key order: the objective's unreduced total."""
    check_loss_scales(losses, objective.loss_scales)
    keys = sorted(losses)
    total = float(objective.loss_scales[keys[0]]) * losses[keys[0]]
    for k in keys[1:]:
        total = total + float(objective.loss_scales[k]) * losses[k]
    return total


def named_metrics(objective: Any, losses: Mapping[str, jax.Array], metrics: Metrics,
                  total: jax.Array) -> Metrics:
    """``<name>/<metric>``, ``<name>/loss/<key>`` (unweighted means) and ``<name>/loss``."""
    out = {f"{objective.name}/{k}": v for k, v in metrics.items()}
    out |= {f"{objective.name}/loss/{k}": jnp.mean(v) for k, v in losses.items()}
    out[f"{objective.name}/loss"] = jnp.mean(total)
    return out
