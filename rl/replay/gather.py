"""Reusable gathers on the replay state: frame stacks, windows, n-step returns (all jittable).

Agents that need other batch layouts (TACO, SPR: o_t, a_{t:t+K}, R^(n), o_{t+K}) compose these
with ``sample_starts`` instead of adding a sampler of their own.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rl.replay.state import ReplayState


PADS = ("repeat", "zero")


def gather_stack(state: ReplayState, env_index: jax.Array, slot: jax.Array,
                 frame_stack: int, pad: str = "repeat") -> jax.Array:
    """``[B, H, W, Ch*S]`` uint8: frames ``slot-S+1 .. slot`` of each env, oldest first on channels.

    Looking back stops at the episode's first frame and at the oldest written slot; the missing
    places get the earliest frame reached (``pad="repeat"``: DrQ-v2 repeats the first frame at
    a reset) or zeros (``"zero"``: rlpyt's frame buffer, SPR). ``rl.envs.frame_stack.push``
    pads the acting stack the same two ways.
    """
    if not isinstance(frame_stack, int) or frame_stack < 1:
        raise ValueError(f"frame_stack must be a positive int, got {frame_stack!r}")
    if pad not in PADS:
        raise ValueError(f"pad={pad!r}; valid: {list(PADS)}")
    capacity = state.capacity_per_env
    age = (state.ptr - 1 - slot) % capacity
    slots, inside = [slot], [jnp.ones(slot.shape, bool)]   # newest first
    current, newer, stopped = slot, slot, jnp.zeros(slot.shape, bool)
    for back in range(1, frame_stack):   # S is small and static
        stopped = stopped | state.is_first[env_index, newer] | (age + back >= state.size)
        newer = (slot - back) % capacity
        current = jnp.where(stopped, current, newer)
        slots.append(current)
        inside.append(~stopped)
    frames = [state.obs[env_index, s] for s in reversed(slots)]
    if pad == "zero":
        frames = [jnp.where(ok.reshape(ok.shape + (1,) * (f.ndim - ok.ndim)), f, 0)
                  for f, ok in zip(frames, reversed(inside))]
    return frames[0] if frame_stack == 1 else jnp.concatenate(frames, axis=-1)


_STEP_FIELDS = ("action", "reward", "discount", "is_first", "is_last", "is_terminal")


def gather_window(state: ReplayState, env_index: jax.Array, slot: jax.Array, length: int,
                  fields: tuple[str, ...] = ("obs",) + _STEP_FIELDS) -> dict[str, jax.Array]:
    """Stored fields at slots ``slot .. slot+length-1`` (mod C) of each env: ``{name: [B, T, ...]}``.

    No validity checks: pick starts whose whole window is written (``valid_sequence_starts``).
    """
    slots = (slot[:, None] + jnp.arange(length, dtype=jnp.int32)) % state.capacity_per_env
    rows = env_index[:, None]
    return {name: getattr(state, name)[rows, slots] for name in fields}


def n_step_return(reward: jax.Array, discount: jax.Array, is_first: jax.Array,
                  is_last: jax.Array, gamma: float | jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """n-step target pieces from the ``n`` steps after a start ``t`` (column ``k-1`` is ``t+k``).

    ``m`` = how many of those steps belong to t's episode: the window stops at the episode's last
    step (``is_last``), and defensively before an ``is_first`` not preceded by ``is_last``.
    Returns ``(sum_{k<=m} gamma^(k-1) r_{t+k}, gamma^m * discount_{t+m}, m)``; the bootstrap
    discount is 0 after a terminal and ``gamma^m`` after a truncation (m = 0 gives 0, 0).
    """
    steps = reward.shape[-1]
    last_before = jnp.concatenate([jnp.zeros_like(is_last[..., :1]), is_last[..., :-1]], axis=-1)
    crossed = jnp.cumsum((is_first | last_before).astype(jnp.int32), axis=-1)
    alive = crossed == 0                                       # t+k still in t's episode
    m = jnp.sum(alive, axis=-1).astype(jnp.int32)
    powers = jnp.asarray(gamma, jnp.float32) ** jnp.arange(steps, dtype=jnp.float32)
    ret = jnp.sum(jnp.where(alive, reward * powers, 0.0), axis=-1)
    end_discount = jnp.take_along_axis(discount, jnp.maximum(m - 1, 0)[..., None], axis=-1)[..., 0]
    bootstrap = jnp.where(m > 0, jnp.asarray(gamma, jnp.float32) ** m * end_discount, 0.0)
    return ret, bootstrap, m
