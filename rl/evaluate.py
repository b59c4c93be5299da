"""Deterministic-policy evaluation over K episodes on a separate vector env."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from rl.agents.base import Agent


def evaluate(agent: Agent, act: Callable, state: Any, env: Any, episodes: int, key: jax.Array,
             step: jax.Array, record_video: bool = False,
             max_steps: int = 10_000_000) -> tuple[dict[str, float], np.ndarray | None]:
    """Runs ``episodes`` full episodes with ``explore=False``; returns stats and env 0's frames.

    The eval env is reset at every call; it seeds its episodes itself, so a run that is resumed
    evaluates on the same episodes as an uninterrupted one.
    """
    ts = env.reset()
    carry = agent.initial_carry(env.num_envs)
    returns, lengths, successes = [], [], []
    frames = [ts.obs[0]] if record_video else None
    recording = record_video
    for _ in range(max_steps):
        key, key_act = jax.random.split(key)
        action, carry = act(state, carry, jnp.asarray(ts.obs), jnp.asarray(ts.is_first),
                            key_act, step, explore=False)
        ts = env.step(np.asarray(action))
        if recording:
            frames.append(ts.obs[0])
            recording = not ts.is_last[0]
        for i in np.flatnonzero(ts.is_last):
            returns.append(float(ts.info["episode_return"][i]))
            lengths.append(float(ts.info["episode_length"][i]))
            if "episode_success" in ts.info:
                successes.append(float(ts.info["episode_success"][i]))
        if len(returns) >= episodes:
            break
    returns, lengths = returns[:episodes], lengths[:episodes]
    result = {"return": float(np.mean(returns)), "return_std": float(np.std(returns)),
              "episode_length": float(np.mean(lengths)), "episodes": float(len(returns))}
    if successes:
        result["success"] = float(np.mean(successes[:episodes]))
    video = np.stack(frames) if record_video else None
    return result, video
