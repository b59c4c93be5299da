"""Shrink and perturb (Ash & Adams 2020; DrM's perturbation of chosen layers), pure functions,
and their use on an agent state's named networks (``rl.agents.base``: ``state.nets``,
``state.opt_states``)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import jax
import optax

Params = Any


def perturb(params: Params, fresh_params: Params, alpha: jax.Array | float,
            where: Callable[[tuple, jax.Array], bool] | None = None) -> Params:
    """``alpha * params + (1 - alpha) * fresh_params`` leaf by leaf.

    ``where(path, leaf)`` picks the leaves to change (others are kept); ``None`` changes all.
    DrM changes only dense weights and biases: pass ``rl.core.nets.is_dense_param``.
    """
    def mix(path: tuple, old: jax.Array, new: jax.Array) -> jax.Array:
        if where is not None and not where(path, old):
            return old
        return alpha * old + (1.0 - alpha) * new
    return jax.tree_util.tree_map_with_path(mix, params, fresh_params)


def check_names(names: Iterable[str], valid: Iterable[str], what: str) -> tuple[str, ...]:
    """``names`` as a tuple; a ValueError names those not in ``valid``."""
    names = (names,) if isinstance(names, str) else tuple(names)
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ValueError(f"no {what} named {unknown}; this agent has {sorted(valid)}")
    return names


def perturb_nets(state: Any, fresh: Mapping[str, Params], alpha: jax.Array | float,
                 names: Iterable[str],
                 where: Callable[[tuple, jax.Array], bool] | None = None) -> Any:
    """``state`` with ``state.nets[name]`` perturbed toward ``fresh[name]`` (``perturb``) for
    each of ``names``; ``fresh``: e.g. the host's ``init_params(key)``."""
    names = check_names(names, state.nets, "nets")
    return state.replace(nets={**state.nets, **{
        name: perturb(state.nets[name], fresh[name], alpha, where) for name in names}})


def reset_opt_states(state: Any, optimizers: Mapping[str, optax.GradientTransformation],
                     params: Mapping[str, Params], names: Iterable[str]) -> Any:
    """``state`` with ``state.opt_states[name]`` re-initialised, ``optimizers[name].init(
    params[name])``, for each of ``names``; ``optimizers`` and ``params`` are the host's
    ``optimizers`` and ``opt_params(state)`` (the params each optimiser steps)."""
    names = check_names(names, state.opt_states, "opt_states")
    return state.replace(opt_states={**state.opt_states, **{
        name: optimizers[name].init(params[name]) for name in names}})
