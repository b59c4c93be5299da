"""Scalar heads on features (reward, value) and the continue head, with their losses.

A scalar head is either
- "gaussian": one output, the mean of a unit-variance Normal; loss = Gaussian NLL
  ``0.5 (y - mu)^2 + 0.5 log(2 pi)`` (Dreamer-v1 reward and value; = MSE/2 + const), or
- "twohot": ``num_bins`` logits over symlog bins on ``[-bin_range, bin_range]``; loss = two-hot
  cross-entropy of ``symlog(y)`` (DreamerV3, STORM). Its output layer starts at zero (as
  DreamerV3), so early predictions are 0 rather than large random values.
The continue head gives one Bernoulli logit; loss = binary cross-entropy with logits.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.core import symlog
from rl.core.nets import MLPHead, dense_head

SCALAR_KINDS = ("gaussian", "twohot")
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _check_kind(kind: str) -> None:
    if kind not in SCALAR_KINDS:
        raise ValueError(f"scalar head kind={kind!r}; valid: {list(SCALAR_KINDS)}")


class ScalarHead(nn.Module):
    """``[..., F] -> [...]`` (gaussian mean) or ``[..., num_bins]`` (two-hot logits)."""

    layers: int
    units: int
    kind: str = "gaussian"
    num_bins: int = 255
    act: str = "elu"
    norm: str = "none"

    @nn.compact
    def __call__(self, feat: jax.Array) -> jax.Array:
        _check_kind(self.kind)
        if self.kind == "gaussian":
            return dense_head(feat, self.layers, self.units, 1, self.act, self.norm)[..., 0]
        return dense_head(feat, self.layers, self.units, self.num_bins, self.act, self.norm,
                          out_init=nn.initializers.zeros)


def continue_head(layers: int, units: int, act: str = "elu", norm: str = "none") -> MLPHead:
    """``[..., F] -> [...]`` Bernoulli logits of "the episode continues"."""
    return MLPHead(layers, units, 1, act, norm, squeeze=True)


def scalar_loss(kind: str, out: jax.Array, target: jax.Array, bin_centres: jax.Array) -> jax.Array:
    """Negative log-likelihood of ``target [...]`` under the head output; shape ``[...]``.
    The target carries no gradient."""
    _check_kind(kind)
    target = jax.lax.stop_gradient(target)
    if kind == "gaussian":
        return 0.5 * jnp.square(out - target) + HALF_LOG_2PI
    return symlog.twohot_symlog_loss(out, target, bin_centres)


def scalar_mean(kind: str, out: jax.Array, bin_centres: jax.Array) -> jax.Array:
    """The head's prediction (mean) in the original scale; shape ``[...]``."""
    _check_kind(kind)
    if kind == "gaussian":
        return out
    return symlog.twohot_symlog_mean(out, bin_centres)


def continue_loss(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Binary cross-entropy of ``target`` in [0, 1] with ``logits``; shape ``[...]``."""
    target = jax.lax.stop_gradient(target.astype(logits.dtype))
    return -(target * jax.nn.log_sigmoid(logits) + (1.0 - target) * jax.nn.log_sigmoid(-logits))
