"""``StormWorldModel`` (registered as ``storm``): STORM (Zhang et al., NeurIPS 2023) behind the
protocol of ``rl.core.world_model``, trained by the imagination agent like any world model.

Per frame t of a batch: ``z_t`` ~ q(. | o_t) (tokenizer), token t = (z_t, a_t) with a_t the
action taken at o_t; the transformer output ``h_t`` after token t gives the prior of z_{t+1}, the
reward and the termination of that transition. The agent's features are ``[z_t, h_{t-1}]``
(``h_{-1} = 0``); the reward/termination heads read the ``h`` part, the decoder the ``z`` part.
Our replay stores the action that LED to each frame, so a T-frame window gives T-1 tokens (the
STORM preset samples 65 frames for STORM's 64 tokens).

Loss maps ``[B, T]`` (``observe``; frame 0, and with ``episode_mask`` an episode's first frame,
have no prediction: those steps are masked and the rest rescaled so a plain mean over [B, T]
is the mean over the predicted steps):
- ``image``: sum over pixels of (decode(z_t) - o_t)^2, images in [0, 1] (STORM's MSE);
- ``reward``: symlog two-hot CE of r_t from h_{t-1}; ``termination``: BCE of the terminal flag;
- ``dyn`` = KL(sg(q_t) || p_t), ``rep`` = KL(q_t || sg(p_t)), summed over groups, each with
  ``free_nats`` on the batch-mean KL (``free_nats_mode="batch"``, STORM) or per step.

``starts(out)``: one start per token: the ``context`` tokens up to it (fewer at the start of a
window or, with ``episode_mask``, of an episode); ``imagine`` runs them through the
transformer into a key/value cache, draws z_0 from the prior of the last output (STORM's
imagination start) and appends one token per imagined step. ``step`` (acting) keeps the last
``act_context`` tokens (``context.py`` says why they are rerun, not cached).

The official code's quirks (card storm_ocstorm_drm_sgfd.md, 1(g)), decided:
- (i) acting on the prior sample of the current step (the frame is seen one step late):
  default ``act_latent="posterior"`` (z_t of the current frame); ``"prior"`` is the official.
- (ii) the acting context is never cleared and the training windows attend across episode
  ends: default ``episode_mask=True`` (attention, contexts and acting windows stop at an
  episode start; losses there are masked); ``False`` is the official behaviour.
- (iii) λ-return bootstrapped from V_t: the agent's ``lambda_bootstrap="same"`` (the preset).
- (iv) free bits on the batch-mean KL: kept (``free_nats_mode="batch"``; ``"step"`` = V3).
- (v) return-percentile EMAs from 0 without bias correction: the agent's normaliser does that.
- (vi) imagination starts from a prior sample after the context: kept (the paper's process).
- (vii) windows spliced across the ring's write pointer: a bug, not reproduced (our replay
  never samples across it).
- (viii) BatchNorm in the tokenizer: replaced by a per-pixel channel LayerNorm
  (``cnn_norm``). A deviation that changes numbers, without a switch: BatchNorm's running
  statistics are state outside the gradient step, which the model step of the protocol does
  not carry, and batch statistics over one acting frame would not match training.
- (ix) hard 0/1 termination in imagination: default the probability; ``hard_termination=True``
  is the official.
- #14 (history re-projected every step): a real key/value cache, the same numbers.
- Weights init: Flax defaults (LeCun normal), two-hot output layers at zero.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from rl.core import rollout as rollout_lib, symlog
from rl.core.actions import ActionCodec
from rl.core.types import EnvSpec
from rl.core import heads
from world_models import conv
from rl.core.world_model import Imagined, Policy, WorldModelBase
from world_models.storm import context as ctx_lib, losses as losses_lib, tokenizer
from world_models.storm.config import StormConfig
from world_models.storm.transformer import KVCache, Transformer, cache_from_context, causal_mask

Params = Any


class StormOutput(NamedTuple):
    """``observe``'s output: ``ObserveOutput``'s fields, then STORM's (all ``[B, T, ...]``)."""

    feats: jax.Array                 # [B, T, F] = [z_t, h_{t-1}], with gradient
    losses: dict[str, jax.Array]     # image, reward, termination, dyn, rep
    metrics: dict[str, jax.Array]
    params: Params
    latents: jax.Array               # [B, T, Z] posterior samples
    actions: jax.Array               # [B, T, A] a_t (zeros where no action follows frame t)
    segments: Any                    # [B, T] episode index in the window (None: not masked)
    post_logits: jax.Array           # [B, T, G, K]
    prior_logits: jax.Array          # [B, T-1, G, K]: the prior of frame t+1


@struct.dataclass
class Dream:
    """An imagination state: the cache, the latent z_t and the output h_{t-1} of its prior."""

    cache: KVCache
    latent: jax.Array
    hidden: jax.Array


class StormWorldModel(WorldModelBase):
    Config = StormConfig
    has_decoder = True

    def __init__(self, cfg: StormConfig, spec: EnvSpec):
        self.cfg, self.spec = cfg, spec
        self.image_shape = tuple(spec.obs_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"STORM needs pixel observations (H, W, C), got {spec.obs_shape}")
        tokenizer.halvings(self.image_shape[0], cfg.final_width)   # a clear error early
        self.actions = ActionCodec(spec.action)
        self.discrete, self.action_dim = self.actions.discrete, self.actions.dim
        dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32
        self.encoder = tokenizer.Encoder(cfg.cnn_depth, cfg.final_width, cfg.stoch, cfg.classes,
                                         cfg.unimix, cfg.cnn_norm, cfg.encoder_conv, dtype)
        self.decoder = tokenizer.Decoder(self.image_shape, cfg.cnn_depth, cfg.final_width,
                                         cfg.cnn_norm, dtype)
        self.transformer = Transformer(cfg.layers, cfg.width, cfg.heads, cfg.ffn, cfg.max_len,
                                       cfg.dropout, cfg.positions, dtype)
        self.prior_head = nn.Dense(cfg.stoch_size)
        self.reward_head = heads.ScalarHead(cfg.head_layers, cfg.head_units, "twohot",
                                            cfg.num_bins, "relu", "layer")
        self.termination_head = heads.continue_head(cfg.head_layers, cfg.head_units, "relu",
                                                   "layer")
        self.bins = symlog.bins(cfg.num_bins, -cfg.bin_range, cfg.bin_range)
        self.loss_keys = cfg.loss_keys
        self.loss_scales = dict(cfg.loss_scales)
        self.feat_size = cfg.feat_size
        self.latent_size = cfg.stoch_size

    # ---- params and carries ------------------------------------------------------------------
    def init(self, key: jax.Array) -> Params:
        keys = jax.random.split(key, 6)
        c = self.cfg
        token = jnp.zeros((1, 1, 1, self.latent_size + self.action_dim), jnp.float32)
        hidden = jnp.zeros((1, c.width), jnp.float32)
        return {
            "encoder": self.encoder.init(keys[0], jnp.zeros((1,) + self.image_shape))["params"],
            "decoder": self.decoder.init(keys[1], jnp.zeros((1, self.latent_size)))["params"],
            "transformer": self.transformer.init(keys[2], token, jnp.zeros((1, 1), jnp.int32),
                                                 jnp.ones((1, 1, 1), bool))["params"],
            "prior": self.prior_head.init(keys[3], hidden)["params"],
            "reward": self.reward_head.init(keys[4], hidden)["params"],
            "termination": self.termination_head.init(keys[5], hidden)["params"]}

    def initial(self, batch_size: int) -> ctx_lib.Context:
        """An empty acting window (``observe`` starts every window empty: it ignores its carry)."""
        return ctx_lib.empty(batch_size, self.cfg.act_context, self.latent_size, self.action_dim)

    # ---- parts -------------------------------------------------------------------------------
    def preprocess(self, obs: jax.Array) -> jax.Array:
        return conv.preprocess_image(obs, self.cfg.image_scale)

    def posterior(self, params: Params, obs: jax.Array) -> jax.Array:
        """uint8 frames ``[..., H, W, C]`` -> posterior logits ``[..., G, K]``."""
        return self.encoder.apply({"params": params["encoder"]}, self.preprocess(obs))

    def prior(self, params: Params, hidden: jax.Array) -> jax.Array:
        raw = self.prior_head.apply({"params": params["prior"]}, hidden)
        return tokenizer.mixed_logits(raw, self.cfg.stoch, self.cfg.classes, self.cfg.unimix)

    def run_context(self, params: Params, ctx: ctx_lib.Context) -> tuple[jax.Array, list]:
        """The window through the transformer (no dropout): the newest token's output ``[N, D]``
        (zeros without valid tokens) and each layer's keys/values."""
        width = ctx.valid.shape[1]
        mask = causal_mask(None, width, ctx.valid.shape[0]) & ctx.valid[:, None, :]
        out, kvs = self.transformer.apply({"params": params["transformer"]}, ctx.tokens,
                                          ctx_lib.positions(ctx.valid), mask)
        return out[:, -1, 0] * ctx.valid[:, -1:], kvs

    # ---- filtering ---------------------------------------------------------------------------
    def observe(self, params: Params, carry: Any, batch: Any, key: jax.Array,
                unroll: int = 1) -> tuple[ctx_lib.Context, StormOutput]:
        """Teacher-forced pass over ``batch`` (``Sequences``: obs, action, reward, is_first,
        is_terminal ``[B, T, ...]``); returns the acting window after the last frame."""
        del carry, unroll
        c = self.cfg
        batch_size, length = batch.obs.shape[:2]
        if not 2 <= length <= c.max_len + 1:
            raise ValueError(f"STORM observes windows of 2 .. max_len + 1 = {c.max_len + 1} "
                             f"frames (T frames give T-1 tokens), got {length}")
        sample_key, dropout_key = jax.random.split(key)
        post_logits = self.posterior(params, batch.obs)
        latents = tokenizer.sample(post_logits, sample_key)                     # [B, T, Z]
        first = batch.is_first.astype(bool)
        taken = self.action_vector(batch.action[:, 1:]) * (~first[:, 1:, None])
        actions = jnp.pad(taken, ((0, 0), (0, 1), (0, 0)))                      # a_t [B, T, A]
        segments = jnp.cumsum(first, 1) if c.episode_mask else None
        steps = jnp.arange(length - 1)
        if segments is None:
            positions = jnp.broadcast_to(steps, (batch_size, length - 1))
        else:   # steps since the episode started inside the window
            positions = steps - jax.lax.cummax(jnp.where(first[:, :-1], steps, 0), axis=1)
        tokens = jnp.concatenate([latents, actions], -1)[:, :-1, None]
        mask = causal_mask(None if segments is None else segments[:, :-1], length - 1,
                           batch_size)
        hidden, _ = self.transformer.apply(
            {"params": params["transformer"]}, tokens, positions, mask, c.dropout == 0.0,
            rngs={"dropout": dropout_key})
        hidden = hidden[:, :, 0]                                                 # h_t [B, T-1, D]
        prior_logits = self.prior(params, hidden)
        valid = jnp.ones((batch_size, length - 1)) if segments is None \
            else (~first[:, 1:]).astype(jnp.float32)
        losses = self._losses(params, batch, latents, hidden, post_logits, prior_logits, valid)
        before = jnp.pad(hidden, ((0, 0), (1, 0), (0, 0)))                      # h_{t-1}
        if segments is not None:
            before = before * (~first)[..., None]
        feats = jnp.concatenate([latents, before], -1)
        raw_kl = tokenizer.kl(post_logits[:, 1:], prior_logits)
        metrics = {"kl": jnp.mean(losses_lib.frame_map(raw_kl, valid)),
                   "post_entropy": jnp.mean(tokenizer.entropy(post_logits)),
                   "prior_entropy": jnp.mean(tokenizer.entropy(prior_logits))}
        out = StormOutput(feats, losses, metrics, params, latents, actions, segments,
                          post_logits, prior_logits)
        last = ctx_lib.after(latents, actions, segments, first, self.cfg.act_context)
        return last, out

    def _losses(self, params, batch, latents, hidden, post_logits, prior_logits, valid):
        c = self.cfg
        reward = heads.scalar_loss("twohot", self._reward_logits(params, hidden),
                                   batch.reward[:, 1:].astype(jnp.float32), self.bins)
        termination = heads.continue_loss(self._termination_logits(params, hidden),
                                          batch.is_terminal[:, 1:].astype(jnp.float32))
        return {"image": losses_lib.image_loss(self.decode(params, latents),
                                               self.preprocess(batch.obs)),
                "reward": losses_lib.frame_map(reward, valid),
                "termination": losses_lib.frame_map(termination, valid),
                **losses_lib.kl_maps(post_logits[:, 1:], prior_logits, valid, c.free_nats,
                                     c.free_nats_mode)}

    def starts(self, out: StormOutput) -> ctx_lib.Context:
        """One start per token ``[B*(T-1)]``: the ``context`` tokens ending there."""
        return ctx_lib.starts(out.latents, out.actions, out.segments, self.cfg.context)

    def step(self, params: Params, carry: ctx_lib.Context, prev_action: jax.Array,
             obs: jax.Array, is_first: jax.Array, key: jax.Array
             ) -> tuple[ctx_lib.Context, jax.Array]:
        """Acting: append (pending latent, ``prev_action``), clear at ``is_first`` (with
        ``episode_mask``), run the window, encode ``obs``; features ``[z, h]``."""
        post_key, prior_key = jax.random.split(key)
        first = is_first.astype(bool)
        ctx = ctx_lib.push(carry, prev_action * ~first[:, None])
        if self.cfg.episode_mask:
            ctx = ctx_lib.where(first, self.initial(first.shape[0]), ctx)
        hidden, _ = self.run_context(params, ctx)
        latent = tokenizer.sample(self.posterior(params, obs), post_key)
        acting = latent
        if self.cfg.act_latent == "prior":   # official: the prior of this step, not o_t
            guess = tokenizer.sample(self.prior(params, hidden), prior_key)
            acting = jnp.where(ctx.valid[:, -1:], guess, latent)
        carry = ctx.replace(latent=latent, has_latent=jnp.ones_like(ctx.has_latent))
        return carry, jnp.concatenate([acting, hidden], -1)

    # ---- imagination -------------------------------------------------------------------------
    def imagine(self, params: Params, start: ctx_lib.Context, policy: Policy | None,
                horizon: int, key: jax.Array, unroll: int = 1,
                actions: jax.Array | None = None) -> Imagined:
        """Run each start's window into a cache, then ``horizon`` steps under ``policy`` or the
        given ``actions [N, H, A]``; stacks features ``[N, H+1, F]``."""
        start_key, key = jax.random.split(key)
        hidden, kvs = self.run_context(params, start)
        guess = tokenizer.sample(self.prior(params, hidden), start_key)
        latent = jnp.where(start.has_latent[:, None], start.latent, guess)
        dream = Dream(cache_from_context(kvs, start.valid, horizon), latent, hidden)
        return rollout_lib.rollout(lambda s, a, k: self._dream_step(params, s, a, k), policy,
                                   dream, horizon, key, unroll, readout=self.features,
                                   actions=actions)

    def _dream_step(self, params: Params, dream: Dream, action: jax.Array,
                    key: jax.Array) -> Dream:
        token = jnp.concatenate([dream.latent, action], -1)[:, None]            # [N, 1, I]
        hidden, cache = self.transformer.apply({"params": params["transformer"]}, token,
                                               dream.cache, method=Transformer.step)
        latent = tokenizer.sample(self.prior(params, hidden[:, 0]), key)
        return Dream(cache, latent, hidden[:, 0])

    @staticmethod
    def features(dream: Dream) -> jax.Array:
        return jnp.concatenate([dream.latent, dream.hidden], -1)

    # ---- heads -------------------------------------------------------------------------------
    def _hidden(self, feat: jax.Array) -> jax.Array:
        return feat[..., self.latent_size:]

    def _reward_logits(self, params: Params, hidden: jax.Array) -> jax.Array:
        return self.reward_head.apply({"params": params["reward"]}, hidden)

    def _termination_logits(self, params: Params, hidden: jax.Array) -> jax.Array:
        return self.termination_head.apply({"params": params["termination"]}, hidden)

    def reward(self, params: Params, feat: jax.Array) -> jax.Array:
        """Predicted reward of the transition that produced ``h`` (symexp of the two-hot mean)."""
        return symlog.twohot_symlog_mean(self._reward_logits(params, self._hidden(feat)),
                                         self.bins)

    def continue_prob(self, params: Params, feat: jax.Array) -> jax.Array:
        logits = self._termination_logits(params, self._hidden(feat))
        if self.cfg.hard_termination:
            return (logits <= 0.0).astype(jnp.float32)
        return jax.nn.sigmoid(-logits)

    def decode(self, params: Params, feat: jax.Array) -> jax.Array:
        """Image means ``[..., H, W, C]`` (scaled) from features or latents (the z part)."""
        return self.decoder.apply({"params": params["decoder"]}, feat[..., :self.latent_size])

    def decode_uint8(self, params: Params, feat: jax.Array) -> jax.Array:
        return conv.postprocess_image(self.decode(params, feat), self.cfg.image_scale)
