"""Recurrent state-space model (PlaNet / Dreamer): pure functions on params.

    h_t = GRU(h_{t-1}, act(W [z_{t-1}, a_{t-1}]))        deterministic ``deter``
    prior     p(z_t | h_t)       = head(act(W h_t))
    posterior q(z_t | h_t, e_t)  = head(act(W [h_t, e_t]))

Two latent kinds, chosen by ``WorldModelConfig.latent``:
- "gaussian" (Dreamer-v1): diagonal Normal with ``std = softplus(raw) + min_std``, reparameterised.
- "categorical" (DreamerV3): ``stoch`` groups of ``classes`` classes, probabilities mixed with
  ``unimix`` uniform, one-hot samples with straight-through gradients, flattened to
  ``stoch * classes``.

``observe`` resets the state AND the previous action to ``initial`` wherever ``is_first`` (as
DreamerV3). Deviation: the RePo port only zeroes ``z`` at episode ends and carries ``h`` over.
The initial state is all zeros (Dreamer-v1; DreamerV3 learns its initial ``h``).

Action inputs are vectors ``[..., A]``: continuous actions as they are, discrete ones one-hot.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from world_models.config import WorldModelConfig
from rl.core.nets import NormAct, check_norm

Params = Any


@struct.dataclass
class LatentState:
    """One RSSM state (any leading shape). ``stats`` parametrises the distribution of ``stoch``:
    ``{"mean", "std"}`` [..., S] (gaussian) or ``{"logits"}`` [..., G, K] (categorical, mixed)."""

    deter: jax.Array
    stoch: jax.Array
    stats: dict[str, jax.Array]


class LayerNormGRU(nn.Module):
    """GRU with one fused, LayerNorm'd projection (DreamerV2/V3); the update gate starts biased
    towards keeping the old state."""

    features: int

    @nn.compact
    def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
        parts = nn.Dense(3 * self.features, use_bias=False)(jnp.concatenate([x, h], -1))
        parts = nn.LayerNorm(epsilon=1e-3)(parts)
        reset, cand, update = jnp.split(parts, 3, axis=-1)
        reset = jax.nn.sigmoid(reset)
        cand = jnp.tanh(reset * cand)
        update = jax.nn.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * h


class RSSMCore(nn.Module):
    """The parameterised parts; ``RSSM`` below wraps them into pure functions."""

    cfg: WorldModelConfig

    def setup(self) -> None:
        c = self.cfg
        check_norm(c.norm)
        dense = functools.partial(nn.Dense, use_bias=c.norm == "none")
        self.img_in = dense(c.hidden)
        self.img_in_act = NormAct(c.act, c.norm)
        self.gru = (nn.GRUCell(c.deter) if c.norm == "none" else LayerNormGRU(c.deter))
        self.img_out = dense(c.hidden)
        self.img_out_act = NormAct(c.act, c.norm)
        self.obs_out = dense(c.hidden)
        self.obs_out_act = NormAct(c.act, c.norm)
        stats_size = 2 * c.stoch if c.latent == "gaussian" else c.stoch * c.classes
        self.prior_stats = nn.Dense(stats_size)
        self.post_stats = nn.Dense(stats_size)

    def _stats(self, raw: jax.Array) -> dict[str, jax.Array]:
        c = self.cfg
        if c.latent == "gaussian":
            mean, std = jnp.split(raw, 2, axis=-1)
            return {"mean": mean, "std": jax.nn.softplus(std) + c.min_std}
        logits = raw.reshape(raw.shape[:-1] + (c.stoch, c.classes))
        probs = jax.nn.softmax(logits, -1)
        probs = (1.0 - c.unimix) * probs + c.unimix / c.classes
        return {"logits": jnp.log(probs)}

    def _sample(self, stats: dict[str, jax.Array], key: jax.Array) -> jax.Array:
        if self.cfg.latent == "gaussian":
            noise = jax.random.normal(key, stats["mean"].shape, stats["mean"].dtype)
            return stats["mean"] + stats["std"] * noise
        logits = stats["logits"]
        index = jax.random.categorical(key, logits, axis=-1)
        sample = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
        probs = jax.nn.softmax(logits, -1)
        sample = sample + probs - jax.lax.stop_gradient(probs)   # straight-through
        return sample.reshape(sample.shape[:-2] + (-1,))

    def img_step(self, state: LatentState, action: jax.Array, key: jax.Array) -> LatentState:
        x = self.img_in_act(self.img_in(jnp.concatenate([state.stoch, action], -1)))
        if self.cfg.norm == "none":
            deter, _ = self.gru(state.deter, x)
        else:
            deter = self.gru(state.deter, x)
        stats = self._stats(self.prior_stats(self.img_out_act(self.img_out(deter))))
        return LatentState(deter=deter, stoch=self._sample(stats, key), stats=stats)

    def obs_step(self, state: LatentState, action: jax.Array, embed: jax.Array,
                 key: jax.Array) -> tuple[LatentState, LatentState]:
        prior_key, post_key = jax.random.split(key)
        prior = self.img_step(state, action, prior_key)
        x = self.obs_out_act(self.obs_out(jnp.concatenate([prior.deter, embed], -1)))
        stats = self._stats(self.post_stats(x))
        post = LatentState(deter=prior.deter, stoch=self._sample(stats, post_key), stats=stats)
        return post, prior


def _where_first(is_first: jax.Array, initial: jax.Array, value: jax.Array) -> jax.Array:
    mask = is_first.reshape(is_first.shape + (1,) * (value.ndim - is_first.ndim))
    return jnp.where(mask, initial, value)


class RSSM:
    """Pure-function RSSM. ``action_dim`` is the width of the action vector."""

    def __init__(self, cfg: WorldModelConfig, action_dim: int, embed_size: int):
        if action_dim < 1 or embed_size < 1:
            raise ValueError(f"RSSM needs action_dim >= 1 and embed_size >= 1, got "
                             f"action_dim={action_dim}, embed_size={embed_size}")
        self.cfg = cfg
        self.action_dim = action_dim
        self.embed_size = embed_size
        self.core = RSSMCore(cfg)

    @property
    def feat_size(self) -> int:
        return self.cfg.feat_size

    def init(self, key: jax.Array) -> Params:
        state = self.initial(1)
        action = jnp.zeros((1, self.action_dim), jnp.float32)
        embed = jnp.zeros((1, self.embed_size), jnp.float32)
        return self.core.init({"params": key}, state, action, embed, key,
                              method=RSSMCore.obs_step)["params"]

    def initial(self, batch_size: int) -> LatentState:
        """The all-zero state for ``batch_size`` sequences."""
        c = self.cfg
        zeros = lambda *shape: jnp.zeros((batch_size,) + shape, jnp.float32)
        if c.latent == "gaussian":
            stats = {"mean": zeros(c.stoch), "std": jnp.ones((batch_size, c.stoch), jnp.float32)}
        else:
            stats = {"logits": zeros(c.stoch, c.classes)}
        return LatentState(deter=zeros(c.deter), stoch=zeros(c.stoch_size), stats=stats)

    def reset(self, state: LatentState, prev_action: jax.Array,
              is_first: jax.Array) -> tuple[LatentState, jax.Array]:
        """Replace the state and previous action by the initial ones where ``is_first [N]``."""
        initial = self.initial(is_first.shape[0])
        state = jax.tree.map(functools.partial(_where_first, is_first), initial, state)
        return state, _where_first(is_first, jnp.zeros_like(prev_action), prev_action)

    def img_step(self, params: Params, state: LatentState, action: jax.Array,
                 key: jax.Array) -> LatentState:
        """One prior step: next state from ``state`` under ``action [..., A]``."""
        return self.core.apply({"params": params}, state, action, key, method=RSSMCore.img_step)

    def obs_step(self, params: Params, state: LatentState, prev_action: jax.Array,
                 embed: jax.Array, is_first: jax.Array,
                 key: jax.Array) -> tuple[LatentState, LatentState]:
        """One filtering step (with reset on ``is_first [N]``): ``(posterior, prior)``."""
        state, prev_action = self.reset(state, prev_action, is_first)
        return self.core.apply({"params": params}, state, prev_action, embed, key,
                               method=RSSMCore.obs_step)

    def observe(self, params: Params, embeds: jax.Array, prev_actions: jax.Array,
                is_first: jax.Array, state0: LatentState, key: jax.Array,
                unroll: int = 1) -> tuple[LatentState, LatentState, LatentState]:
        """Filter a sequence: ``embeds [B,T,E]``, ``prev_actions [B,T,A]`` (the action that led
        to step t), ``is_first [B,T]``. Returns ``(last posterior, posts [B,T], priors [B,T])``."""
        batch, length = embeds.shape[:2]
        if prev_actions.shape[:2] != (batch, length) or is_first.shape != (batch, length):
            raise ValueError(f"observe: embeds {embeds.shape}, prev_actions {prev_actions.shape}"
                             f" and is_first {is_first.shape} must share [B, T]")
        if prev_actions.shape[-1] != self.action_dim:
            raise ValueError(f"observe: action width {prev_actions.shape[-1]} != "
                             f"action_dim {self.action_dim}")
        keys = jax.random.split(key, length)
        time_major = lambda x: jnp.swapaxes(x, 0, 1)

        def step(state, inputs):
            embed, action, first, step_key = inputs
            post, prior = self.obs_step(params, state, action, embed, first, step_key)
            return post, (post, prior)

        last, (posts, priors) = jax.lax.scan(
            step, state0, (time_major(embeds), time_major(prev_actions), time_major(is_first),
                           keys), unroll=unroll)
        return last, jax.tree.map(time_major, posts), jax.tree.map(time_major, priors)

    @staticmethod
    def features(state: LatentState) -> jax.Array:
        """``[..., deter + stoch_size]``: the input of every head, the actor and the critic."""
        return jnp.concatenate([state.deter, state.stoch], -1)

    def kl(self, post: LatentState, prior: LatentState) -> jax.Array:
        """``KL(post || prior)`` per step, summed over latent dims (and groups): shape ``[...]``."""
        if self.cfg.latent == "gaussian":
            mq, sq = post.stats["mean"], post.stats["std"]
            mp, sp = prior.stats["mean"], prior.stats["std"]
            kl = jnp.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2.0 * sp ** 2) - 0.5
            return kl.sum(-1)
        log_q = jax.nn.log_softmax(post.stats["logits"], -1)
        log_p = jax.nn.log_softmax(prior.stats["logits"], -1)
        return (jnp.exp(log_q) * (log_q - log_p)).sum((-2, -1))

    def entropy(self, state: LatentState) -> jax.Array:
        """Entropy of the latent distribution per step, summed over dims: shape ``[...]``."""
        if self.cfg.latent == "gaussian":
            return (0.5 * jnp.log(2.0 * jnp.pi * jnp.e) + jnp.log(state.stats["std"])).sum(-1)
        log_p = jax.nn.log_softmax(state.stats["logits"], -1)
        return -(jnp.exp(log_p) * log_p).sum((-2, -1))
