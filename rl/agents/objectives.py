"""Objectives on the transition agents (DrQ-v2, Rainbow): which objective class each agent
builds for ``cfg.objectives``, the slots that hold their params and states in the agent state,
and the pieces every host shares (window K, weighting, metric names).

The objectives themselves implement ``rl.core.objective.Objective`` and live beside their
losses (``representations/taco.py``, ``representations/spr.py``); they are built as
``cls(config, host)`` with the agent as ``host``: the agent's own registered variant of a name
(``register(name, cls, host=agent)``) or a host-agnostic class (``rl.core.objective.available``).
"""
from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp

from rl.core import objective as objective_lib
from rl.core.objective import check_loss_scales

Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class ObjectiveSlots:
    """Per objective (keyed by name): trained ``params``, their optimiser state, extra ``state``."""

    params: dict[str, Any]
    opt_states: dict[str, Any]
    states: dict[str, Any]


def check_available(configs: Mapping[str, Any] | None, agent: str) -> dict[str, type]:
    """The classes ``agent`` can build (``rl.core.objective.available``); raises naming an
    objective of ``configs`` it cannot host, and the ones it can."""
    valid = objective_lib.available(agent)
    for key, cfg in (configs or {}).items():
        name = getattr(cfg, "name", None)
        if name not in valid:
            raise ValueError(f"objective {name!r} is not available for agent={agent}; valid: "
                             f"{sorted(valid)} or none")
        if name != key:
            raise ValueError(f"objectives[{key!r}] has name {name!r}; an objective config is "
                             f"keyed by its own name")
        check = getattr(valid[name], "check_config", None)   # what this host refuses of cfg
        if check is not None:
            check(cfg)
    return valid


def build(configs: Mapping[str, Any] | None, agent: str, host: Any) -> tuple[Any, ...]:
    """The objectives for ``{name: config}`` in order; errors name what ``agent`` accepts."""
    valid = check_available(configs, agent)
    objectives = []
    for key, cfg in (configs or {}).items():
        objective = valid[cfg.name](cfg, host)
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
