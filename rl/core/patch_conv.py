"""A 2-D convolution computed as strided slices plus one matmul, for seeds vmapped in one process.

Under ``vmap`` over per-seed weights, XLA turns ``lax.conv`` into a grouped convolution (one group
per seed), which cuDNN runs with slow generic kernels: on an H200, ~9 ms of the 14 ms fused SPR
step of 3 vmapped seeds (results/bench/README.md). Here the ``kh x kw`` input windows are
gathered by ``kh * kw`` strided slices into ``[B, H', W', kh*kw*C]`` and multiplied by the kernel
reshaped to ``[kh*kw*C, F]``; vmapped over seeds that is a batched matmul. The gradient of a
slice is a pad, so the backward pass stays slices, pads and matmuls too.

``PatchConv`` has the parameters of ``flax.linen.Conv`` (``kernel [kh, kw, C, F]``, ``bias
[F]``) and computes the same function, so ``conv_module(impl)`` can swap one for the other and
checkpoints stay interchangeable. The cost: the patches are materialised (kh*kw times the input).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_IMPLS = ("xla", "patches")
PADDINGS = ("VALID", "SAME")


def extract_patches(x: jax.Array, kernel_size: Sequence[int], strides: Sequence[int],
                    padding: str) -> jax.Array:
    """``[B, H, W, C] -> [B, H', W', kh*kw*C]``, features ordered (row, column, channel) like a
    flattened ``[kh, kw, C, F]`` kernel's first three axes."""
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r}; valid: {list(PADDINGS)}")
    (kh, kw), (sh, sw) = kernel_size, strides
    if padding == "SAME":   # lax's own pads, so the windows are lax.conv's
        x = jnp.pad(x, ((0, 0), *jax.lax.padtype_to_pads(x.shape[1:3], (kh, kw), (sh, sw),
                                                          "SAME"), (0, 0)))
    out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {x.shape[1]}x{x.shape[2]} input")
    windows = [x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
               for i in range(kh) for j in range(kw)]
    return jnp.concatenate(windows, axis=-1)


class PatchConv(nn.Module):
    """``flax.linen.Conv``'s function and parameters (NHWC, no dilation or groups), computed as
    patches times the reshaped kernel."""

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: str = "SAME"
    kernel_init: Callable = nn.linear.default_kernel_init
    bias_init: Callable = nn.initializers.zeros
    dtype: Any = None                 # compute dtype; None: promoted from input and parameters
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"PatchConv expects [B, H, W, C], got shape {x.shape}")
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        patches = extract_patches(x, self.kernel_size, self.strides, self.padding)
        return patches @ kernel.reshape(-1, self.features) + bias


def conv_module(impl: str) -> type[nn.Module]:
    """The conv class for ``impl``: ``"xla"`` (``flax.linen.Conv``, cuDNN on GPU) or
    ``"patches"`` (``PatchConv``); both take ``features, kernel_size, strides, padding``,
    ``kernel_init, bias_init, dtype, param_dtype``."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv={impl!r}; valid: {list(CONV_IMPLS)}")
    return nn.Conv if impl == "xla" else PatchConv
