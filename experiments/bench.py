"""Throughput benchmark: DrQ-v2 update, replay sampling, env frames/s per suite. One table.

    python -m experiments.bench                       # everything available here
    python -m experiments.bench --batches 256 1024 --suites dmc atari --out results/bench.md

Times are wall-clock medians over repeated calls after compilation, with the device synchronised
(``block_until_ready``) around each timed block. Run it on the GPU for reported numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

ENV_FOR_SUITE = {"dmc": "dmc/cartpole_swingup", "atari": "atari/Pong",
                 "adroit": "adroit/door", "toy": "toy/reach"}


def time_call(fn: Callable[[], object], repeats: int, inner: int) -> tuple[float, float]:
    """(seconds of the first, compiling call; median seconds per ``fn()`` call over ``repeats``
    blocks of ``inner`` calls after it), with the device synchronised around each block."""
    t_first = time.perf_counter()
    jax.block_until_ready(fn())  # compile and warm up
    t_first = time.perf_counter() - t_first
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            out = fn()
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / inner)
    return t_first, statistics.median(times)


def median_time(fn: Callable[[], object], repeats: int, inner: int) -> float:
    """Median seconds per ``fn()`` call (see ``time_call``)."""
    return time_call(fn, repeats, inner)[1]


def _filled_replay(spec, capacity: int, key: jax.Array, num_envs: int = 1):
    """A full buffer of ``capacity`` steps per env (random frames, 500-step episodes), one
    priority group per env (as ``num_envs`` seeds of one env each)."""
    from rl import replay as replay_lib

    replay = replay_lib.init(spec, capacity * num_envs, num_envs, priority_groups=num_envs)
    h, w, c = spec.obs_shape
    def add(replay, i):
        obs = jax.random.randint(jax.random.fold_in(key, i), (num_envs, h, w, c), 0, 255)
        a = jnp.zeros((num_envs, *spec.action.shape), spec.action.dtype)
        first = jnp.full(num_envs, (i % 500) == 0)
        last = jnp.full(num_envs, (i % 500) == 499)
        return replay_lib.add(replay, obs.astype(jnp.uint8), a, jnp.ones(num_envs),
                              jnp.ones(num_envs), first, last, jnp.zeros(num_envs, bool)), None
    replay, _ = jax.lax.scan(add, replay, jnp.arange(capacity))
    return replay


def update_call(agent, replay, key: jax.Array, updates_per_call: int = 1) -> Callable[[], object]:
    """A no-argument call doing the loop's fused sample+update on ``agent``'s own state (kept
    between calls; a prioritised agent's replay too); returns the metrics."""
    from rl.loop import make_update_fn

    update = make_update_fn(agent, updates_per_call, fused_sampling=True)
    holder = {"state": agent.init(key), "replay": replay}
    step = jnp.asarray(10_000)

    def call():
        holder["state"], holder["replay"], metrics = update(holder["state"], holder["replay"],
                                                            key, step)
        return metrics
    return call


def _time_updates(agent, replay, key, updates_per_call: int, repeats: int,
                  inner: int) -> tuple[float, float]:
    """(compile seconds, seconds per update) of the loop's fused sample+update call."""
    t_compile, per_call = time_call(update_call(agent, replay, key, updates_per_call), repeats,
                                    inner)
    return t_compile, per_call / updates_per_call


def bench_drqv2(batches: list[int], fused: int, repeats: int) -> list[dict]:
    from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
    from rl.core.types import ActionSpec, EnvSpec

    spec = EnvSpec("bench", (84, 84, 3), ActionSpec.box(6), action_repeat=2)
    rows = []
    key = jax.random.PRNGKey(0)
    replay = jax.jit(_filled_replay, static_argnums=(0, 1))(spec, 20_000, key)
    for batch in batches:
        agent = DrQV2Agent(DrQV2Config(batch_size=batch), spec)
        for k in sorted({1, fused}):
            t_compile, per = _time_updates(agent, replay, key, k, repeats, 20 if k == 1 else 2)
            rows.append({"what": f"DrQ-v2 update (sample+update, {k} fused/call)", "batch": batch,
                         "ms": 1e3 * per, "per_s": 1 / per, "note": f"compile {t_compile:.1f}s"})
        sample = jax.jit(agent.sample)
        per = median_time(lambda: sample(replay, key), repeats, 50)
        rows.append({"what": "replay.sample_transitions (n=3, stack 3, 84px)", "batch": batch,
                     "ms": 1e3 * per, "per_s": 1 / per, "note": "20k-slot buffer on device"})
    return rows


def bench_taco(batches: list[int], repeats: int) -> list[dict]:
    """DrQ-v2 + TACO (``objective=taco``, K = 3): sample windows + the whole update."""
    from representations.taco import TacoConfig
    from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
    from rl.core.types import ActionSpec, EnvSpec

    spec = EnvSpec("bench", (84, 84, 3), ActionSpec.box(6), action_repeat=2)
    key = jax.random.PRNGKey(0)
    replay = jax.jit(_filled_replay, static_argnums=(0, 1))(spec, 20_000, key)
    rows = []
    for batch in batches:
        agent = DrQV2Agent(DrQV2Config(batch_size=batch, objectives={"taco": TacoConfig()}), spec)
        t_compile, per = _time_updates(agent, replay, key, 1, repeats, 20)
        rows.append({"what": "DrQ-v2 + TACO update (windows K=3, sample+update, 1/call)",
                     "batch": batch, "ms": 1e3 * per, "per_s": 1 / per,
                     "note": f"compile {t_compile:.1f}s"})
    return rows


def bench_rainbow(seeds: list[int], repeats: int, capacity: int = 50_000) -> list[dict]:
    """Data-efficient Rainbow with and without SPR at the paper's settings (84x84 grey, 4 stacked,
    batch 32, PER, 2 updates fused per call as the loop does), alone and with S seeds in one
    process (``SeedStack``: copies updated in turn, ``map``, or vmapped)."""
    from rl.agents.rainbow import RainbowAgent, RainbowConfig
    from rl.agents.seed_stack import SeedStack
    from representations.spr import SPRConfig
    from rl.core.types import ActionSpec, EnvSpec

    spec = EnvSpec("bench", (84, 84, 1), ActionSpec.categorical(6), action_repeat=4)
    key = jax.random.PRNGKey(0)
    rows = []
    for num in sorted(set(seeds)):
        replay = jax.jit(_filled_replay, static_argnums=(0, 1, 3))(spec, capacity, key, num)
        for name, objectives in (("Rainbow", {}), ("Rainbow + SPR (K=5)", {"spr": SPRConfig()})):
            agent = RainbowAgent(RainbowConfig(objectives=objectives), spec)
            for mode in (["-"] if num == 1 else ["map", "vmap"]):
                stacked = agent if num == 1 else SeedStack(agent, num, update_mode=mode)
                copy = jax.tree.map(jnp.copy, replay)   # a prioritised update donates it
                t_compile, per = _time_updates(stacked, copy, key, 2, repeats, 20)
                rows.append({"what": f"{name} sample+update, 2 fused/call, seeds {num} ({mode})",
                             "batch": 32, "ms": 1e3 * per, "per_s": 1 / per,
                             "note": f"{1e3 * per / num:.2f} ms per seed-update; compile "
                                     f"{t_compile:.1f}s; PER over {capacity} slots/seed"})
                del copy
    return rows


def bench_imagination(fused: int, repeats: int) -> list[dict]:
    """Dreamer-v1 world model + imagination actor-critic update at the paper's batch 50 x 50."""
    from rl.agents.imagination import ImaginationAgent
    from rl.agents.imagination.config import ImaginationConfig
    from rl.core.types import ActionSpec, EnvSpec

    spec = EnvSpec("bench", (64, 64, 3), ActionSpec.box(6), action_repeat=2)
    key = jax.random.PRNGKey(0)
    replay = jax.jit(_filled_replay, static_argnums=(0, 1))(spec, 5_000, key)
    cfg = ImaginationConfig()
    agent = ImaginationAgent(cfg, spec)
    rows = []
    for k in sorted({1, fused}):
        t_compile, per = _time_updates(agent, replay, key, k, repeats, 5 if k == 1 else 1)
        rows.append({"what": f"Dreamer-v1 update (world model + imagination + actor-critic, "
                             f"{k} fused/call)", "batch": f"{cfg.batch_size}x{cfg.length}",
                     "ms": 1e3 * per, "per_s": 1 / per,
                     "note": f"compile {t_compile:.1f}s, horizon {cfg.horizon}"})
    return rows


def bench_env(suite: str, steps: int) -> dict:
    from rl.envs import registry

    env = registry.make(ENV_FOR_SUITE[suite])
    spec = env.spec
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    def random_action():
        if spec.action.discrete:
            return int(rng.integers(spec.action.num_actions))
        return rng.uniform(spec.action.low, spec.action.high, spec.action.shape).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(random_action())
        if terminated or truncated:
            env.reset(seed=1)
    dt = time.perf_counter() - t0
    env.close()
    return {"what": f"env {ENV_FOR_SUITE[suite]} {spec.obs_shape} (1 process)", "batch": 1,
            "ms": 1e3 * dt / steps, "per_s": steps / dt,
            "note": f"{steps * spec.action_repeat / dt:.0f} frames/s (action repeat {spec.action_repeat})"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--fused", type=int, default=10, help="updates fused per call (scan)")
    parser.add_argument("--suites", nargs="+", default=list(ENV_FOR_SUITE), choices=list(ENV_FOR_SUITE))
    parser.add_argument("--env-steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the table (Markdown) here")
    parser.add_argument("--agents", nargs="+", default=["drqv2", "imagination"],
                        choices=["drqv2", "taco", "imagination", "rainbow"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 8],
                        help="rainbow: seeds per process (SeedStack) to time")
    args = parser.parse_args()
    rows = []
    if "drqv2" in args.agents:
        rows += bench_drqv2(args.batches, args.fused, args.repeats)
    if "taco" in args.agents:
        rows += bench_taco(args.batches, args.repeats)
    if "imagination" in args.agents:
        rows += bench_imagination(args.fused, args.repeats)
    if "rainbow" in args.agents:
        rows += bench_rainbow(args.seeds, args.repeats)
    for suite in args.suites:
        try:
            rows.append(bench_env(suite, args.env_steps))
        except ImportError as err:
            rows.append({"what": f"env {suite}", "batch": 1, "ms": float("nan"),
                         "per_s": float("nan"), "note": f"not installed: {err}"})
    device = jax.devices()[0]
    head = (f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}, "
            f"host {platform.node()} ({platform.processor() or platform.machine()})")
    lines = [head, "", "| what | batch | ms / item | items / s | note |", "|---|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['batch']} | {r['ms']:.3f} | {r['per_s']:.1f} | {r['note']} |"
              for r in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
