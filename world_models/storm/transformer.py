"""STORM's causal transformer over token steps, with a real key/value cache.

Tokens are ``[B, T, N, I]``: T time steps of N tokens each (STORM: N = 1, the latent and the
action one-hot fused into one token; OC-STORM adds object tokens on the N axis). Every token of
step t sees every token of the steps s <= t that ``mask [B, T, S]`` allows (causal, and for
STORM within one episode); the N tokens of one step share its position.

    stem   = LN(Linear(relu(LN(Linear(x)))))            (no biases; LN eps 1e-5 as PyTorch's)
    x      = LN_1e-6(stem + position[pos])              (learned or sinusoidal positions)
    block  : x = LN(x + Drop(W_o MHA(x)));  x = LN(x + Drop(W_2 relu(W_1 x)))      (post-LN)

MHA has no biases, ``d_k = width / heads``, masked logits -1e9, dropout on the probabilities.

``__call__`` runs a whole context at once and also returns each layer's keys and values;
``step`` appends ONE time step: it projects only the new tokens' keys and values, writes them
into the cache and attends over it. For this post-LN stack that equals recomputing the whole
context (the official code instead caches each layer's inputs and re-projects them every step,
STORM issue #14).
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

NEG_INF = -1e9


@struct.dataclass
class KVCache:
    """Keys/values of the tokens seen so far: ``k, v [B, L, S, N, H, Dh]`` (layers L, slots S),
    ``valid [B, S]`` (a slot holds a token the next ones may attend to), ``pos [B]`` (the next
    token's position), ``index []`` (the next slot to write, shared by all rows)."""

    k: jax.Array
    v: jax.Array
    valid: jax.Array
    pos: jax.Array
    index: jax.Array


def causal_mask(segments: jax.Array | None, length: int, batch: int) -> jax.Array:
    """``[B, T, T]``: step t sees steps s <= t (of its own segment when ``segments [B, T]``)."""
    mask = jnp.tril(jnp.ones((length, length), bool))[None]
    if segments is None:
        return jnp.broadcast_to(mask, (batch, length, length))
    return mask & (segments[:, :, None] == segments[:, None, :])


def sinusoidal(length: int, width: int) -> jax.Array:
    position = jnp.arange(length, dtype=jnp.float32)[:, None]
    rate = jnp.exp(-math.log(10000.0) * jnp.arange(0, width, 2, dtype=jnp.float32) / width)
    table = jnp.zeros((length, width), jnp.float32)
    table = table.at[:, 0::2].set(jnp.sin(position * rate))
    return table.at[:, 1::2].set(jnp.cos(position * rate[: width // 2]))


class Block(nn.Module):
    width: int
    heads: int
    ffn: int
    dropout: float
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        dense = lambda n, bias, name: nn.Dense(n, use_bias=bias, dtype=self.dtype, name=name)
        self.wq, self.wk = dense(self.width, False, "q"), dense(self.width, False, "k")
        self.wv, self.wo = dense(self.width, False, "v"), dense(self.width, False, "o")
        self.w1, self.w2 = dense(self.ffn, True, "ffn_1"), dense(self.width, True, "ffn_2")
        self.ln_attn = nn.LayerNorm(epsilon=1e-6, name="ln_attn")
        self.ln_ffn = nn.LayerNorm(epsilon=1e-6, name="ln_ffn")
        self.drop = nn.Dropout(self.dropout)

    def _heads(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[:-1] + (self.heads, self.width // self.heads))

    def kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Keys and values ``[B, S, N, H, Dh]`` of the inputs ``x [B, S, N, D]``."""
        return self._heads(self.wk(x)), self._heads(self.wv(x))

    def __call__(self, x: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                 deterministic: bool) -> jax.Array:
        """``x [B, T, N, D]`` attends to ``k, v [B, S, M, H, Dh]`` where ``mask [B, T, S]``."""
        q = self._heads(self.wq(x))
        logits = jnp.einsum("btnhd,bsmhd->bhtnsm", q, k).astype(jnp.float32)
        logits = logits / math.sqrt(self.width // self.heads)
        logits = jnp.where(mask[:, None, :, None, :, None], logits, NEG_INF)
        shape = logits.shape
        probs = jax.nn.softmax(logits.reshape(shape[:4] + (-1,)), -1).reshape(shape)
        probs = self.drop(probs, deterministic=deterministic).astype(v.dtype)
        out = jnp.einsum("bhtnsm,bsmhd->btnhd", probs, v).reshape(x.shape[:-1] + (-1,))
        x = self.ln_attn(x + self.drop(self.wo(out), deterministic=deterministic))
        y = self.w2(nn.relu(self.w1(x)))
        return self.ln_ffn(x + self.drop(y, deterministic=deterministic))


class Transformer(nn.Module):
    layers: int
    width: int
    heads: int
    ffn: int
    max_len: int
    dropout: float = 0.1
    positions: str = "learned"
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        dense = lambda name: nn.Dense(self.width, use_bias=False, dtype=self.dtype, name=name)
        self.stem_1, self.stem_2 = dense("stem_1"), dense("stem_2")
        self.stem_ln_1 = nn.LayerNorm(epsilon=1e-5, name="stem_ln_1")
        self.stem_ln_2 = nn.LayerNorm(epsilon=1e-5, name="stem_ln_2")
        if self.positions == "learned":   # nn.Embedding's N(0, 1) init, as PyTorch's
            self.position_table = self.param("position", nn.initializers.normal(1.0),
                                             (self.max_len, self.width))
        else:
            self.position_table = sinusoidal(self.max_len, self.width)
        self.ln_in = nn.LayerNorm(epsilon=1e-6, name="ln_in")
        self.blocks = [Block(self.width, self.heads, self.ffn, self.dropout, self.dtype,
                             name=f"block_{i}") for i in range(self.layers)]

    def embed(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
        """``tokens [B, T, N, I]`` at ``positions [B, T]`` (clipped to max_len - 1) -> ``[B, T,
        N, D]``."""
        x = self.stem_ln_2(self.stem_2(nn.relu(self.stem_ln_1(self.stem_1(tokens)))))
        position = self.position_table[jnp.clip(positions, 0, self.max_len - 1)]
        return self.ln_in(x + position[:, :, None, :])

    def __call__(self, tokens: jax.Array, positions: jax.Array, mask: jax.Array,
                 deterministic: bool = True) -> tuple[jax.Array, list]:
        """A whole context: outputs ``[B, T, N, D]`` (float32) and ``[(k, v)]`` per layer."""
        x = self.embed(tokens, positions)
        kvs = []
        for block in self.blocks:
            k, v = block.kv(x)
            kvs.append((k, v))
            x = block(x, k, v, mask, deterministic)
        return x.astype(jnp.float32), kvs

    def step(self, tokens: jax.Array, cache: KVCache) -> tuple[jax.Array, KVCache]:
        """One step ``tokens [B, N, I]`` at ``cache.index`` (position ``cache.pos``): outputs
        ``[B, N, D]`` and the cache with the step appended (deterministic: no dropout)."""
        x = self.embed(tokens[:, None], cache.pos[:, None])
        index = cache.index
        valid = jax.lax.dynamic_update_slice(cache.valid, jnp.ones_like(cache.valid[:, :1]),
                                             (0, index))
        mask = valid[:, None, :]
        k_all, v_all = cache.k, cache.v
        for i, block in enumerate(self.blocks):
            k_new, v_new = block.kv(x)
            k_all, v_all = _write(k_all, k_new, i, index), _write(v_all, v_new, i, index)
            x = block(x, k_all[:, i], v_all[:, i], mask, True)
        cache = KVCache(k=k_all, v=v_all, valid=valid, pos=cache.pos + 1, index=index + 1)
        return x[:, 0].astype(jnp.float32), cache


def _write(buffer: jax.Array, new: jax.Array, layer: int, index: jax.Array) -> jax.Array:
    """``buffer [B, L, S, ...]`` with ``new [B, 1, ...]`` written at (``layer``, ``index``)."""
    start = (0, layer, index) + (0,) * (buffer.ndim - 3)
    return jax.lax.dynamic_update_slice(buffer, new[:, None].astype(buffer.dtype), start)


def cache_from_context(kvs: Sequence[tuple[jax.Array, jax.Array]], valid: jax.Array,
                       extra: int) -> KVCache:
    """The cache after a context run by ``Transformer.__call__`` (``kvs`` of ``[B, W, ...]``,
    ``valid [B, W]``), with ``extra`` empty slots for the steps to come."""
    pad = lambda x: jnp.pad(x, [(0, 0), (0, extra)] + [(0, 0)] * (x.ndim - 2))
    k = jnp.stack([pad(k) for k, _ in kvs], 1)
    v = jnp.stack([pad(v) for _, v in kvs], 1)
    width = valid.shape[1]
    return KVCache(k=k, v=v, valid=pad(valid), pos=jnp.sum(valid, 1).astype(jnp.int32),
                   index=jnp.asarray(width, jnp.int32))
