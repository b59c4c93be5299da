"""STORM's carry: a window of recent tokens, plus the latent whose token still waits for its
action. The same type is the acting carry (``step``), the carry ``observe`` returns and the
imagination starts (``starts``); ``imagine`` runs the window once through the transformer,
keeps its keys and values in a ``KVCache`` and then appends one step at a time.

A window is right-aligned: slot W-1 holds the newest token, ``valid`` marks the slots in use
(older slots, and with ``episode_mask`` the slots before an episode start, are not). Positions
count the valid tokens from 0, as in STORM, whose contexts always start at position 0.

Why acting keeps tokens and not keys/values: positions are absolute and learned, and STORM
acts on a sliding window of the last 16 steps whose positions restart at 0 every step; a
sliding key/value cache would keep stale positions baked into its keys, so the window is run
again at every step (16 tokens per env, as the official code does).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Context:
    latents: jax.Array       # [N, W, Z] the tokens' latents z_t (one-hot samples)
    actions: jax.Array       # [N, W, A] the action vector taken after each (a_t)
    valid: jax.Array         # [N, W] bool
    latent: jax.Array        # [N, Z] the newest latent, whose action is not known yet
    has_latent: jax.Array    # [N] bool: ``latent`` holds one (else imagine draws it from the
    #                          prior of the window's last output, as STORM's imagination starts)

    @property
    def tokens(self) -> jax.Array:
        """The transformer inputs ``[N, W, 1, Z + A]`` (one token per step)."""
        return jnp.concatenate([self.latents, self.actions], -1)[:, :, None]


def empty(batch: int, width: int, latent_size: int, action_dim: int) -> Context:
    zeros = lambda *shape: jnp.zeros((batch,) + shape, jnp.float32)
    return Context(latents=zeros(width, latent_size), actions=zeros(width, action_dim),
                   valid=jnp.zeros((batch, width), bool), latent=zeros(latent_size),
                   has_latent=jnp.zeros((batch,), bool))


def positions(valid: jax.Array) -> jax.Array:
    """Position of each slot ``[N, W]``: the number of valid slots before it (0 for the oldest
    valid token)."""
    return jnp.clip(jnp.cumsum(valid, 1) - 1, 0).astype(jnp.int32)


def push(ctx: Context, action: jax.Array) -> Context:
    """Complete the pending token with ``action [N, A]`` and append it (the oldest slot drops
    out); rows without a pending latent are unchanged."""
    shift = lambda window, new: jnp.concatenate([window[:, 1:], new[:, None]], 1)
    pushed = Context(latents=shift(ctx.latents, ctx.latent), actions=shift(ctx.actions, action),
                     valid=shift(ctx.valid, jnp.ones_like(ctx.has_latent)), latent=ctx.latent,
                     has_latent=jnp.zeros_like(ctx.has_latent))
    return where(ctx.has_latent, pushed, ctx)


def where(rows: jax.Array, a: Context, b: Context) -> Context:
    """``a`` on the rows ``rows [N]`` (bool), ``b`` elsewhere."""
    pick = lambda x, y: jnp.where(rows.reshape(rows.shape + (1,) * (x.ndim - 1)), x, y)
    return jax.tree.map(pick, a, b)


def windows(latents: jax.Array, actions: jax.Array, segments: jax.Array | None,
            ends: jax.Array, width: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The ``width`` tokens ending at each token index ``ends [E]`` of the sequences
    ``latents [B, T, Z]``, ``actions [B, T, A]``: ``([B, E, W, Z], [B, E, W, A], valid [B, E,
    W])``. Slots before the sequence (and, with ``segments [B, T]``, before the end token's
    episode) are not valid."""
    index = ends[:, None] - (width - 1) + jnp.arange(width)[None]          # [E, W]
    inside = index >= 0
    index = jnp.maximum(index, 0)
    take = lambda x: jnp.take(x, index, axis=1)                             # [B, E, W, ...]
    valid = jnp.broadcast_to(inside[None], (latents.shape[0],) + index.shape)
    if segments is not None:
        valid = valid & (take(segments) == jnp.take(segments, ends, axis=1)[:, :, None])
    return take(latents), take(actions), valid


def starts(latents: jax.Array, actions: jax.Array, segments: jax.Array | None,
           width: int) -> Context:
    """Imagination starts ``[B*(T-1)]`` from observed sequences ``[B, T]``: after each token
    (T-1 of them: the last frame has no action yet), the ``width`` tokens up to it; the
    next latent is left to the prior (STORM's start)."""
    ends = jnp.arange(latents.shape[1] - 1)
    latents, actions, valid = windows(latents, actions, segments, ends, width)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    num = valid.shape[0] * valid.shape[1]
    return Context(flat(latents), flat(actions), flat(valid),
                   jnp.zeros((num, latents.shape[-1])), jnp.zeros((num,), bool))


def after(latents: jax.Array, actions: jax.Array, segments: jax.Array | None,
          is_first: jax.Array, width: int) -> Context:
    """The acting window after observed sequences ``[B, T]``: their last ``width`` tokens (of
    the last frame's episode, with ``segments``), the last frame's latent pending."""
    length = latents.shape[1]
    window, taken, valid = windows(latents, actions, segments, jnp.array([length - 2]), width)
    if segments is not None:
        valid = valid & ~is_first[:, -1:, None]
    return Context(window[:, 0], taken[:, 0], valid[:, 0], latents[:, -1],
                   jnp.ones((latents.shape[0],), bool))
