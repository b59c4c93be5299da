"""STORM's tokenizer: conv encoder -> categorical posterior logits, and the conv decoder; the
categorical latent (unimix + straight-through samples).

Encoder (official ``EncoderBN``): Conv(k4, s2, p1, no bias) + norm + ReLU from ``depth``
channels, doubling the channels at every halving until the map is ``final_width`` wide
(64x64: 32 -> 64 -> 128 -> 256 channels at 32, 16, 8, 4 px: 4096 features), flattened, then
Linear(-> groups x classes) posterior logits. Decoder (``DecoderBN``): Linear(latent -> C x 4 x
4, no bias) + norm + ReLU, transposed convs (k4, s2, p1) halving the channels down to ``depth``
(+ norm + ReLU), a last transposed conv to the image channels (with bias), no output activation
(the MSE target is the scaled image). The transposed convs are ``conv.SubpixelConvTranspose``
(VALID, fast on XLA:GPU) cropped by one pixel per side, which is exactly PyTorch's padding=1.

Tokens carry an optional slot axis: images ``[..., H, W, C]`` give logits ``[..., G, K]``; an
object-token tokenizer (OC-STORM) adds its own ``[..., N, G', K']`` next to it.

Latent: ``probs = (1 - unimix) softmax(logits) + unimix / K`` (so every class keeps at least
``unimix / K``), logits := log probs; samples are one-hot with the straight-through gradient
``onehot + probs - sg(probs)``, flattened to ``G * K``.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.core.patch_conv import conv_module
from world_models.conv import SubpixelConvTranspose


def mixed_logits(raw: jax.Array, groups: int, classes: int, unimix: float) -> jax.Array:
    """``raw [..., G*K]`` -> unimixed log-probabilities ``[..., G, K]`` (float32)."""
    logits = raw.astype(jnp.float32).reshape(raw.shape[:-1] + (groups, classes))
    probs = jax.nn.softmax(logits, -1)
    if unimix > 0.0:
        probs = (1.0 - unimix) * probs + unimix / classes
    return jnp.log(probs)


def sample(logits: jax.Array, key: jax.Array) -> jax.Array:
    """Straight-through one-hot sample of ``logits [..., G, K]``, flattened to ``[..., G*K]``."""
    index = jax.random.categorical(key, logits, axis=-1)
    onehot = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
    probs = jax.nn.softmax(logits, -1)
    onehot = onehot + probs - jax.lax.stop_gradient(probs)
    return onehot.reshape(onehot.shape[:-2] + (-1,))


def kl(post_logits: jax.Array, prior_logits: jax.Array) -> jax.Array:
    """``KL(post || prior)`` summed over groups and classes: ``[..., G, K] -> [...]``."""
    log_q = jax.nn.log_softmax(post_logits, -1)
    log_p = jax.nn.log_softmax(prior_logits, -1)
    return jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=(-2, -1))


def entropy(logits: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits, -1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=(-2, -1))


def halvings(size: int, final_width: int) -> int:
    """How many stride-2 halvings take ``size`` to ``final_width`` (a clear error otherwise)."""
    count, side = 0, size
    while side > final_width and side % 2 == 0:
        side, count = side // 2, count + 1
    if side != final_width or count < 1:
        raise ValueError(f"STORM's tokenizer halves {size}px images down to final_width="
                         f"{final_width}; {size} / {final_width} must be a power of two >= 2")
    return count


class _Norm(nn.Module):
    kind: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind == "layer":   # over channels, per pixel (no running statistics)
            x = nn.LayerNorm(epsilon=1e-5)(x.astype(jnp.float32))
        return nn.relu(x)


class Encoder(nn.Module):
    """Scaled images ``[..., H, W, C]`` -> posterior logits ``[..., G, K]`` (unimixed)."""

    depth: int
    final_width: int
    groups: int
    classes: int
    unimix: float
    norm: str = "layer"
    conv: str = "xla"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        lead, shape = images.shape[:-3], images.shape[-3:]
        if shape[0] != shape[1]:
            raise ValueError(f"STORM's tokenizer needs square images, got {shape}")
        x = images.reshape((-1,) + shape)
        conv = conv_module(self.conv)
        for i in range(halvings(shape[0], self.final_width)):
            x = conv(self.depth * 2 ** i, (4, 4), strides=(2, 2), padding="SAME",
                     dtype=self.dtype, name=f"conv_{i}")(x)
            x = _Norm(self.norm, name=f"norm_{i}")(x)
        x = x.reshape(lead + (-1,))
        raw = nn.Dense(self.groups * self.classes, dtype=self.dtype, name="post")(x)
        return mixed_logits(raw, self.groups, self.classes, self.unimix)


class Decoder(nn.Module):
    """Latents ``[..., G*K]`` -> image means ``[..., H, W, C]`` in the scaled range."""

    image_shape: tuple[int, int, int]
    depth: int
    final_width: int
    norm: str = "layer"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, latent: jax.Array) -> jax.Array:
        num = halvings(self.image_shape[0], self.final_width)
        lead = latent.shape[:-1]
        channels = self.depth * 2 ** (num - 1)
        x = nn.Dense(channels * self.final_width ** 2, use_bias=False, dtype=self.dtype,
                     name="project")(latent.reshape(-1, latent.shape[-1]))
        x = x.reshape(-1, self.final_width, self.final_width, channels)
        x = _Norm(self.norm, name="norm_in")(x)
        for i in range(num):
            last = i == num - 1
            out = self.image_shape[-1] if last else channels // 2 ** (i + 1)
            x = SubpixelConvTranspose(out, 4, name=f"deconv_{i}")(x)   # float32
            x = x[:, 1:-1, 1:-1]            # PyTorch's padding=1: 2n + 2 -> 2n
            if not last:
                x = _Norm(self.norm, name=f"norm_{i}")(x)
        return x.astype(jnp.float32).reshape(lead + tuple(self.image_shape))
