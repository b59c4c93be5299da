"""``RSSMWorldModel`` (registered as ``rssm``): conv encoder + RSSM + reward/continue heads +
(optional) decoder, behind the protocol of ``rl.core.world_model``.

Pure functions on one params dict ``{"encoder", "rssm", "reward", ["continue"], ["decoder"]}``.
``observe`` returns ``RSSMOutput`` with the model's own loss maps ``[B, T]`` (all from the
posterior features at step t):
- ``reward``: NLL of ``batch.reward[:, t]`` (the reward received on arriving at obs_t) under the
  reward head (unit Gaussian, or symlog two-hot);
- ``continue`` (only with a continue head): BCE against ``1 - is_terminal``;
- ``kl``: KL(q_t || p_t) with optional balancing and free nats (``rl.core.kl``).
Deviation: the RePo port masks the reward loss on done steps (time limits included); here the
replay's ``is_first``/``is_terminal`` already say where episodes end, so nothing is masked.
Objectives read the posteriors and priors (KL objectives) and call the heads and the decoder;
imagination and the actor-critic only see features (``[..., feat_size]``).

Actions: the batch holds env actions (int32 indices for discrete spaces, floats in the env's box
for continuous ones); ``action_vector`` turns them into model inputs (one-hot, or rescaled to
[-1, 1]); ``env_action`` is its inverse for acting.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rl.core import kl as kl_lib, rollout as rollout_lib, symlog
from rl.core.actions import ActionCodec
from rl.core.types import EnvSpec
from rl.core import heads
from world_models import conv
from rl.core.world_model import Imagined, Policy, WorldModelBase
from world_models.config import WorldModelConfig
from world_models.rssm import RSSM, LatentState

Params = Any


class RSSMOutput(NamedTuple):
    """``observe``'s output: ``ObserveOutput``'s fields, then the RSSM's (all ``[B, T, ...]``)."""

    feats: jax.Array                 # [B, T, F] features of the posteriors
    losses: dict[str, jax.Array]     # reward, kl (+ continue) maps [B, T]
    metrics: dict[str, jax.Array]    # kl, post_entropy, prior_entropy
    params: Params                   # the world-model params these came from (for the heads)
    embeds: jax.Array                # [B, T, E]
    posts: LatentState               # [B, T, ...]
    priors: LatentState              # [B, T, ...]


class RSSMWorldModel(WorldModelBase):
    Config = WorldModelConfig

    def __init__(self, cfg: WorldModelConfig, spec: EnvSpec):
        self.cfg = cfg
        self.spec = spec
        self.image_shape = tuple(spec.obs_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"WorldModel needs pixel observations (H, W, C), got obs_shape "
                             f"{spec.obs_shape}")
        self.actions = ActionCodec(spec.action)
        self.discrete = self.actions.discrete
        self.action_dim = self.actions.dim
        self.embed_size = conv.encoder_embed_size(self.image_shape, cfg.cnn_depth,
                                                  cfg.encoder_kernels)
        self.encoder = conv.ConvEncoder(cfg.cnn_depth, cfg.encoder_kernels, cfg.cnn_act,
                                        cfg.encoder_conv)
        self.decoder = None
        if cfg.decoder:
            conv.check_decoder(self.image_shape, cfg.decoder_kernels)
            self.decoder = conv.ConvDecoder(self.image_shape, cfg.cnn_depth, cfg.decoder_kernels,
                                            cfg.cnn_act)
        self.rssm = RSSM(cfg, self.action_dim, self.embed_size)
        self.reward_head = heads.ScalarHead(cfg.reward_layers, cfg.head_units, cfg.reward_head,
                                            cfg.num_bins, cfg.head_act, cfg.head_norm)
        self.continue_head = (heads.continue_head(cfg.continue_layers, cfg.head_units,
                                                 cfg.head_act, cfg.head_norm)
                              if cfg.continue_head else None)
        self.bins = symlog.bins(cfg.num_bins, -cfg.bin_range, cfg.bin_range)
        self.loss_keys = cfg.loss_keys
        self.loss_scales = dict(cfg.loss_scales)

    @property
    def feat_size(self) -> int:
        return self.cfg.feat_size

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    # ---- params and states -------------------------------------------------------------------
    def init(self, key: jax.Array) -> Params:
        keys = jax.random.split(key, 5)
        image = jnp.zeros((1,) + self.image_shape, jnp.float32)
        feat = jnp.zeros((1, self.feat_size), jnp.float32)
        params = {"encoder": self.encoder.init(keys[0], image)["params"],
                  "rssm": self.rssm.init(keys[1]),
                  "reward": self.reward_head.init(keys[2], feat)["params"]}
        if self.continue_head is not None:
            params["continue"] = self.continue_head.init(keys[3], feat)["params"]
        if self.decoder is not None:
            params["decoder"] = self.decoder.init(keys[4], feat)["params"]
        return params

    def initial(self, batch_size: int) -> LatentState:
        return self.rssm.initial(batch_size)

    @staticmethod
    def features(state: LatentState) -> jax.Array:
        return RSSM.features(state)

    def kl(self, post: LatentState, prior: LatentState) -> jax.Array:
        return self.rssm.kl(post, prior)

    # ---- filtering ---------------------------------------------------------------------------
    def preprocess(self, obs: jax.Array) -> jax.Array:
        """uint8 frames -> the model's image scale (also the decoder's target)."""
        return conv.preprocess_image(obs, self.cfg.image_scale)

    def embed(self, params: Params, obs: jax.Array) -> jax.Array:
        """uint8 frames ``[..., H, W, C]`` -> embeddings ``[..., E]``."""
        return self.encoder.apply({"params": params["encoder"]}, self.preprocess(obs))

    def observe(self, params: Params, carry: LatentState, batch: Any, key: jax.Array,
                unroll: int = 1) -> tuple[LatentState, RSSMOutput]:
        """Filter ``batch.obs [B,T,H,W,C]`` uint8 with ``batch.action [B,T,*A]`` (env actions
        that led to each frame) and ``batch.is_first [B,T]``, starting from ``carry``; the loss
        maps also read ``batch.reward`` and ``batch.is_terminal``."""
        embeds = self.embed(params, batch.obs)
        last, posts, priors = self.rssm.observe(params["rssm"], embeds,
                                                self.action_vector(batch.action),
                                                batch.is_first, carry, key, unroll)
        feats = self.features(posts)
        losses = {"reward": self.reward_loss(params, feats, batch.reward.astype(jnp.float32))}
        if self.continue_head is not None:
            losses["continue"] = self.continue_loss(
                params, feats, 1.0 - batch.is_terminal.astype(jnp.float32))
        kl = kl_lib.balanced_kl(self.kl, posts, priors, self.cfg.kl_balance)
        losses["kl"] = kl_lib.free_nats(kl, self.cfg.free_nats, self.cfg.free_nats_mode)
        metrics = {"kl": jnp.mean(kl), "post_entropy": jnp.mean(self.rssm.entropy(posts)),
                   "prior_entropy": jnp.mean(self.rssm.entropy(priors))}
        return last, RSSMOutput(feats, losses, metrics, params, embeds, posts, priors)

    @staticmethod
    def starts(out: RSSMOutput) -> LatentState:
        """Every posterior of the batch, flattened to ``[B*T, ...]``."""
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), out.posts)

    def step(self, params: Params, carry: LatentState, prev_action: jax.Array, obs: jax.Array,
             is_first: jax.Array, key: jax.Array) -> tuple[LatentState, jax.Array]:
        """One online filtering step for acting: ``obs [N,H,W,C]`` uint8, ``prev_action
        [N, action_dim]`` (a model action vector); resets where ``is_first``."""
        post, _ = self.rssm.obs_step(params["rssm"], carry, prev_action,
                                     self.embed(params, obs), is_first, key)
        return post, self.features(post)

    # ---- imagination -------------------------------------------------------------------------
    def img_step(self, params: Params, state: LatentState, action: jax.Array,
                 key: jax.Array) -> LatentState:
        return self.rssm.img_step(params["rssm"], state, action, key)

    def imagine(self, params: Params, start: LatentState, policy: Policy | None,
                horizon: int, key: jax.Array, unroll: int = 1,
                actions: jax.Array | None = None) -> Imagined:
        """Roll ``start [N, ...]`` forward ``horizon`` steps under ``policy(feat, key)`` or the
        given action vectors ``actions [N, horizon, A]``; stacks features ``[N, H+1, F]``."""
        step_fn = lambda state, action, k: self.img_step(params, state, action, k)
        return rollout_lib.rollout(step_fn, policy, start, horizon, key, unroll,
                                   readout=self.features, actions=actions)

    # ---- heads -------------------------------------------------------------------------------
    def reward_out(self, params: Params, feat: jax.Array) -> jax.Array:
        return self.reward_head.apply({"params": params["reward"]}, feat)

    def reward(self, params: Params, feat: jax.Array) -> jax.Array:
        """Predicted reward (mean) ``[...]``."""
        return heads.scalar_mean(self.cfg.reward_head, self.reward_out(params, feat), self.bins)

    def reward_loss(self, params: Params, feat: jax.Array, target: jax.Array) -> jax.Array:
        return heads.scalar_loss(self.cfg.reward_head, self.reward_out(params, feat), target,
                                 self.bins)

    def continue_prob(self, params: Params, feat: jax.Array) -> jax.Array:
        """P(episode continues) ``[...]``; ones without a continue head."""
        if self.continue_head is None:
            return jnp.ones(feat.shape[:-1], feat.dtype)
        return jax.nn.sigmoid(self.continue_head.apply({"params": params["continue"]}, feat))

    def continue_loss(self, params: Params, feat: jax.Array, target: jax.Array) -> jax.Array:
        if self.continue_head is None:
            raise ValueError("continue_loss needs WorldModelConfig.continue_head=True")
        logits = self.continue_head.apply({"params": params["continue"]}, feat)
        return heads.continue_loss(logits, target)

    def decode(self, params: Params, feat: jax.Array) -> jax.Array:
        """Image means ``[..., H, W, C]`` in the model's image scale."""
        if self.decoder is None:
            raise ValueError("decode needs WorldModelConfig.decoder=True")
        return self.decoder.apply({"params": params["decoder"]}, feat)

    def decode_uint8(self, params: Params, feat: jax.Array) -> jax.Array:
        return conv.postprocess_image(self.decode(params, feat), self.cfg.image_scale)
