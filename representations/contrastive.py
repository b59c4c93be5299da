"""Bilinear InfoNCE with in-batch negatives (CURL, TACO, InfoPower share it).

``logits_ij = a_i^T W k_j``; row ``i``'s positive is key ``i``, every other key in the batch is a
negative. As in CURL's and TACO's official code: no temperature, and each row's max is
subtracted before the softmax (stability only; cross-entropy is shift-invariant).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def bilinear_logits(anchors: jax.Array, keys: jax.Array, w: jax.Array) -> jax.Array:
    """``[B, B]`` logits ``anchors @ W @ keys.T`` minus each row's max; anchors, keys ``[B, D]``."""
    if anchors.ndim != 2 or keys.shape != anchors.shape or w.shape != (anchors.shape[1],) * 2:
        raise ValueError(f"bilinear_logits expects anchors and keys [B, D] and W [D, D], got "
                         f"{anchors.shape}, {keys.shape}, {w.shape}")
    logits = anchors @ w @ keys.T
    return logits - jax.lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))


def info_nce(logits: jax.Array) -> jax.Array:
    """``[B]`` cross-entropy of each row against the diagonal (row i's positive is column i)."""
    labels = jnp.arange(logits.shape[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def contrastive_accuracy(logits: jax.Array) -> jax.Array:
    """Fraction of rows whose largest logit is the positive (a learning signal to log)."""
    return jnp.mean(jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0]))
