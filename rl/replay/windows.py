"""n-step transitions plus the next K actions and frame stacks (TACO, SPR), jittable.

``(o_t, a_t, R^(n), o_{t+n})`` as ``sample_transitions``, and the window after ``t``:
``a_t .. a_{t+K-1}``, the stacks ``o_{t+1} .. o_{t+K}`` and which of those steps belong to t's
episode. ``full_window=True`` samples only starts whose whole window is inside t's episode
(TACO's official replay looks ``max(n, K)`` steps ahead); ``False`` also samples starts near an
episode's end and masks the steps after it (SPR's done-masking).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rl.replay.gather import gather_stack, gather_window
from rl.core.batches import TransitionWindows
from rl.replay.sample import _check_steps, sample_transitions_at, valid_transition_starts
from rl.replay.samplers import Sampler, sample_starts, uniform
from rl.replay.state import ReplayState, slot_ages


def window_steps_in_episode(state: ReplayState, horizon: int) -> jax.Array:
    """``[E, C, K]`` bool: step ``t+k`` (k = 1..K) is written and continues t's episode.

    A step continues the episode when no ``is_last`` comes at ``t .. t+k-1`` and no ``is_first``
    at ``t+1 .. t+k`` (an ``is_first`` without an ``is_last`` before it also ends the window).
    """
    ages = slot_ages(state)
    ok, steps = jnp.ones(state.is_first.shape, bool), []
    for k in range(1, horizon + 1):    # K is small and static
        continues = ~jnp.roll(state.is_last, -(k - 1), axis=1) & ~jnp.roll(state.is_first, -k, axis=1)
        ok = ok & continues & (ages >= k)[None]
        steps.append(ok)
    return jnp.stack(steps, axis=-1)


def sample_transition_windows(state: ReplayState, key: jax.Array, batch_size: int, n_step: int,
                              gamma: float | jax.Array, frame_stack: int, horizon: int,
                              full_window: bool = True, sampler: Sampler = uniform,
                              pad: str = "repeat") -> TransitionWindows:
    """A batch of n-step transitions with the ``horizon`` steps after each start; see the module."""
    capacity = state.capacity_per_env
    _check_steps("horizon", horizon, capacity, capacity - 1)
    steps_ok = window_steps_in_episode(state, horizon)
    valid = valid_transition_starts(state, n_step)
    if full_window:
        valid = valid & steps_ok[..., -1]
    env_index, slot, prob = sample_starts(state, key, batch_size, valid, sampler)
    transition = sample_transitions_at(state, env_index, slot, prob, n_step, gamma, frame_stack,
                                       pad)
    future_valid = steps_ok[env_index, slot]                                     # [B, K]
    actions = gather_window(state, env_index, (slot + 1) % capacity, horizon, fields=("action",))
    mask = future_valid.reshape(future_valid.shape + (1,) * (actions["action"].ndim - 2))
    ks = jnp.arange(1, horizon + 1, dtype=jnp.int32)
    # The last in-episode step for each k (the stack at t itself when step t+1 is already out).
    last_ok = jnp.max(jnp.where(future_valid, ks, 0), axis=-1, keepdims=True)
    future_slot = (slot[:, None] + jnp.minimum(ks, last_ok)) % capacity
    future_obs = jax.vmap(lambda s: gather_stack(state, env_index, s, frame_stack, pad),
                          in_axes=1, out_axes=1)(future_slot)
    return TransitionWindows(transition=transition,
                             actions=jnp.where(mask, actions["action"], 0.0),
                             future_obs=future_obs, future_valid=future_valid)
