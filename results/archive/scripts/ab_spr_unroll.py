"""A/B of SPR's K-step transition rollout: ``lax.scan`` unrolled (K) or rolled (1) (GPU).

    python results/scripts/ab_spr_unroll.py

One Rainbow + SPR update (K = 5, batch 32) on a fixed batch, state donated, median wall clock.
Session 13 (H200, before ``SPR.loss`` unrolled by default): unroll 5 3.69 ms, unroll 1 4.03 ms.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
import representations.spr as spr  # noqa: E402
from experiments.bench import _filled_replay  # noqa: E402
from results.scripts.profile_spr import timed  # noqa: E402
from rl.agents.rainbow import RainbowAgent, RainbowConfig  # noqa: E402
from rl.core.types import ActionSpec, EnvSpec  # noqa: E402


def main() -> None:
    spec = EnvSpec("bench", (84, 84, 1), ActionSpec.categorical(6), action_repeat=4)
    key = jax.random.PRNGKey(0)
    replay = jax.jit(_filled_replay, static_argnums=(0, 1, 3))(spec, 50_000, key, 1)
    step = jnp.asarray(10_000)
    for unroll in (5, 1):
        def loss(self, params, latent, actions, valid, project, target, unroll=unroll):
            return spr.spr_objective_loss(params, self.transition, latent, actions, valid,
                                          project, target, self.cfg.normalize_eps, unroll=unroll)
        spr.SPR.loss = loss
        agent = RainbowAgent(RainbowConfig(objective=spr.SPRConfig()), spec)
        batch = jax.jit(agent.sample)(replay, key)
        update = jax.jit(agent.update_with_priorities, donate_argnums=0)
        holder = {"state": agent.init(key)}

        def call():
            holder["state"], metrics, _ = update(holder["state"], batch, key, step)
            return metrics
        timed(f"spr K=5, rollout unroll {unroll}, fixed batch, donated", call)


if __name__ == "__main__":
    main()
