"""Bilinear contrastive bounds with in-batch negatives (CURL, TACO, InfoPower share them).

``logits_ij = a_i^T W k_j``; row ``i``'s positive is key ``i``, every other key in the batch is a
negative. As in CURL's and TACO's official code: no temperature, and each row's max is
subtracted before the softmax (stability only; cross-entropy is shift-invariant). The NWJ bound
(InfoPower's headline) is not shift-invariant: it takes the raw ``bilinear_scores``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def bilinear_scores(anchors: jax.Array, keys: jax.Array, w: jax.Array) -> jax.Array:
    """``[B, B]`` raw scores ``anchors @ W @ keys.T``; anchors, keys ``[B, D]``, W ``[D, D]``."""
    if anchors.ndim != 2 or keys.shape != anchors.shape or w.shape != (anchors.shape[1],) * 2:
        raise ValueError(f"bilinear_logits expects anchors and keys [B, D] and W [D, D], got "
                         f"{anchors.shape}, {keys.shape}, {w.shape}")
    return anchors @ w @ keys.T


def bilinear_logits(anchors: jax.Array, keys: jax.Array, w: jax.Array) -> jax.Array:
    """``[B, B]`` logits ``anchors @ W @ keys.T`` minus each row's max; anchors, keys ``[B, D]``."""
    logits = bilinear_scores(anchors, keys, w)
    return logits - jax.lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))


def info_nce(logits: jax.Array) -> jax.Array:
    """``[B]`` cross-entropy of each row against the diagonal (row i's positive is column i)."""
    labels = jnp.arange(logits.shape[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def nwj(scores: jax.Array, clip: float | None = None) -> jax.Array:
    """``[B]`` negative NWJ bound per row of raw ``scores [B, B]`` (positive on the diagonal):

        -( s_ii - e^{-1} mean_{j != i} exp(s_ij) ),

    whose batch mean is ``-I_NWJ`` (Nguyen, Wainwright, Jordan 2010, with the critic ``s + 1``
    folded into the ``e^{-1}``). ``clip`` bounds the scores inside the exponential only (a
    safety rail against overflow; ``None``: no clip).
    """
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] < 2:
        raise ValueError(f"nwj expects square scores [B, B] with B >= 2, got {scores.shape}")
    n = scores.shape[0]
    positive = jnp.diagonal(scores)
    inside = scores if clip is None else jnp.minimum(scores, clip)
    off = 1.0 - jnp.eye(n, dtype=scores.dtype)
    negative = jnp.sum(jnp.exp(inside) * off, axis=1) / (n - 1)
    return -(positive - jnp.exp(-1.0) * negative)


def contrastive_accuracy(logits: jax.Array) -> jax.Array:
    """Fraction of rows whose largest logit is the positive (a learning signal to log)."""
    return jnp.mean(jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0]))
