"""Where does the Dreamer-v1 update's time go? (GPU profiling)

    python results/scripts/profile_update.py [--quick]

Times (median wall clock, device synchronised) of: the whole update, its model step, its
behaviour step, the forward passes alone, scan-unroll variants, K updates as K dispatches, bf16.
(Session 8's run of it also had vmapped-seed timings that the 380 s limit cut before they ran;
``bench_seedstack_decoder.py`` times seed stacking as the loop does it.)
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments.bench import _filled_replay, median_time  # noqa: E402
from rl.agents.imagination import ImaginationAgent, _flatten_batch_time  # noqa: E402
from rl.agents.imagination_config import ImaginationConfig  # noqa: E402
from rl.core.types import ActionSpec, EnvSpec  # noqa: E402

ROWS = []


def timed(name, fn, repeats=5, inner=5):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t0
    ms = 1e3 * median_time(fn, repeats, inner)
    ROWS.append((name, ms, compile_s))
    print(f"{name:70s} {ms:9.2f} ms   (first call {compile_s:.1f}s)", flush=True)
    return ms


def imagination_profile(quick: bool):
    spec = EnvSpec("bench", (64, 64, 3), ActionSpec.box(6), action_repeat=2)
    key = jax.random.PRNGKey(0)
    replay = jax.jit(_filled_replay, static_argnums=(0, 1))(spec, 3_000, key)

    def agent_with(**kw):
        return ImaginationAgent(dataclasses.replace(ImaginationConfig(), **kw), spec)

    agent = agent_with()
    state0 = agent.init(key)
    batch = jax.jit(agent.sample)(replay, key)
    step = jnp.asarray(1000)

    def full_update(agent, name):
        upd = jax.jit(lambda s, r, k: agent.update(s, agent.sample(r, k), k, step), donate_argnums=0)
        holder = {"s": jax.tree.map(jnp.copy, state0)}

        def call():
            holder["s"], m = upd(holder["s"], replay, key)
            return m
        return timed(name, call)

    full_update(agent, "dreamer update (K=1, unroll 1/1)")
    # K updates as K dispatches of the single-update jit (no scan)
    upd1 = jax.jit(lambda s, r, k: agent.update(s, agent.sample(r, k), k, step), donate_argnums=0)
    holder = {"s": jax.tree.map(jnp.copy, state0)}

    def ten_dispatches():
        for k in jax.random.split(key, 10):
            holder["s"], m = upd1(holder["s"], replay, k)
        return m
    ms = timed("dreamer 10 updates as 10 dispatches (total)", ten_dispatches, repeats=3, inner=1)
    print(f"   -> {ms / 10:.2f} ms per update")

    model_step = jax.jit(lambda s, b, k: agent._model_step(s, b, k)[2]["wm/loss"])
    timed("  model step (value_and_grad + adam)", lambda: model_step(state0, batch, key))
    model_fwd = jax.jit(lambda s, b, k: agent.model_loss((s.wm_params, s.objective_params),
                                                          s.objective_state, b, k)[0])
    timed("  model loss forward only", lambda: model_fwd(state0, batch, key))
    embed = jax.jit(lambda s, b: agent.wm.embed(s.wm_params, b.obs))
    timed("    encoder forward [2500 frames]", lambda: embed(state0, batch))
    posts = jax.jit(lambda s, b, k: agent.model_loss((s.wm_params, s.objective_params),
                                                      s.objective_state, b, k)[1][0])(state0, batch, key)
    feats = jax.jit(agent.wm.features)(posts)
    decode = jax.jit(lambda s, f: agent.wm.decode(s.wm_params, f))
    timed("    decoder forward [2500 frames]", lambda: decode(state0, feats))
    start = jax.jit(lambda p: jax.lax.stop_gradient(_flatten_batch_time(p)))(posts)
    behaviour = jax.jit(lambda s, st, k: agent._behaviour_step(s, s.wm_params, st, k)[1]["actor/loss"])
    timed("  behaviour step (actor+critic grads + adam)", lambda: behaviour(state0, start, key))
    actor_fwd = jax.jit(lambda s, st, k: agent.actor_loss(s.actor_params, s.wm_params, s, st, k)[0])
    timed("  actor loss forward only (imagine 15 x 2500)", lambda: actor_fwd(state0, start, key))
    for obs_u, img_u in (((10, 15),) if quick else ((5, 1), (1, 5), (10, 15), (50, 15))):
        full_update(agent_with(observe_unroll=obs_u, imagine_unroll=img_u),
                    f"dreamer update unroll observe {obs_u} / imagine {img_u}")
    with jax.default_matmul_precision("bfloat16"):
        full_update(agent_with(), "dreamer update, matmul precision bf16")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(jax.devices()[0].device_kind, jax.__version__, flush=True)
    imagination_profile(args.quick)
    print("\n| what | ms | first call s |\n|---|---|---|")
    for name, ms, c in ROWS:
        print(f"| {name.strip()} | {ms:.2f} | {c:.1f} |")
