"""Where does the Dreamer-v1 update's time go, and what do vmapped seeds cost? (GPU profiling)

    python results/scripts/profile_update.py [--quick]

Times (median wall clock, device synchronised) of: the whole update, its model step, its
behaviour step, the forward passes alone, scan-unroll variants, K updates as K dispatches vs one
scan, and the update vmapped over S independent seeds (both agents).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from experiments.bench import _filled_replay  # noqa: E402
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config  # noqa: E402
from rl.agents.imagination import ImaginationAgent, _flatten_batch_time  # noqa: E402
from rl.agents.imagination_config import ImaginationConfig  # noqa: E402
from rl.envs.types import ActionSpec, EnvSpec  # noqa: E402

ROWS = []


def timed(name, fn, repeats=5, inner=5):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            out = fn()
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / inner)
    ms = 1e3 * statistics.median(times)
    ROWS.append((name, ms, compile_s))
    print(f"{name:70s} {ms:9.2f} ms   (first call {compile_s:.1f}s)", flush=True)
    return ms


def stack_replay(replay, seeds):
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,) + x.shape), replay)


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
    for seeds in (3,):
        keys = jax.random.split(key, seeds)
        st = jax.jit(jax.vmap(agent.init))(keys)
        rp = stack_replay(replay, seeds)
        vupd = jax.jit(jax.vmap(lambda s, r, k: agent.update(s, agent.sample(r, k), k, step)),
                       donate_argnums=0)
        h = {"s": st}

        def call():
            h["s"], m = vupd(h["s"], rp, keys)
            return m
        timed(f"dreamer update vmapped over {seeds} seeds", call)


def drqv2_profile():
    spec = EnvSpec("bench", (84, 84, 3), ActionSpec.box(6), action_repeat=2)
    key = jax.random.PRNGKey(0)
    replay = jax.jit(_filled_replay, static_argnums=(0, 1))(spec, 10_000, key)
    agent = DrQV2Agent(DrQV2Config(), spec)
    step = jnp.asarray(10_000)
    for seeds in (1, 3):
        keys = jax.random.split(key, seeds)
        st = jax.jit(jax.vmap(agent.init))(keys)
        rp = stack_replay(replay, seeds)
        vupd = jax.jit(jax.vmap(lambda s, r, k: agent.update(s, agent.sample(r, k), k, step)),
                       donate_argnums=0)
        h = {"s": st}

        def call():
            h["s"], m = vupd(h["s"], rp, keys)
            return m
        timed(f"drqv2 update vmapped over {seeds} seeds (batch 256 each)", call, inner=20)
    with jax.default_matmul_precision("bfloat16"):
        st = agent.init(key)
        upd = jax.jit(lambda s, r, k: agent.update(s, agent.sample(r, k), k, step), donate_argnums=0)
        h = {"s": st}

        def call():
            h["s"], m = upd(h["s"], replay, key)
            return m
        timed("drqv2 update, matmul precision bf16", call, inner=20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["drqv2", "imagination"], default=None)
    args = parser.parse_args()
    print(jax.devices()[0].device_kind, jax.__version__, flush=True)
    if args.only != "drqv2":
        imagination_profile(args.quick)
    if args.only != "imagination":
        drqv2_profile()
    print("\n| what | ms | first call s |\n|---|---|---|")
    for name, ms, c in ROWS:
        print(f"| {name.strip()} | {ms:.2f} | {c:.1f} |")
