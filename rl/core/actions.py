"""Env actions <-> a world model's action vectors: one-hot for discrete actions, continuous ones
rescaled from the env's box to [-1, 1] (every world model's ``action_vector``/``env_action``)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rl.core.types import ActionSpec


class ActionCodec:
    def __init__(self, spec: ActionSpec):
        self.spec = spec
        self.discrete = spec.discrete
        self.dim = spec.num_actions if spec.discrete else int(math.prod(spec.shape))
        self.box = None       # None: the env's actions are already in [-1, 1] (or unbounded)
        if not spec.discrete and spec.low is not None and spec.high is not None \
                and (spec.low, spec.high) != (-1.0, 1.0):
            self.box = (float(spec.low), float(spec.high))

    def vector(self, action: jax.Array) -> jax.Array:
        """Env actions ``[..., *A]`` -> ``[..., dim]`` float32."""
        if self.discrete:
            if not jnp.issubdtype(action.dtype, jnp.integer):
                raise ValueError(f"discrete actions must be integer indices, got {action.dtype}")
            return jax.nn.one_hot(action, self.dim, dtype=jnp.float32)
        lead = action.shape[:action.ndim - len(self.spec.shape)]
        action = action.astype(jnp.float32).reshape(lead + (self.dim,))
        if self.box is not None:
            low, high = self.box
            action = 2.0 * (action - low) / (high - low) - 1.0
        return action

    def env(self, vector: jax.Array) -> jax.Array:
        """Action vectors -> env actions (int32 indices, or floats in the env's box)."""
        if self.discrete:
            return jnp.argmax(vector, -1).astype(jnp.int32)
        if self.box is not None:
            low, high = self.box
            vector = (vector + 1.0) / 2.0 * (high - low) + low
        return vector.reshape(vector.shape[:-1] + tuple(self.spec.shape))
