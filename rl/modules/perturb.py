"""Shrink and perturb (Ash & Adams 2020; DrM's perturbation of chosen layers), a pure function."""
from __future__ import annotations

from typing import Any, Callable

import jax

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
