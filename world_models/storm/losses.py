"""STORM's world-model losses as ``[B, T]`` maps (frame 0 first), from the tokenizer's and the
transformer's outputs.

Predictions exist for frames 1..T-1 only (from h_{t-1}); ``frame_map`` pads frame 0 and masks
the frames without a prediction (``valid [B, T-1]``), rescaled so that the plain mean over
``[B, T]`` that ``representations.weigh`` takes is the mean over the predicted frames.
``kl_maps``: STORM's dynamics and representation terms, ``dyn = KL(sg(q) || p)`` and ``rep =
KL(q || sg(p))`` (same value, gradient to the prior or to the posterior), each with
``free`` nats applied once to the batch mean (``mode="batch"``, STORM's
``max(1, mean KL)``) or per step (``"step"``, DreamerV3).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rl.core import kl as kl_lib
from world_models.storm import tokenizer


def frame_map(x: jax.Array, valid: jax.Array) -> jax.Array:
    """``x [B, T-1]`` (frames 1..T-1) -> ``[B, T]`` whose mean is ``x``'s mean over ``valid``."""
    x = jnp.pad(x * valid, ((0, 0), (1, 0)))
    return x * (x.size / jnp.maximum(jnp.sum(valid), 1.0))


def kl_maps(post_logits: jax.Array, prior_logits: jax.Array, valid: jax.Array, free: float,
            mode: str) -> dict[str, jax.Array]:
    """``post_logits [B, T-1, G, K]`` (frames 1..T-1) against the priors predicted for them."""
    sg = jax.lax.stop_gradient
    maps = {}
    for name, kl in (("dyn", tokenizer.kl(sg(post_logits), prior_logits)),
                     ("rep", tokenizer.kl(post_logits, sg(prior_logits)))):
        if mode == "step":
            kl = kl_lib.free_nats(kl, free, "step")
        kl = frame_map(kl, valid)
        if mode == "batch":
            kl = kl_lib.free_nats(kl, free, "batch")
        maps[name] = kl
    return maps


def image_loss(mean: jax.Array, target: jax.Array) -> jax.Array:
    """STORM's reconstruction: squared error summed over the pixels of each frame ``[...]``."""
    return jnp.sum(jnp.square(mean - jax.lax.stop_gradient(target)), axis=(-3, -2, -1))
