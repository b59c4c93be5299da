"""Deterministic-policy evaluation over K episodes on a separate vector env, and the agent's
own report videos (shared by the training loop and experiments.evaluate)."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from rl.agents.base import Agent


def eval_reset_seed(base_seed: int, evaluation: int) -> int:
    """The base reset seed of evaluation ``evaluation`` (0, 1, ...) of a run whose eval env was
    built with ``base_seed``.

    Evaluation 0 keeps ``base_seed`` itself (the episodes every earlier run evaluated on);
    later ones get fresh seeds, so a run's evaluations do not replay the same episodes. A pure
    function of the two integers: a resumed run (whose ``LoopState.evals`` is checkpointed)
    evaluates on the same episodes as an uninterrupted one.
    """
    if isinstance(evaluation, bool) or int(evaluation) < 0 or int(base_seed) < 0:
        raise ValueError(f"eval_reset_seed needs non-negative integers, got "
                         f"({base_seed!r}, {evaluation!r})")
    if evaluation == 0:
        return int(base_seed)
    # a tag keeps these apart from seed_for's [seed, env, episode] triples
    state = np.random.SeedSequence([int(base_seed), int(evaluation), 0xE7A1])
    return int(state.generate_state(1)[0])


def evaluate(agent: Agent, act: Callable, state: Any, env: Any, episodes: int, key: jax.Array,
             step: jax.Array, record_video: bool = False, max_steps: int = 10_000_000,
             groups: int = 1, reset_seed: int | None = None
             ) -> tuple[list[dict[str, float]], np.ndarray | None]:
    """Runs ``episodes`` full episodes per group with ``explore=False``; returns one stats dict
    per group (``summarise``) and env 0's frames (``play`` says which episodes count)."""
    played, video = play(agent, act, state, env, episodes, key, step, record_video, max_steps,
                         groups, reset_seed=reset_seed)
    return [summarise(group) for group in played], video


def play(agent: Agent, act: Callable, state: Any, env: Any, episodes: int, key: jax.Array,
         step: jax.Array, record_video: bool = False, max_steps: int = 10_000_000,
         groups: int = 1, explore: bool = False, reset_seed: int | None = None
         ) -> tuple[list[dict[str, list[float]]], np.ndarray | None]:
    """Runs ``episodes`` full episodes per group; returns each group's per-episode ``return``,
    ``length`` (and ``success``) lists and env 0's frames of its first episode. ``explore``:
    act as in training (exploration noise at ``step``) instead of the deterministic policy.

    ``groups``: the env is split into that many equal blocks of consecutive envs (one per
    vmapped seed, ``rl.agents.seed_stack``), each evaluated on its own episodes.
    Each env's share of a group's episodes is fixed before any episode ends (the first
    ``episodes % n`` of its ``n`` envs play one more than the others) and counted in the order
    each env plays them. Taking the first episodes to finish instead would favour short ones
    (e.g. Atari games lost quickly) whenever episode lengths vary.
    The eval env is reset at every call, under the base seed ``reset_seed`` when given (the
    loop passes ``eval_reset_seed(base, evaluation index)``, so each evaluation plays new
    episodes); ``None`` keeps the env's current base seed (the same episodes as last time).
    Either way the episodes depend only on that seed, so a run that is resumed evaluates on the
    same episodes as an uninterrupted one.
    """
    if groups < 1 or env.num_envs % groups:
        raise ValueError(f"evaluate: {env.num_envs} envs cannot be split into groups={groups}")
    envs_per_group = env.num_envs // groups
    ts = env.reset(reset_seed)
    # committed like everything the jitted act returns, so act compiles once, not per carry kind
    # (on the agent's devices when it spans several: rl/sharding.py)
    carry = jax.device_put(agent.initial_carry(env.num_envs),
                           getattr(agent, "carry_sharding", jax.devices()[0]))
    stats = [{"return": [], "length": [], "success": []} for _ in range(groups)]
    position = np.arange(env.num_envs) % envs_per_group
    quota = episodes // envs_per_group + (position < episodes % envs_per_group)
    finished = np.zeros(env.num_envs, np.int64)
    frames = [ts.obs[0]] if record_video else None
    recording = record_video
    for _ in range(max_steps):
        key, key_act = jax.random.split(key)
        action, carry = act(state, carry, jnp.asarray(ts.obs), jnp.asarray(ts.is_first),
                            key_act, step, explore=explore)
        # envs done with their share stop stepping: the tail of long episodes (Atari's cap
        # is 27k steps) then costs only the envs still playing
        ts = env.step(np.asarray(action), finished < quota)
        if recording:
            frames.append(ts.obs[0])
            recording = not ts.is_last[0]
        for i in np.flatnonzero(ts.is_last & (finished < quota)):
            finished[i] += 1
            group = stats[i // envs_per_group]
            group["return"].append(float(ts.info["episode_return"][i]))
            group["length"].append(float(ts.info["episode_length"][i]))
            if "episode_success" in ts.info:
                group["success"].append(float(ts.info["episode_success"][i]))
        if np.all(finished >= quota):
            break
    video = np.stack(frames) if record_video else None
    return stats, video


def summarise(group: dict[str, list[float]]) -> dict[str, float]:
    """One group's episodes (``play``) as the scalars the loggers record."""
    returns, lengths = group["return"], group["length"]
    result = {"return": float(np.mean(returns)), "return_std": float(np.std(returns)),
              "episode_length": float(np.mean(lengths)), "episodes": float(len(returns))}
    if group["success"]:
        result["success"] = float(np.mean(group["success"]))
    return result


def make_report_fn(agent: Agent) -> Callable[[Any, Any, jax.Array], dict[str, jax.Array]] | None:
    """The agent's own videos (e.g. a world model's open-loop predictions) from one replay
    batch, jitted: ``(state, replay, key) -> {name: uint8 [T, H, W, C]}``; None for agents
    without a ``report`` method. The loop's eval videos and experiments.evaluate share it."""
    if not hasattr(agent, "report"):
        return None
    return jax.jit(lambda state, replay, key: agent.report(state, agent.sample(replay, key), key))
