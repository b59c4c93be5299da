"""GPU check of two session-8 changes (alone on the GPU):
1. SeedStack updates: S=3 DrQ-v2 copies in turn (lax.map, current) vs vmapped vs one copy.
2. Dreamer decoder: SubpixelConvTranspose (current) vs flax ConvTranspose, and the whole update.

    python results/scripts/bench_seedstack_decoder.py
"""
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments.bench import _filled_replay, time_call, update_call  # noqa: E402
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config  # noqa: E402
from rl.agents.imagination import ImaginationAgent  # noqa: E402
from rl.agents.imagination_config import ImaginationConfig  # noqa: E402
from rl.agents.seed_stack import SeedStack  # noqa: E402
from rl.core.types import ActionSpec, EnvSpec  # noqa: E402
from world_models import conv  # noqa: E402


def timed(name, fn, repeats=5, inner=10):
    first, seconds = time_call(fn, repeats, inner)
    print(f"| {name} | {1e3 * seconds:.2f} | {first:.1f} |", flush=True)


print(jax.devices()[0].device_kind, jax.__version__)
print("| what | ms per call | first call s |\n|---|---|---|")
key = jax.random.PRNGKey(0)
spec = EnvSpec("bench", (84, 84, 3), ActionSpec.box(6), action_repeat=2)
agent = DrQV2Agent(DrQV2Config(), spec)
replay1 = jax.jit(_filled_replay, static_argnums=(0, 1))(spec, 6_000, key)
timed("DrQ-v2 update, 1 copy, batch 256", update_call(agent, replay1, key))
replay3 = jax.tree.map(lambda x: jnp.concatenate([x] * 3, 0) if x.ndim and x.shape[0] == 1 else x,
                       replay1)
stack = SeedStack(agent, 3)
timed("DrQ-v2 update, 3 copies in turn (SeedStack, lax.map)", update_call(stack, replay3, key))


class VmappedStack(SeedStack):
    def update(self, state, batch, key, step):
        return jax.vmap(self.agent.update, in_axes=(0, 0, 0, None))(
            state, batch, jax.random.split(key, self.num_seeds), step)


timed("DrQ-v2 update, 3 copies vmapped (old)", update_call(VmappedStack(agent, 3), replay3, key))

spec64 = EnvSpec("bench", (64, 64, 3), ActionSpec.box(6), action_repeat=2)
dreamer = ImaginationAgent(ImaginationConfig(), spec64)
replay64 = jax.jit(_filled_replay, static_argnums=(0, 1))(spec64, 3_000, key)
timed("Dreamer-v1 update (subpixel decoder), batch 50x50", update_call(dreamer, replay64, key),
      inner=5)
feat = jax.random.normal(key, (2500, 230))
for name, layer in (("subpixel", conv.SubpixelConvTranspose), ("flax ConvTranspose", None)):
    if layer is None:
        conv.SubpixelConvTranspose = lambda f, k, name=None: nn.ConvTranspose(
            f, (k, k), strides=(2, 2), padding="VALID", name=name)
    dec = conv.ConvDecoder((64, 64, 3))
    params = dec.init(key, feat[:1])
    fwd = jax.jit(dec.apply)
    timed(f"decoder forward, 2500 frames, {name}", lambda: fwd(params, feat))
    grad = jax.jit(jax.grad(lambda p: jnp.mean(dec.apply(p, feat) ** 2)))
    timed(f"decoder forward+backward, 2500 frames, {name}", lambda: grad(params))
timed("Dreamer-v1 update (flax ConvTranspose decoder, old)",
      update_call(ImaginationAgent(ImaginationConfig(), spec64), replay64, key), inner=5)
