"""Shared Flax building blocks, the one network library of the project.

- DrQ-v2 style (``dense``, ``MLP``, ``Trunk``, ``ConvEncoder``): DrQ-v2's ``utils.weight_init``,
  orthogonal weights (gain 1 for dense layers, ReLU gain sqrt(2) for convolutions), zero biases.
- Dreamer style (``DenseStack``, ``NormAct``): ``layers x (Dense -> [LayerNorm] -> act)`` with no
  output layer (heads add their own); Dreamer-v1 uses ELU and no normalisation, DreamerV3
  LayerNorm + SiLU.
- ``conv_output_size``: the spatial size after a stack of VALID convolutions (every encoder).

Activations for a dormant-ratio metric are recorded with ``sow`` into the ``"intermediates"``
collection. Sowing costs nothing unless the caller opts in with
``module.apply(variables, x, mutable=["intermediates"])``. What is recorded mirrors what DrM's
PyTorch forward hooks see (its in-place ReLU overwrites the hooked Linear outputs): hidden
dense layers after their activation, the output layer and the trunk's dense layer before any
nonlinearity or normalisation.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.core.patch_conv import conv_module

RELU_GAIN = math.sqrt(2.0)   # torch.nn.init.calculate_gain('relu')
TORCH_LAYERNORM_EPS = 1e-5   # torch.nn.LayerNorm default (flax's default is 1e-6)
RENORMALIZE_EPS = 1e-5       # BBF's; the PyTorch SPR code divides by (max - min) with no eps


def dense(features: int, name: str | None = None) -> nn.Dense:
    """A dense layer with DrQ-v2's init: orthogonal kernel (gain 1), zero bias."""
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(1.0),
                    bias_init=nn.initializers.zeros, name=name)


class MLP(nn.Module):
    """Dense layers with an activation between them (none after the last).

    Sows each hidden layer's post-activation output as ``hidden_{i}`` and the final
    (linear) output as ``output`` into ``"intermediates"``.
    """

    hidden_sizes: Sequence[int]
    output_size: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, size in enumerate(self.hidden_sizes):
            x = self.activation(dense(size, name=f"dense_{i}")(x))
            self.sow("intermediates", f"hidden_{i}", x)
        x = dense(self.output_size, name="dense_out")(x)
        self.sow("intermediates", "output", x)
        return x


class Trunk(nn.Module):
    """DrQ-v2's trunk: Linear -> LayerNorm -> Tanh. Sows the Linear output as ``linear``."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = dense(self.features, name="dense")(x)
        self.sow("intermediates", "linear", x)
        x = nn.LayerNorm(epsilon=TORCH_LAYERNORM_EPS, name="norm")(x)
        return jnp.tanh(x)


class ConvEncoder(nn.Module):
    """DrQ-v2's pixel encoder on uint8 (or float in [0, 255]) images ``[B, H, W, C]``.

    ``x / 255 - 0.5``, then conv(3x3, stride 2) and ``num_layers - 1`` conv(3x3, stride 1),
    each with ReLU and VALID padding, then flatten: 84x84 input -> 35x35x32 = 39,200 features.
    ``conv="patches"`` computes the same convolutions as slices and matmuls (``PatchConv``).
    """

    channels: int = 32
    num_layers: int = 4
    dtype: jnp.dtype = jnp.float32   # compute dtype (bfloat16: faster); parameters stay float32
    conv: str = "xla"                # "xla" (flax Conv, cuDNN) | "patches" (PatchConv)

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4:
            raise ValueError(f"ConvEncoder expects images [B, H, W, C], got shape {images.shape}")
        conv = conv_module(self.conv)
        x = images.astype(jnp.float32) / 255.0 - 0.5
        for i in range(self.num_layers):
            x = conv(self.channels, (3, 3), strides=(2, 2) if i == 0 else (1, 1),
                     padding="VALID", kernel_init=nn.initializers.orthogonal(RELU_GAIN),
                     bias_init=nn.initializers.zeros, dtype=self.dtype,
                     param_dtype=jnp.float32, name=f"conv_{i}")(x)
            x = nn.relu(x)
        return x.reshape(x.shape[0], -1).astype(jnp.float32)


def renormalize(x: jax.Array, eps: float = RENORMALIZE_EPS) -> jax.Array:
    """SPR's per-sample min-max scaling of all but the leading (batch) axis to [0, 1]."""
    flat = x.reshape(x.shape[0], -1)
    low = flat.min(axis=-1, keepdims=True)
    high = flat.max(axis=-1, keepdims=True)
    return ((flat - low) / (high - low + eps)).reshape(x.shape)


def is_dense_param(path: tuple, leaf: object = None) -> bool:
    """True for the kernel/bias of a dense layer built by this file (not conv, not LayerNorm).

    ``path`` is a ``jax.tree_util`` key path; use with ``perturb(..., where=is_dense_param)``.
    """
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    if len(names) < 2 or names[-1] not in ("kernel", "bias"):
        return False
    module = names[-2]
    return module == "dense" or module.startswith("dense_")


def conv_output_size(size: int, kernels: Sequence[int], strides: Sequence[int] | int = 2,
                     padding: str = "VALID") -> int:
    """Side of a conv stack's output map for ``size``-pixel inputs (0 or less: too small).

    ``strides`` is one stride for every layer or one per layer; ``padding`` "VALID" or "SAME"."""
    if isinstance(strides, int):
        strides = (strides,) * len(kernels)
    if padding not in ("VALID", "SAME"):
        raise ValueError(f"padding={padding!r}; valid: ['VALID', 'SAME']")
    for k, s in zip(kernels, strides):
        size = -(-size // s) if padding == "SAME" else (size - k) // s + 1
    return size


def conv_encoder_output_size(height: int, width: int, channels: int = 32,
                             num_layers: int = 4) -> int:
    """Number of features ``ConvEncoder`` gives for ``height x width`` images."""
    kernels, strides = (3,) * num_layers, (2,) + (1,) * (num_layers - 1)
    h, w = conv_output_size(height, kernels, strides), conv_output_size(width, kernels, strides)
    if h < 1 or w < 1:
        raise ValueError(f"images of {height}x{width} are too small for {num_layers} conv layers")
    return h * w * channels


# ---- Dreamer-style dense stacks (world model, actor, critic) ----------------------------------
# Flax default init (LeCun-normal kernels, zero biases); Dreamer-v1 used Glorot-uniform (TF) and
# the RePo port PyTorch's default: none of these choices is load-bearing.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "elu": nn.elu, "silu": nn.silu, "relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu,
    "none": lambda x: x,
}
NORMS = ("none", "layer")


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function called ``name``; a clear error for unknown names."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def check_norm(name: str) -> str:
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; valid: {list(NORMS)}")
    return name


class NormAct(nn.Module):
    """Optional LayerNorm followed by an activation."""

    act: str = "elu"
    norm: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if check_norm(self.norm) == "layer":
            x = nn.LayerNorm(epsilon=1e-3)(x)
        return activation(self.act)(x)


class DenseStack(nn.Module):
    """``layers`` times Dense(units) -> [LayerNorm] -> act. Works on any leading shape.

    Sows each layer's output (after its activation) as ``hidden_{i}`` into ``"intermediates"``.
    """

    layers: int
    units: int
    act: str = "elu"
    norm: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.layers):
            # LayerNorm makes the bias redundant (DreamerV3 omits it too)
            x = nn.Dense(self.units, use_bias=self.norm == "none", name=f"dense_{i}")(x)
            x = NormAct(self.act, self.norm, name=f"norm_act_{i}")(x)
            self.sow("intermediates", f"hidden_{i}", x)   # after [LayerNorm] and activation
        return x


def dense_head(x: jax.Array, layers: int, units: int, out_size: int, act: str = "elu",
               norm: str = "none",
               out_init: Callable = nn.initializers.lecun_normal()) -> jax.Array:
    """A ``DenseStack`` trunk then a Dense(out_size) output, created in the calling module's
    scope (params ``trunk``, ``out``): the one shape of every actor, critic and head MLP."""
    x = DenseStack(layers, units, act, norm, name="trunk")(x)
    return nn.Dense(out_size, kernel_init=out_init, name="out")(x)


class MLPHead(nn.Module):
    """``dense_head`` as a module: ``[..., F] -> [..., out_size]`` (``[...]`` with ``squeeze``
    and ``out_size`` 1). Actors and the continue/termination heads."""

    layers: int
    units: int
    out_size: int
    act: str = "elu"
    norm: str = "none"
    squeeze: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = dense_head(x, self.layers, self.units, self.out_size, self.act, self.norm)
        self.sow("intermediates", "output", out)   # the raw output layer (DrM's dormant ratio)
        return out[..., 0] if self.squeeze else out
