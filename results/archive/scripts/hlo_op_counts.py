"""How many top-level ops (≈ kernel launches) one fused Rainbow / SPR call compiles to.

    python results/scripts/hlo_op_counts.py        # any backend; session 13 ran it on the CPU

Compiles the loop's fused sample + 2 updates (``rl.loop.make_update_fn``) for 1 and 3 vmapped
seeds and counts the non-trivial instructions of the entry computation and of the loop bodies
it calls (each counted once). Session 13, CPU backend, jax 0.10.2: Rainbow 2,104, SPR 2,667,
2,092 and 2,676 for 3 vmapped seeds (vmapping does not add ops).
"""
from __future__ import annotations

import collections
import re
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments.bench import _filled_replay  # noqa: E402
from representations.spr import SPRConfig  # noqa: E402
from rl.agents.rainbow import RainbowAgent, RainbowConfig  # noqa: E402
from rl.agents.seed_stack import SeedStack  # noqa: E402
from rl.core.types import ActionSpec, EnvSpec  # noqa: E402
from rl.loop import make_update_fn  # noqa: E402

TRIVIAL = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast"}


def count_ops(hlo: str) -> collections.Counter:
    comps, current = {}, None
    for line in hlo.split("\n"):
        head = re.match(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if head and not line.startswith(" "):
            current = "ENTRY" if head.group(1) else head.group(2)
            comps[current] = []
        elif current and line.startswith("  "):
            comps[current].append(line)

    def walk(name: str, out: collections.Counter) -> collections.Counter:
        for line in comps.get(name, []):
            op = re.match(r"\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*.*?\s([a-z][\w\-]*)\(", line)
            if not op or op.group(1) in TRIVIAL:
                continue
            out[op.group(1)] += 1
            if op.group(1) == "while":
                walk(re.search(r"body=%?([\w.\-]+)", line).group(1), out)
            if op.group(1) in ("conditional", "call"):
                for called in re.findall(r"(?:branch_computations=\{|to_apply=|calls=)%?([\w.\-]+)",
                                         line):
                    walk(called, out)
        return out
    return walk("ENTRY", collections.Counter())


def main() -> None:
    spec = EnvSpec("bench", (84, 84, 1), ActionSpec.categorical(6), action_repeat=4)
    key = jax.random.PRNGKey(0)
    for seeds in (1, 3):
        for name, objective in (("rainbow", None), ("spr", SPRConfig())):
            replay = jax.jit(_filled_replay, static_argnums=(0, 1, 3))(spec, 300, key, seeds)
            agent = RainbowAgent(RainbowConfig(objective=objective), spec)
            agent = agent if seeds == 1 else SeedStack(agent, seeds, update_mode="vmap")
            update = make_update_fn(agent, 2, fused_sampling=True)
            # make_update_fn wraps the jit; lower the one call it makes
            hlo = jax.jit(lambda s, r, k: update(s, r, k, jnp.asarray(10))[::2]).lower(
                agent.init(key), replay, key).compile().as_text()
            ops = count_ops(hlo)
            print(f"{name} x{seeds} seeds: {sum(ops.values())} top-level ops, "
                  f"{ops.most_common(6)}", flush=True)


if __name__ == "__main__":
    main()
