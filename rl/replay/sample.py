"""Batches for training: n-step transitions with frame stacks, and sequences (all jittable).

Static arguments: ``batch_size``, ``n_step``, ``frame_stack``, ``length``, ``sampler``; ``gamma``
may be traced (BBF anneals it). Jit them with those names static, or call inside a train step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rl.core.batches import Sequences, Transitions
from rl.replay.gather import gather_stack, gather_window, n_step_return
from rl.replay.samplers import Sampler, sample_starts, uniform
from rl.replay.state import ReplayState, slot_ages


def _check_steps(name: str, value: int, capacity: int, largest: int) -> None:
    if not isinstance(value, int) or value < 1 or value > largest:
        raise ValueError(f"{name} must be an int in [1, {largest}] for {capacity} slots per env, got {value!r}")


def valid_transition_starts(state: ReplayState, n_step: int) -> jax.Array:
    """``[E, C]`` bool: t is written, t+n_step is written, t is not an episode's last step, and
    t+1 continues t's episode."""
    ages = slot_ages(state)
    in_range = (ages >= n_step) & (ages < state.size)
    next_is_first = jnp.roll(state.is_first, -1, axis=1)
    return in_range[None] & ~state.is_last & ~next_is_first


def valid_sequence_starts(state: ReplayState, length: int) -> jax.Array:
    """``[E, C]`` bool: the window ``t .. t+length-1`` lies inside written data (never wraps into
    the oldest, overwritten region and never passes the newest write)."""
    ages = slot_ages(state)
    in_range = (ages >= length - 1) & (ages < state.size)
    return jnp.broadcast_to(in_range[None], state.is_first.shape)


def sample_transitions(state: ReplayState, key: jax.Array, batch_size: int, n_step: int,
                       gamma: float | jax.Array, frame_stack: int,
                       sampler: Sampler = uniform, pad: str = "repeat") -> Transitions:
    """n-step transitions ``(o_t, a_t, R^(m), gamma^m d_{t+m}, o_{t+m})`` that never cross an
    episode: ``m = n_step`` unless the episode's last step comes first. ``pad``: how stacks
    are filled before an episode's first frame (``gather_stack``)."""
    capacity = state.capacity_per_env
    _check_steps("n_step", n_step, capacity, capacity - 1)
    env_index, slot, prob = sample_starts(
        state, key, batch_size, valid_transition_starts(state, n_step), sampler)
    return sample_transitions_at(state, env_index, slot, prob, n_step, gamma, frame_stack, pad)


def sample_transitions_at(state: ReplayState, env_index: jax.Array, slot: jax.Array,
                          prob: jax.Array, n_step: int, gamma: float | jax.Array,
                          frame_stack: int, pad: str = "repeat") -> Transitions:
    """The n-step transitions at given valid starts (``valid_transition_starts``)."""
    capacity = state.capacity_per_env
    ahead = gather_window(state, env_index, (slot + 1) % capacity, n_step,
                          fields=("reward", "discount", "is_first", "is_last"))
    ret, bootstrap, m = n_step_return(ahead["reward"], ahead["discount"], ahead["is_first"],
                                      ahead["is_last"], gamma)
    next_slot = (slot + m) % capacity
    return Transitions(
        obs=gather_stack(state, env_index, slot, frame_stack, pad),
        action=state.action[env_index, (slot + 1) % capacity],
        reward=ret,
        discount=bootstrap,
        next_obs=gather_stack(state, env_index, next_slot, frame_stack, pad),
        env_index=env_index, slot=slot, prob=prob,
    )


def sample_sequences(state: ReplayState, key: jax.Array, batch_size: int, length: int,
                     sampler: Sampler = uniform) -> Sequences:
    """Windows of ``length`` consecutive stored steps inside written data.

    Windows may cross episode boundaries; ``is_first`` inside a window is where a world model
    resets. The first step keeps its stored flags (usually mid-episode); world models start each
    window from their zero state anyway.
    """
    capacity = state.capacity_per_env
    _check_steps("length", length, capacity, capacity)
    env_index, slot, prob = sample_starts(
        state, key, batch_size, valid_sequence_starts(state, length), sampler)
    window = gather_window(state, env_index, slot, length)
    return Sequences(**window, env_index=env_index, slot=slot, prob=prob)
