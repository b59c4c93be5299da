"""KL balancing and free nats on per-step KL maps ``[B, T]`` (RSSM world models, RePo).

Balancing (DreamerV2, RePo): ``alpha KL(sg(q) || p) + (1 - alpha) KL(q || sg(p))``. Its value is
the plain KL; only the gradient is split: ``alpha`` of it trains the prior, ``1 - alpha`` the
posterior. ``balance=None`` is the plain KL (Dreamer-v1: full gradient to both sides).
RePo: alpha = 5/6. DreamerV3/STORM's dyn 0.5 + rep 0.1 equals alpha = 5/6 with loss scale 0.6.

Free nats:
- ``"step"``: ``max(KL_bt, free)`` per step (RePo's Dreamer port, DreamerV3's free bits).
- ``"batch"``: ``max(mean_bt KL, free)`` on the batch mean (official Dreamer-v1 TF code, and
  STORM with free = 1). Returned as a map whose plain mean equals that value: the KL map where
  the batch mean reaches ``free``, else the constant ``free`` (zero gradient). Reduce it with a
  plain mean over all of ``[B, T]`` (``weigh`` does).
The clip only zeroes gradients below the threshold: when balancing, both terms share one value,
so clipping the sum equals clipping each term (as DreamerV2/V3 do).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

FREE_NATS_MODES = ("step", "batch")


def balanced_kl(kl_fn: Callable[[Any, Any], jax.Array], post: Any, prior: Any,
                balance: float | None) -> jax.Array:
    """Per-step KL(post || prior) with the gradient split by ``balance`` (None: plain KL)."""
    if balance is None:
        return kl_fn(post, prior)
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"kl_balance={balance}; must be in [0, 1] or None")
    sg = lambda tree: jax.tree.map(jax.lax.stop_gradient, tree)
    return balance * kl_fn(sg(post), prior) + (1.0 - balance) * kl_fn(post, sg(prior))


def free_nats(kl: jax.Array, free: float, mode: str = "step") -> jax.Array:
    """Apply ``free`` nats to a KL map ``[B, T]`` (see the module docstring for the modes)."""
    if mode not in FREE_NATS_MODES:
        raise ValueError(f"free_nats_mode={mode!r}; valid: {list(FREE_NATS_MODES)}")
    if free <= 0.0:
        return kl
    if mode == "step":
        return jnp.where(kl >= free, kl, free)
    batch_mean = jax.lax.stop_gradient(jnp.mean(kl))
    return jnp.where(batch_mean >= free, kl, jnp.full_like(kl, free))
