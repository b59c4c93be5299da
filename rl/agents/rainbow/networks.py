"""Rainbow's network: Nature-CNN encoder and a dueling C51 head of factorised noisy layers.

As SPR's ``src/models.py``: conv 32x8/4, 64x4/2, 64x3/1 (ReLU, no padding) on 4 stacked frames
in [0, 1]; the conv output renormalised per sample to [0, 1] (min-max); value and advantage
streams ``flatten -> NoisyDense(hidden) -> ReLU -> NoisyDense`` with ``logits = V + A - mean_a A``
over atoms. ``RainbowNetworks`` exposes the pieces an auxiliary loss needs (SPR): the encoder
output (spatial latent), the head on a latent, and the projection = the first layer of every
stream evaluated without noise and without ReLU (SPR's ``q_l1``, shared with the Q head).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.agents.rainbow.config import RainbowConfig
from rl.core.nets import renormalize  # SPR's per-sample min-max to [0, 1]
from rl.core.patch_conv import conv_module
from rl.core.augment import intensity, random_shift

Params = Any


def _symmetric_uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def _scaled_noise(key: jax.Array, size: int) -> jax.Array:
    """Fortunato et al.'s f(x) = sign(x) sqrt(|x|) of standard normal draws."""
    x = jax.random.normal(key, (size,), jnp.float32)
    return jnp.sign(x) * jnp.sqrt(jnp.abs(x))


class NoisyDense(nn.Module):
    """Factorised Gaussian noisy linear layer (Fortunato et al. 2018).

    ``y = x (mu_W + sigma_W * outer(f(e_in), f(e_out))) + mu_b + sigma_b * f(e_out)``, one noise
    draw per call from the ``"noise"`` rng stream (shared by the batch). ``noisy=False`` gives
    the mean layer ``x mu_W + mu_b`` (evaluation, SPR's projection). ``sigma0=0``: a plain dense
    layer with no noise parameters. Init: mu ~ U(+-1/sqrt(in)), sigma_W = sigma0 / sqrt(in),
    sigma_b = sigma0 / sqrt(out) (``bias_sigma="out"``, SPR's NoisyLinear) or / sqrt(in).
    """

    features: int
    sigma0: float = 0.5
    bias_sigma: str = "out"

    @nn.compact
    def __call__(self, x: jax.Array, noisy: bool = False) -> jax.Array:
        fan_in = x.shape[-1]
        bound = 1.0 / math.sqrt(fan_in)
        kernel = self.param("kernel", _symmetric_uniform(bound), (fan_in, self.features))
        bias = self.param("bias", _symmetric_uniform(bound), (self.features,))
        y = x @ kernel + bias
        if self.sigma0 > 0:
            init = nn.initializers.constant(self.sigma0 / math.sqrt(fan_in))
            bias_fan = self.features if self.bias_sigma == "out" else fan_in
            sigma_kernel = self.param("sigma_kernel", init, (fan_in, self.features))
            sigma_bias = self.param("sigma_bias",
                                    nn.initializers.constant(self.sigma0 / math.sqrt(bias_fan)),
                                    (self.features,))
            if noisy:
                k_in, k_out = jax.random.split(self.make_rng("noise"))
                eps_in, eps_out = _scaled_noise(k_in, fan_in), _scaled_noise(k_out, self.features)
                # x (sigma_W * outer(e_in, e_out)) = ((x * e_in) sigma_W) * e_out
                y = y + ((x * eps_in) @ sigma_kernel) * eps_out + sigma_bias * eps_out
        return y


def scale_grad(x: jax.Array, scale: float) -> jax.Array:
    """``x`` forward; its gradient multiplied by ``scale`` backward (rlpyt's ``scale_grad``)."""
    if scale == 1.0:
        return x
    # x - stop_gradient(x) is exactly 0 forward, so the forward pass is bit-identical
    return x + (scale - 1.0) * (x - jax.lax.stop_gradient(x))


def dueling_logits(value: jax.Array, advantage: jax.Array) -> jax.Array:
    """``V + A - mean_a A`` per atom: value ``[B, 1, N]``, advantage ``[B, A, N]`` -> logits
    ``[B, A, N]``."""
    return value + advantage - advantage.mean(axis=1, keepdims=True)


class NatureEncoder(nn.Module):
    """Convs with ReLU on images in [0, 1] ``[B, H, W, C]``; returns ``[B, h, w, c]``."""

    channels: Sequence[int] = (32, 64, 64)
    kernels: Sequence[int] = (8, 4, 3)
    strides: Sequence[int] = (4, 2, 1)
    padding: str = "VALID"
    renormalize: bool = True
    conv: str = "xla"                    # rl.core.patch_conv.CONV_IMPLS

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4:
            raise ValueError(f"NatureEncoder expects images [B, H, W, C], got {images.shape}")
        x = images.astype(jnp.float32)
        conv = conv_module(self.conv)
        for i, (c, k, s) in enumerate(zip(self.channels, self.kernels, self.strides)):
            x = conv(c, (k, k), strides=(s, s), padding=self.padding,
                     kernel_init=nn.initializers.xavier_uniform(),
                     bias_init=nn.initializers.zeros, name=f"conv_{i}")(x)
            x = nn.relu(x)
        return renormalize(x) if self.renormalize else x


class C51Head(nn.Module):
    """Dueling (or single-stream) distributional head on a latent ``[B, ...]``: logits
    ``[B, A, N]``."""

    num_actions: int
    num_atoms: int
    hidden_dim: int = 256
    dueling: bool = True
    sigma0: float = 0.5
    bias_sigma: str = "out"
    grad_scale: float = 1.0          # on the latent's gradient through the Q path (dueling only)

    def setup(self) -> None:
        dense = lambda n, name: NoisyDense(n, self.sigma0, self.bias_sigma, name=name)
        self.advantage_hidden = dense(self.hidden_dim, "advantage_hidden")
        self.advantage_out = dense(self.num_actions * self.num_atoms, "advantage_out")
        if self.dueling:
            self.value_hidden = dense(self.hidden_dim, "value_hidden")
            self.value_out = dense(self.num_atoms, "value_out")

    def __call__(self, latent: jax.Array, noisy: bool = False) -> jax.Array:
        x = latent.reshape(latent.shape[0], -1)
        if self.dueling:   # rlpyt scales only its dueling head's input gradient
            x = scale_grad(x, self.grad_scale)
        batch = x.shape[0]
        advantage = self.advantage_out(nn.relu(self.advantage_hidden(x, noisy)), noisy)
        advantage = advantage.reshape(batch, self.num_actions, self.num_atoms)
        if not self.dueling:
            return advantage
        value = self.value_out(nn.relu(self.value_hidden(x, noisy)), noisy)
        return dueling_logits(value.reshape(batch, 1, self.num_atoms), advantage)

    def project(self, latent: jax.Array) -> jax.Array:
        """SPR's ``q_l1``: the streams' first layers, no noise, no ReLU, concatenated
        ``[B, hidden_dim * streams]`` (value first); shares its weights with the Q head."""
        x = latent.reshape(latent.shape[0], -1)
        parts = [self.advantage_hidden(x, False)]
        if self.dueling:
            parts.insert(0, self.value_hidden(x, False))
        return jnp.concatenate(parts, axis=-1)


class QNetwork(nn.Module):
    encoder: NatureEncoder
    head: C51Head

    def __call__(self, images: jax.Array, noisy: bool = False) -> jax.Array:
        return self.head(self.encoder(images), noisy)

    def encode(self, images: jax.Array) -> jax.Array:
        return self.encoder(images)

    def logits(self, latent: jax.Array, noisy: bool = False) -> jax.Array:
        return self.head(latent, noisy)

    def project(self, latent: jax.Array) -> jax.Array:
        return self.head.project(latent)


class RainbowNetworks:
    """The Q network as pure functions of its variables ``{"params": {"encoder", "head"}}``.

    ``prepare`` turns uint8 frame stacks into the encoder's input (augmented when given a key);
    ``encode -> latent``; ``logits(latent, noise_key)`` (``None``: noise off); ``project(latent)``.
    """

    def __init__(self, cfg: RainbowConfig, num_actions: int):
        self.cfg, self.num_actions = cfg, num_actions
        self.net = QNetwork(
            NatureEncoder(tuple(cfg.encoder_channels), tuple(cfg.encoder_kernels),
                          tuple(cfg.encoder_strides), cfg.encoder_padding, cfg.renormalize,
                          cfg.conv),
            C51Head(num_actions, cfg.num_atoms, cfg.hidden_dim, cfg.dueling,
                    cfg.noisy_sigma0 if cfg.noisy else 0.0, cfg.noisy_bias_sigma,
                    cfg.dueling_grad_scale))
        self.support = jnp.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms, dtype=jnp.float32)

    def init(self, key: jax.Array, stacked_obs_shape: tuple[int, int, int]) -> Params:
        k_params, k_noise = jax.random.split(key)
        images = jnp.zeros((1, *stacked_obs_shape), jnp.float32)
        return self.net.init({"params": k_params, "noise": k_noise}, images, self.cfg.noisy)

    def prepare(self, obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """uint8 ``[B, H, W, C*S]`` -> float32 in [0, 1]; with a key and ``cfg.augment``: random
        shift (replicate pad) then intensity, one draw per sample (SPR's ``transform``)."""
        cfg = self.cfg
        if key is None or not cfg.augment:
            return obs.astype(jnp.float32) / 255.0
        k_shift, k_intensity = jax.random.split(key)
        images = random_shift(k_shift, obs, cfg.shift_pad).astype(jnp.float32) / 255.0
        return intensity(k_intensity, images, cfg.intensity_scale) if cfg.intensity_scale \
            else images

    def encode(self, params: Params, images: jax.Array) -> jax.Array:
        return self.net.apply(params, images, method=QNetwork.encode)

    def logits(self, params: Params, latent: jax.Array,
               noise_key: jax.Array | None = None) -> jax.Array:
        noisy = noise_key is not None and self.cfg.noisy
        rngs = {"noise": noise_key} if noisy else {}
        return self.net.apply(params, latent, noisy, method=QNetwork.logits, rngs=rngs)

    def project(self, params: Params, latent: jax.Array) -> jax.Array:
        return self.net.apply(params, latent, method=QNetwork.project)

    def q_values(self, logits: jax.Array) -> jax.Array:
        """Expected return per action ``[B, A]`` from logits ``[B, A, N]``."""
        return jnp.sum(jax.nn.softmax(logits, axis=-1) * self.support, axis=-1)
