"""Writing into the replay: one lockstep step of every env, and priority updates."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rl.core.types import TimeStep
from rl.replay.state import ReplayState


def _check(name: str, value: jax.Array, shape: tuple[int, ...]) -> None:
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"replay.add: {name} has shape {tuple(value.shape)}, expected {tuple(shape)}")


def add(state: ReplayState, obs: jax.Array, action: jax.Array, reward: jax.Array,
        discount: jax.Array, is_first: jax.Array, is_last: jax.Array,
        is_terminal: jax.Array) -> ReplayState:
    """Write one step of all ``E`` envs at ``ptr`` (jittable; donate ``state``).

    ``action[e]`` is the action that led to ``obs[e]``; it and ``reward`` are zeroed where
    ``is_first`` (after an auto-reset the caller usually passes the old episode's last action).
    """
    num_envs = state.num_envs
    obs = jnp.asarray(obs)
    if obs.dtype != jnp.uint8:
        raise ValueError(f"replay.add: obs must be uint8 pixels, got dtype {obs.dtype}")
    _check("obs", obs, (num_envs,) + state.obs.shape[2:])
    action = jnp.asarray(action)
    _check("action", action, (num_envs,) + state.action.shape[2:])
    flat = {"reward": reward, "discount": discount, "is_first": is_first,
            "is_last": is_last, "is_terminal": is_terminal}
    flat = {k: jnp.asarray(v) for k, v in flat.items()}
    for name, value in flat.items():
        _check(name, value, (num_envs,))

    first = flat["is_first"].astype(bool)
    action = jnp.where(first.reshape((num_envs,) + (1,) * (action.ndim - 1)), 0, action)
    flat["reward"] = jnp.where(first, 0.0, flat["reward"])

    def put(buffer: jax.Array, value: jax.Array) -> jax.Array:
        return jax.lax.dynamic_update_index_in_dim(buffer, value.astype(buffer.dtype), state.ptr, axis=1)

    capacity = state.capacity_per_env
    envs_per_group = num_envs // state.max_priority.shape[0]
    return state.replace(
        obs=put(state.obs, obs),
        action=put(state.action, action),
        **{k: put(getattr(state, k), v) for k, v in flat.items()},
        priority=put(state.priority, jnp.repeat(state.max_priority, envs_per_group,
                                                total_repeat_length=num_envs)),
        ptr=((state.ptr + 1) % capacity).astype(jnp.int32),
        size=jnp.minimum(state.size + 1, capacity).astype(jnp.int32),
    )


_add_donated = jax.jit(add, donate_argnums=0)


def add_timestep(state: ReplayState, ts: TimeStep, action: np.ndarray | jax.Array) -> ReplayState:
    """Host convenience: store ``ts`` (and the action that led to it). ``state`` is donated."""
    return _add_donated(state, np.asarray(ts.obs), action, np.asarray(ts.reward, np.float32),
                        np.asarray(ts.discount, np.float32), np.asarray(ts.is_first, bool),
                        np.asarray(ts.is_last, bool), np.asarray(ts.is_terminal, bool))


def update_priorities(state: ReplayState, env_index: jax.Array, slot: jax.Array,
                      priorities: jax.Array, track_max: bool = True) -> ReplayState:
    """Set the priority of sampled slots (jittable). Negative or non-finite priorities become 0
    (never drawn again) rather than corrupting the sampling distribution.

    ``track_max`` (static): raise the group's ``max_priority`` (what ``add`` gives new rows) to
    these priorities; ``False`` leaves it at its initial 1 (rlpyt's fixed ``default_priority``).
    """
    priorities = jnp.asarray(priorities, jnp.float32)
    priorities = jnp.where(jnp.isfinite(priorities), jnp.maximum(priorities, 0.0), 0.0)
    group = jnp.asarray(env_index) // (state.num_envs // state.max_priority.shape[0])
    return state.replace(
        priority=state.priority.at[env_index, slot].set(priorities),
        max_priority=(state.max_priority.at[group].max(priorities) if track_max
                      else state.max_priority),
    )
