"""The batch types the replay samples and agents and objectives consume (pytrees).

They live in the leaf layer so that ``representations/`` and ``world_models/`` can name them
without importing the replay.
"""
from __future__ import annotations

import flax
import jax


@flax.struct.dataclass
class Transitions:
    obs: jax.Array        # [B, H, W, Ch*S] uint8, stack at t (oldest frame first)
    action: jax.Array     # [B, *A] the action taken at obs_t (stored at t+1)
    reward: jax.Array     # [B] sum_{k=1..m} gamma^(k-1) r_{t+k}
    discount: jax.Array   # [B] gamma^m * discount_{t+m}: 0 after a terminal
    next_obs: jax.Array   # [B, H, W, Ch*S] uint8, stack at t+m
    env_index: jax.Array  # [B] int32
    slot: jax.Array       # [B] int32, slot of t (for update_priorities)
    prob: jax.Array       # [B] float32 sampling probability (for importance weights)


@flax.struct.dataclass
class Sequences:
    obs: jax.Array          # [B, T, H, W, Ch] uint8
    action: jax.Array       # [B, T, *A] action that LED to obs[:, t] (zeros on is_first)
    reward: jax.Array       # [B, T] reward received on arriving at obs[:, t]
    discount: jax.Array     # [B, T]
    is_first: jax.Array     # [B, T] stored flags: a window may start mid-episode and cross into the next one
    is_last: jax.Array      # [B, T]
    is_terminal: jax.Array  # [B, T]
    env_index: jax.Array    # [B] int32
    slot: jax.Array         # [B] int32, slot of the window's first step
    prob: jax.Array         # [B] float32


@flax.struct.dataclass
class TransitionWindows:
    transition: Transitions  # the n-step transition at t
    actions: jax.Array       # [B, K, *A] a_t .. a_{t+K-1}; zeros after t's episode ends
    future_obs: jax.Array    # [B, K, H, W, Ch*S] stacks at t+1 .. t+K; repeats the last valid one
    future_valid: jax.Array  # [B, K] bool: step t+k (k = 1..K) belongs to t's episode
