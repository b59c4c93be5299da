"""GPU check (alone on the GPU) of the DrQ-v2 update's numeric precision options:
float32 convs/matmuls as XLA runs them by default (TF32 on H100/H200), full float32 everywhere
(`jax.default_matmul_precision("highest")`, what PyTorch does for its dense layers), and the
bfloat16 conv encoder (`agent.encoder_dtype=bfloat16`).

    python results/scripts/bench_drqv2_precision.py
"""
import dataclasses
import sys

import jax

sys.path.insert(0, ".")
from experiments.bench import _filled_replay, time_call, update_call  # noqa: E402
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config  # noqa: E402
from rl.core.types import ActionSpec, EnvSpec  # noqa: E402


def timed(name, agent, replay, key, precision=None):
    with jax.default_matmul_precision(precision):   # applies when the update is traced
        first, seconds = time_call(update_call(agent, replay, key), 5, 20)
    print(f"| {name} | {1e3 * seconds:.2f} | {first:.1f} |", flush=True)


print(jax.devices()[0].device_kind, jax.__version__)
print("| DrQ-v2 update (sample + update, 1 per call) | ms per call | first call s |\n|---|---|---|")
key = jax.random.PRNGKey(0)
spec = EnvSpec("bench", (84, 84, 3), ActionSpec.box(6), action_repeat=2)
replay = jax.jit(_filled_replay, static_argnums=(0, 1))(spec, 6_000, key)
for batch in (256, 1024):
    cfg = DrQV2Config(batch_size=batch)
    timed(f"batch {batch}, default (TF32)", DrQV2Agent(cfg, spec), replay, key)
    timed(f"batch {batch}, float32 everywhere", DrQV2Agent(cfg, spec), replay, key, "highest")
    bf16 = DrQV2Agent(dataclasses.replace(cfg, encoder_dtype="bfloat16"), spec)
    timed(f"batch {batch}, bfloat16 encoder", bf16, replay, key)
