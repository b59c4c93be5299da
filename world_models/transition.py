"""SPR's convolutional latent transition model: a spatial latent ``[B, H, W, C]`` stepped forward
under discrete actions, pure functions on params, rolled with ``lax.scan``.

One step (mila-iqia/spr ``TransitionModel`` with its defaults: 0 residual blocks, no residual,
``norm_type="bn"``, renormalize on):

    x  = concat(z, one_hot(a) broadcast to H x W planes)       [B, H, W, C + |A|]
    x  = Norm(ReLU(Conv3x3(hidden)(x)))                         zero "SAME" padding
    z' = renormalize(ReLU(Conv3x3(C)(x) [+ z if residual]))     per-sample min-max to [0, 1]

For the Nature CNN at 84x84 (SPR's strides 4, 2, 1, no padding) the latent is 7x7x64.

Batch norm (``norm="batch"``, the PyTorch default): the PyTorch model is in train mode whenever
the transition model runs (only inside the SPR loss; acting never calls it), so every call
normalises with the statistics of the current batch (per step of the rollout, over B, H, W;
biased variance, eps 1e-5, learned scale and bias) and its running averages are never read.
We therefore keep only that train-mode computation: no running statistics, no mutable
collection, the model stays a pure function of its params. The cost is the PyTorch behaviour
itself: a sample's next latent depends on the other samples of the batch. ``norm="none"`` is
BBF's JAX transition model (``ConvTMCell``: no normalisation).

Init: PyTorch's defaults (the PyTorch model does not re-initialise its transition model):
kernel and bias uniform on +-1/sqrt(fan_in). (BBF uses Xavier-uniform kernels.)
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.core.nets import renormalize
from rl.core.patch_conv import CONV_IMPLS, conv_module

Params = Any
NORMS = ("batch", "none")
BATCH_NORM_EPS = 1e-5        # torch.nn.BatchNorm2d default


def _torch_uniform(fan_in: int):
    """PyTorch's default conv/linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


class BatchStatNorm(nn.Module):
    """Train-mode batch norm over every axis but the last (channels): batch statistics only,
    biased variance, learned ``scale`` (init 1) and ``bias`` (init 0). No running averages."""

    eps: float = BATCH_NORM_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias


def _conv(features: int, in_channels: int, name: str, impl: str) -> nn.Module:
    fan_in = 9 * in_channels
    init = _torch_uniform(fan_in)
    return conv_module(impl)(features, (3, 3), padding="SAME", kernel_init=init, bias_init=init,
                             name=name)


class ConvTransitionCell(nn.Module):
    """One step ``(z [B,H,W,C], action [B] int) -> z' [B,H,W,C]``; see the module docstring."""

    num_actions: int
    hidden_channels: int = 64
    norm: str = "batch"
    residual: bool = False
    renormalize: bool = True
    conv: str = "xla"                    # rl.core.patch_conv.CONV_IMPLS

    @nn.compact
    def __call__(self, latent: jax.Array, action: jax.Array) -> jax.Array:
        if latent.ndim != 4:
            raise ValueError(f"transition expects a latent [B, H, W, C], got {latent.shape}")
        if action.shape != latent.shape[:1]:
            raise ValueError(f"transition expects actions [B] = {latent.shape[:1]} (int), got "
                             f"{action.shape}")
        b, h, w, c = latent.shape
        planes = jax.nn.one_hot(action, self.num_actions, dtype=latent.dtype)
        planes = jnp.broadcast_to(planes[:, None, None, :], (b, h, w, self.num_actions))
        x = jnp.concatenate([latent, planes], axis=-1)
        x = nn.relu(_conv(self.hidden_channels, c + self.num_actions, "conv_0", self.conv)(x))
        if self.norm == "batch":
            x = BatchStatNorm(name="norm_0")(x)
        x = _conv(c, self.hidden_channels, "conv_out", self.conv)(x)
        if self.residual:
            x = x + latent
        x = nn.relu(x)
        return renormalize(x) if self.renormalize else x


class TransitionModel:
    """SPR's transition model as pure functions: ``init``, ``step``, ``rollout``."""

    def __init__(self, num_actions: int, hidden_channels: int = 64, norm: str = "batch",
                 residual: bool = False, renormalize: bool = True, conv: str = "xla"):
        if isinstance(num_actions, bool) or not isinstance(num_actions, int) or num_actions < 1:
            raise ValueError(f"TransitionModel.num_actions must be an int >= 1, got "
                             f"{num_actions!r}")
        if isinstance(hidden_channels, bool) or not isinstance(hidden_channels, int) \
                or hidden_channels < 1:
            raise ValueError(f"TransitionModel.hidden_channels must be an int >= 1, got "
                             f"{hidden_channels!r}")
        if norm not in NORMS:
            raise ValueError(f"TransitionModel.norm={norm!r}; valid: {list(NORMS)}")
        if conv not in CONV_IMPLS:
            raise ValueError(f"TransitionModel.conv={conv!r}; valid: {list(CONV_IMPLS)}")
        self.num_actions = num_actions
        self.cell = ConvTransitionCell(num_actions, hidden_channels, norm, residual, renormalize,
                                       conv)

    def init(self, key: jax.Array, latent: jax.Array) -> Params:
        """Params for latents shaped like ``latent [B, H, W, C]`` (any B)."""
        action = jnp.zeros(latent.shape[:1], jnp.int32)
        return self.cell.init(key, jnp.asarray(latent, jnp.float32), action)["params"]

    def step(self, params: Params, latent: jax.Array, action: jax.Array) -> jax.Array:
        """``z_{t+1}`` from ``latent [B,H,W,C]`` and ``action [B]`` (int)."""
        return self.cell.apply({"params": params}, latent, action)

    def rollout(self, params: Params, latent: jax.Array, actions: jax.Array,
                unroll: int = 1) -> jax.Array:
        """``[B, K, H, W, C]``: ``z_{t+1} .. z_{t+K}`` from ``z_t = latent [B,H,W,C]`` under
        ``actions [B, K]`` (a_t .. a_{t+K-1}); ``z_t`` itself is not included."""
        if actions.ndim != 2 or actions.shape[0] != latent.shape[0]:
            raise ValueError(f"rollout expects actions [B, K] with B = {latent.shape[0]}, got "
                             f"{actions.shape}")
        if not jnp.issubdtype(actions.dtype, jnp.integer):
            raise ValueError(f"rollout expects integer action indices, got {actions.dtype}")

        def body(z, action):
            z = self.step(params, z, action)
            return z, z

        _, latents = jax.lax.scan(body, latent, jnp.swapaxes(actions, 0, 1), unroll=unroll)
        return jnp.swapaxes(latents, 0, 1)
