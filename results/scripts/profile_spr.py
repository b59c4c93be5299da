"""Where does the Rainbow + SPR update's time go? (GPU profiling, issue 6)

    python results/scripts/profile_spr.py [--seeds 1 8]

Median wall clock (device synchronised) per call of: prioritised window sampling alone, the
update alone on a fixed batch (Rainbow; SPR at K = 1 and 5; SPR without batch norm; SPR in
bf16-free default precision vs highest), and the fused sample+update as the loop runs it.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments.bench import _filled_replay, median_time, update_call  # noqa: E402
from rl.agents.rainbow import RainbowAgent, RainbowConfig  # noqa: E402
from rl.agents.seed_stack import SeedStack  # noqa: E402
from rl.envs.types import ActionSpec, EnvSpec  # noqa: E402
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
    args = parser.parse_args()
    print(jax.devices()[0].device_kind, jax.__version__, flush=True)
    spec = EnvSpec("bench", (84, 84, 1), ActionSpec.categorical(6), action_repeat=4)
    key = jax.random.PRNGKey(0)
    replay = jax.jit(_filled_replay, static_argnums=(0, 1, 3))(spec, 50_000, key, 1)
    step = jnp.asarray(10_000)

    variants = {
        "rainbow": RainbowConfig(),
        "spr K=5": RainbowConfig(objective=SPRConfig()),
        "spr K=1": RainbowConfig(objective=SPRConfig(horizon=1)),
        "spr K=5 no batchnorm": RainbowConfig(objective=SPRConfig(transition_norm="none")),
        "spr K=5 no augmentation": None,
    }
    base = RainbowConfig(objective=SPRConfig())
    if hasattr(base, "augment"):
        variants["spr K=5 no augmentation"] = dataclasses.replace(base, augment=False)
    for name, cfg in variants.items():
        if cfg is None or (args.variants and name not in args.variants):
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
        if num == 1:
            continue
        rep = jax.jit(_filled_replay, static_argnums=(0, 1, 3))(spec, 50_000, key, num)
        agent = RainbowAgent(RainbowConfig(objective=SPRConfig()), spec)
        for mode in ("vmap",):
            timed(f"spr K=5 x{num} seeds {mode}: fused sample+update (2/call)",
                  update_call(SeedStack(agent, num, update_mode=mode), rep, key, 2))


if __name__ == "__main__":
    main()
