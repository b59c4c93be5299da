"""GPU check (session 16): the patches convolution (``PatchConv``) in DrQ-v2's and Dreamer's
encoders, for one copy and for 3 seed copies updated in turn (``lax.map``, the loop's default for
these agents) or vmapped. Fused sample + update per call, as the loop runs it.

    python results/scripts/bench_encoder_conv.py [--agents drqv2 dreamer]
    python results/scripts/bench_encoder_conv.py --agents dreamer --convs xla --modes one
"""
import argparse
import dataclasses
import sys

import jax

sys.path.insert(0, ".")
from experiments.bench import _filled_replay, time_call, update_call  # noqa: E402
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config  # noqa: E402
from rl.agents.imagination import ImaginationAgent  # noqa: E402
from rl.agents.imagination_config import ImaginationConfig  # noqa: E402
from rl.agents.seed_stack import SeedStack  # noqa: E402
from rl.core.types import ActionSpec, EnvSpec  # noqa: E402


def make_agent(name: str, conv: str, spec: EnvSpec):
    if name == "drqv2":
        return DrQV2Agent(DrQV2Config(encoder_conv=conv), spec)
    cfg = ImaginationConfig()
    cfg = dataclasses.replace(cfg, world_model=dataclasses.replace(cfg.world_model,
                                                                   encoder_conv=conv))
    return ImaginationAgent(cfg, spec)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", nargs="+", default=["drqv2", "dreamer"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--convs", nargs="+", default=["xla", "patches"],
                        choices=["xla", "patches"])
    parser.add_argument("--modes", nargs="+", default=["one", "map", "vmap"],
                        choices=["one", "map", "vmap"], help="one copy, or --seeds copies")
    args = parser.parse_args()
    print(jax.devices()[0].device_kind, jax.__version__)
    print("| agent | conv | copies | mode | ms per call | first call s |\n|---|---|---|---|---|---|",
          flush=True)
    key = jax.random.PRNGKey(0)
    for name in args.agents:
        size, capacity, inner = (84, 6_000, 10) if name == "drqv2" else (64, 3_000, 5)
        spec = EnvSpec("bench", (size, size, 3), ActionSpec.box(6), action_repeat=2)
        fill = jax.jit(_filled_replay, static_argnums=(0, 1, 3))
        replay1, replay_s = fill(spec, capacity, key, 1), fill(spec, capacity, key, args.seeds)
        for conv in args.convs:
            agent = make_agent(name, conv, spec)
            runs = [("1", "-", agent, replay1)] if "one" in args.modes else []
            runs += [(str(args.seeds), mode, SeedStack(agent, args.seeds, mode), replay_s)
                     for mode in ("map", "vmap") if mode in args.modes]
            for copies, mode, a, replay in runs:
                first, seconds = time_call(update_call(a, replay, key), 5, inner)
                print(f"| {name} | {conv} | {copies} | {mode} | {1e3 * seconds:.2f} | "
                      f"{first:.1f} |", flush=True)


if __name__ == "__main__":
    main()
