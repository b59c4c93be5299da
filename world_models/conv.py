"""Dreamer's conv encoder and transposed-conv decoder, and the one place images are scaled.

Encoder (Dreamer-v1): ``len(kernels)`` convs, stride 2, VALID padding, channels
``depth * (1, 2, 4, 8, ...)``, ReLU, flattened: 64x64 with kernels (4,4,4,4) -> 2x2x256 = 1024.
Decoder (Dreamer-v1): Dense(32*depth) (no activation) -> a 1x1 map -> transposed convs, stride 2,
VALID, channels ``depth * (..., 4, 2, 1)`` then the image channels, ReLU between, none at the end:
kernels (5,5,6,6) give 1 -> 5 -> 13 -> 30 -> 64. The decoder output is the mean of a
unit-variance Gaussian over the scaled image.

32x32 debug images: encoder kernels (4,4,4) give 32 -> 15 -> 6 -> 2; decoder kernels (5,5,8)
give 1 -> 5 -> 13 -> 32. Any other size: pick kernels with ``decoder_output_size`` (a clear error
names the size the kernels give).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.core.nets import activation, conv_output_size
from rl.core.patch_conv import conv_module

STRIDE = 2
# How uint8 pixels map to model inputs/targets. Dreamer-v1: "centered"; RePo port: "symmetric";
# STORM / DreamerV3: "unit".
_SCALES = {"centered": (1.0 / 255.0, -0.5), "symmetric": (2.0 / 255.0, -1.0),
           "unit": (1.0 / 255.0, 0.0)}


def _scale(name: str) -> tuple[float, float]:
    if name not in _SCALES:
        raise ValueError(f"image_scale={name!r}; valid: {sorted(_SCALES)}")
    return _SCALES[name]


def preprocess_image(obs: jax.Array, scale: str) -> jax.Array:
    """uint8 pixels -> float32 in the range named by ``scale``."""
    mul, add = _scale(scale)
    return obs.astype(jnp.float32) * mul + add


def postprocess_image(x: jax.Array, scale: str) -> jax.Array:
    """Inverse of ``preprocess_image``, clipped and rounded to uint8."""
    mul, add = _scale(scale)
    return jnp.clip(jnp.round((x - add) / mul), 0, 255).astype(jnp.uint8)


def decoder_output_size(kernels: Sequence[int]) -> int:
    """Spatial size after VALID stride-2 transposed convs with ``kernels``, from a 1x1 map."""
    size = 1
    for k in kernels:
        size = (size - 1) * STRIDE + k
    return size


def encoder_embed_size(image_shape: Sequence[int], depth: int, kernels: Sequence[int]) -> int:
    """Flattened encoder output size for ``image_shape = (H, W, C)``; raises if too small."""
    height, width = image_shape[0], image_shape[1]
    out_h, out_w = conv_output_size(height, kernels, STRIDE), conv_output_size(width, kernels, STRIDE)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"images of {height}x{width} are too small for encoder kernels "
                         f"{tuple(kernels)} (stride 2, VALID); use fewer/smaller kernels")
    return out_h * out_w * depth * 2 ** (len(kernels) - 1)


def check_decoder(image_shape: Sequence[int], kernels: Sequence[int]) -> None:
    """Raise unless the decoder kernels produce exactly ``image_shape``'s (square) size."""
    height, width = image_shape[0], image_shape[1]
    size = decoder_output_size(kernels)
    if height != width or size != height:
        raise ValueError(
            f"decoder kernels {tuple(kernels)} give {size}x{size} images but the observations "
            f"are {height}x{width}; use (5, 5, 6, 6) for 64x64 or (5, 5, 8) for 32x32")


class ConvEncoder(nn.Module):
    """Scaled images ``[..., H, W, C]`` (float) -> embeddings ``[..., E]``."""

    depth: int = 32
    kernels: tuple[int, ...] = (4, 4, 4, 4)
    act: str = "relu"
    conv: str = "xla"      # "xla" (flax Conv, cuDNN) | "patches" (PatchConv: slices + matmul)

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        lead, image_shape = images.shape[:-3], images.shape[-3:]
        encoder_embed_size(image_shape, self.depth, self.kernels)   # clear error if too small
        conv = conv_module(self.conv)
        x = images.reshape((-1,) + image_shape)
        for i, k in enumerate(self.kernels):
            x = conv(self.depth * 2 ** i, (k, k), strides=(STRIDE, STRIDE), padding="VALID",
                     name=f"conv_{i}")(x)
            x = activation(self.act)(x)
        return x.reshape(lead + (-1,))


class SubpixelConvTranspose(nn.Module):
    """``nn.ConvTranspose(features, (k, k), strides=(s, s), padding="VALID")`` computed as s*s
    ordinary convolutions, one per output phase, interleaved by a depth-to-space reshape.

    Same parameters (``kernel [k, k, in, out]``, ``bias [out]``) and the same function as the
    flax layer (tested against it); XLA:GPU runs the lhs-dilated convolution that the flax layer
    lowers to far slower (the Dreamer decoder's forward pass took 27x the encoder's).

    Output phase ``p`` (rows ``o = s*i + p``) only meets kernel taps ``j = r + s*q`` with
    ``r = (k - 1 - p) mod s``, reading input ``i + q + c`` with ``c = (p + r - k + 1) / s``.
    """

    features: int
    kernel_size: int
    strides: int = STRIDE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.kernel_size, self.strides
        if k < s:
            raise ValueError(f"SubpixelConvTranspose needs kernel_size >= strides, got {k} < {s}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        height, width = x.shape[-3], x.shape[-2]
        out_h, out_w = (height - 1) * s + k, (width - 1) * s + k
        rows_h, rows_w = -(-out_h // s), -(-out_w // s)     # phase 0's length (the longest)
        phases = []
        for py in range(s):
            row = []
            for px in range(s):
                (ry, cy), (rx, cx) = self._tap(py), self._tap(px)
                sub = kernel[ry::s, rx::s]
                qy, qx = sub.shape[:2]
                # pad so that output i reads x[i + c .. i + c + q - 1] and gives rows_* outputs
                pad = [(-cy, rows_h + qy - 1 - height + cy), (-cx, rows_w + qx - 1 - width + cx)]
                row.append(jax.lax.conv_general_dilated(
                    x, sub, window_strides=(1, 1), padding=pad,
                    dimension_numbers=("NHWC", "HWIO", "NHWC")))
            phases.append(jnp.stack(row, axis=-2))            # [B, rows_h, rows_w, s, C]
        y = jnp.stack(phases, axis=2)                          # [B, rows_h, s, rows_w, s, C]
        y = y.reshape(y.shape[0], rows_h * s, rows_w * s, self.features)
        return y[:, :out_h, :out_w] + bias

    def _tap(self, phase: int) -> tuple[int, int]:
        k, s = self.kernel_size, self.strides
        first_tap = (k - 1 - phase) % s
        return first_tap, (phase + first_tap - k + 1) // s


class ConvDecoder(nn.Module):
    """Features ``[..., F]`` -> image means ``[..., H, W, C]`` in the scaled range."""

    image_shape: tuple[int, int, int]
    depth: int = 32
    kernels: tuple[int, ...] = (5, 5, 6, 6)
    act: str = "relu"

    @nn.compact
    def __call__(self, feat: jax.Array) -> jax.Array:
        check_decoder(self.image_shape, self.kernels)
        lead = feat.shape[:-1]
        x = nn.Dense(32 * self.depth, name="project")(feat.reshape(-1, feat.shape[-1]))
        x = x[:, None, None, :]
        num = len(self.kernels)
        for i, k in enumerate(self.kernels):
            last = i == num - 1
            channels = self.image_shape[-1] if last else self.depth * 2 ** (num - 2 - i)
            x = SubpixelConvTranspose(channels, k, name=f"deconv_{i}")(x)
            if not last:
                x = activation(self.act)(x)
        return x.reshape(lead + tuple(self.image_shape))
