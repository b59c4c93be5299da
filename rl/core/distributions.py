"""Action distributions that distrax does not provide.

``truncated_normal_sample`` is DrQ-v2's ``TruncatedNormal.sample``: Gaussian noise (optionally
clipped), added to the mean, then clamped into the open action box with a straight-through
gradient, so the gradient with respect to ``mean`` is the identity even where the sample is
clamped. It is not a true truncated normal (no resampling); that is the official behaviour.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

CLAMP_EPS = 1e-6


def straight_through_clamp(x: jax.Array, low: float, high: float) -> jax.Array:
    """``clip(x, low, high)`` in the forward pass, identity in the backward pass."""
    return x - jax.lax.stop_gradient(x) + jax.lax.stop_gradient(jnp.clip(x, low, high))


def truncated_normal_sample(key: jax.Array, mean: jax.Array, std: jax.Array | float,
                            clip: float | None = None, low: float = -1.0, high: float = 1.0,
                            eps: float = CLAMP_EPS) -> jax.Array:
    """``clamp(mean + clip(std * N(0, 1), -clip, clip), low + eps, high - eps)``.

    ``clip=None`` leaves the noise unclipped (DrQ-v2 when acting); the actor and target
    actions use ``clip=stddev_clip``. The clamp passes gradients straight through.
    """
    noise = jax.random.normal(key, mean.shape, mean.dtype) * std
    if clip is not None:
        noise = jnp.clip(noise, -clip, clip)
    return straight_through_clamp(mean + noise, low + eps, high - eps)
