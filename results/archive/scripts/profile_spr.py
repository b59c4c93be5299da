"""Where does the Rainbow + SPR update's time go? (GPU profiling, issue 6)

    python results/scripts/profile_spr.py [--seeds 1 8] [--variants rainbow "spr K=5" fused]
    python results/scripts/profile_spr.py --trace /tmp/trace [--seeds 3]   # kernel counts
    python results/scripts/profile_spr.py --seeds 1 3 --variants fused --conv xla patches

``--trace``: a profiler trace (Perfetto JSON) of 20 fused sample+update calls of SPR with
``--seeds[-1]`` vmapped seeds, summarised as device events per call, their summed duration
against the wall clock (launch-bound if the sum is far below it), and the 15 costliest names.

Median wall clock (device synchronised) per call of: prioritised window sampling alone, the
update alone on a fixed batch (Rainbow; SPR at K = 1 and 5; SPR without batch norm; SPR in
bf16-free default precision vs highest), and the fused sample+update as the loop runs it.
"""
from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments.bench import _filled_replay, median_time, update_call  # noqa: E402
from rl.agents.rainbow import RainbowAgent, RainbowConfig  # noqa: E402
from rl.agents.seed_stack import SeedStack  # noqa: E402
from rl.core.types import ActionSpec, EnvSpec  # noqa: E402
from representations.spr import SPRConfig  # noqa: E402


def timed(name: str, fn, repeats: int = 5, inner: int = 20) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t0
    ms = 1e3 * median_time(fn, repeats, inner)
    print(f"{name:72s} {ms:8.3f} ms  (first call {compile_s:.1f}s)", flush=True)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--variants", nargs="+", default=None, help="names to run (default all)")
    parser.add_argument("--trace", default=None, help="directory for a profiler trace")
    parser.add_argument("--capacity", type=int, default=50_000, help="replay slots per seed")
    parser.add_argument("--conv", nargs="+", default=["xla"], choices=["xla", "patches"],
                        help="RainbowConfig.conv of the fused multi-seed calls and the trace")
    args = parser.parse_args()
    print(jax.devices()[0].device_kind, jax.__version__, flush=True)
    spec = EnvSpec("bench", (84, 84, 1), ActionSpec.categorical(6), action_repeat=4)
    key = jax.random.PRNGKey(0)
    if args.trace:
        return trace_summary(spec, key, args.seeds[-1], args.capacity, args.trace, args.conv[-1])
    replay = jax.jit(_filled_replay, static_argnums=(0, 1, 3))(spec, args.capacity, key, 1)
    step = jnp.asarray(10_000)

    variants = {
        "rainbow": RainbowConfig(),
        "spr K=5": RainbowConfig(objective=SPRConfig()),
        "spr K=1": RainbowConfig(objective=SPRConfig(horizon=1)),
        "spr K=5 no batchnorm": RainbowConfig(objective=SPRConfig(transition_norm="none")),
        "spr K=5 no augmentation": RainbowConfig(objective=SPRConfig(), augment=False),
    }
    for name, cfg in variants.items():
        if args.variants and name not in args.variants:
            continue
        agent = RainbowAgent(cfg, spec)
        state = agent.init(key)
        sample = jax.jit(agent.sample)
        timed(f"{name}: sample", lambda: sample(replay, key))
        batch = sample(replay, key)
        update = jax.jit(agent.update_with_priorities)
        timed(f"{name}: update on a fixed batch", lambda: update(state, batch, key, step)[1])
        grad_free = jax.jit(lambda s, b: agent.q_values(s.params, b.obs if hasattr(b, "obs")
                                                         else b.transition.obs))
        timed(f"{name}: q_values forward of the batch", lambda: grad_free(state, batch))
        if args.variants and "fused" not in args.variants:
            continue
        timed(f"{name}: loop's fused sample+update (2/call) per call",
              update_call(agent, jax.tree.map(jnp.copy, replay), key, 2))
        with jax.default_matmul_precision("highest"):
            update_hi = jax.jit(agent.update_with_priorities)
            timed(f"{name}: update, precision highest", lambda: update_hi(state, batch, key,
                                                                          step)[1])
    for num in args.seeds:
        if num == 1 and "fused" not in (args.variants or ()):
            continue
        rep = jax.jit(_filled_replay, static_argnums=(0, 1, 3))(spec, args.capacity, key, num)
        for conv in args.conv:
            agent = RainbowAgent(RainbowConfig(objective=SPRConfig(), conv=conv), spec)
            agent = agent if num == 1 else SeedStack(agent, num, update_mode="vmap")
            label = f"spr K=5 x{num} seeds{' vmapped' if num > 1 else ''}, conv={conv}"
            timed(f"{label}: fused sample+update (2/call)",
                  update_call(agent, jax.tree.map(jnp.copy, rep), key, 2))


def trace_summary(spec, key, seeds: int, capacity: int, log_dir: str, conv: str = "xla",
                  calls: int = 20) -> None:
    import collections
    import glob
    import gzip
    import json

    replay = jax.jit(_filled_replay, static_argnums=(0, 1, 3))(spec, capacity, key, seeds)
    agent = RainbowAgent(RainbowConfig(objective=SPRConfig(), conv=conv), spec)
    agent = agent if seeds == 1 else SeedStack(agent, seeds, update_mode="vmap")
    call = update_call(agent, replay, key, 2)
    jax.block_until_ready(call())          # compile outside the trace
    jax.block_until_ready(call())
    with jax.profiler.trace(log_dir, create_perfetto_trace=True):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = call()
        jax.block_until_ready(out)
        wall_ms = 1e3 * (time.perf_counter() - t0) / calls
    path = sorted(glob.glob(f"{log_dir}/**/*.trace.json.gz", recursive=True))[-1]
    events = json.load(gzip.open(path))["traceEvents"]
    names = {(e["pid"], e.get("args", {}).get("name")) for e in events if e.get("ph") == "M"}
    device_pids = {pid for pid, name in names if name and "/device:" in name}
    if not device_pids:                   # CPU backend: the host's events instead
        device_pids = {pid for pid, name in names if name}
    spans = [e for e in events if e.get("ph") == "X" and e["pid"] in device_pids]
    total = collections.Counter()
    for e in spans:
        total[e["name"]] += e.get("dur", 0.0)
    print(f"SPR x{seeds} seeds, conv={conv}, 2 fused updates per call: wall {wall_ms:.2f} ms "
          f"per call; "
          f"{len(spans) / calls:.0f} device events per call summing to "
          f"{sum(total.values()) / 1e3 / calls:.2f} ms ({sorted(n for _, n in names if n)})")
    for name, us in total.most_common(15):
        print(f"  {us / 1e3 / calls:8.3f} ms/call  {name[:100]}")


if __name__ == "__main__":
    main()
