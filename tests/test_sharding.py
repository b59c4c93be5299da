"""Several devices (``rl/sharding.py``): seed copies and data-parallel batches on 2 CPU devices.

The test process has already started JAX with one CPU device (tests/conftest.py), so the
two-device checks run once in a subprocess started with
``--xla_force_host_platform_device_count=2`` (``python tests/test_sharding.py``), which prints
one JSON line of results; each test reads its entry.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


# ---- run in the 2-device subprocess -----------------------------------------------------------
def _tagged_replay(spec, total_envs: int, steps: int = 10, groups: int = 1):
    """A replay whose env e's pixels and rewards are e (distinct data per copy)."""
    import jax
    import numpy as np

    from rl import replay as replay_lib

    replay = replay_lib.init(spec, capacity=total_envs * 16, num_envs=total_envs,
                             priority_groups=groups)
    add = jax.jit(replay_lib.add)
    env_id = np.arange(total_envs)
    obs = np.broadcast_to(env_id[:, None, None, None] * 20,
                          (total_envs, *spec.obs_shape)).astype(np.uint8)
    for t in range(steps):
        replay = add(replay, obs, np.zeros((total_envs, *spec.action.shape), np.float32),
                     env_id.astype(np.float32), np.ones(total_envs, np.float32),
                     np.full(total_envs, t == 0), np.zeros(total_envs, bool),
                     np.zeros(total_envs, bool))
    return replay


def _max_diff(a, b) -> float:
    import jax
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               if np.size(x) else 0.0 for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _train(agent, parallel, replay, init_state, updates: int = 3):
    """``updates`` sample+update steps (``learn_step``, one jit), the agent wrapped and its
    state placed as the Trainer does; returns (agent, state, replay, the update's HLO)."""
    import jax
    import jax.numpy as jnp

    from rl.loop import TrainerState
    from rl.updates import learn_step

    agent = parallel.wrap(agent)
    state = parallel.place(TrainerState(agent=init_state, replay=replay,
                                        key=jax.random.PRNGKey(1), carry=None))
    update = jax.jit(lambda s, r, k, t: learn_step(agent, s, r, k, t)[:2]).lower(
        state.agent, state.replay, jax.random.PRNGKey(2), jnp.int32(0)).compile()
    agent_state, replay = state.agent, state.replay
    for i in range(updates):
        agent_state, replay = update(agent_state, replay, jax.random.PRNGKey(10 + i),
                                     jnp.int32(100 + i))
    return agent, agent_state, replay, update.as_text()


def _collectives(hlo: str) -> list[str]:
    return [name for name in COLLECTIVES if name in hlo]


def _check_seeds(results: dict, mode: str) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
    from rl.agents.seed_stack import SeedStack
    from rl.core.types import ActionSpec, EnvSpec
    from rl.sharding import Parallel, make_parallel

    spec = EnvSpec("tiny", (16, 16, 3), ActionSpec.box(2))
    stack = SeedStack(DrQV2Agent(DrQV2Config.tiny(batch_size=4, encoder_channels=4), spec), 2,
                      mode)
    replay, init = _tagged_replay(spec, 4), stack.init(jax.random.PRNGKey(0))
    _, plain, _, _ = _train(stack, Parallel(), replay, init)
    sharded_agent, sharded, replay_out, hlo = _train(stack, make_parallel(2, "seeds", 2),
                                                     replay, init)
    obs = jnp.asarray(np.asarray(replay.obs[:, 3]))
    act = lambda agent, state: jax.jit(agent.act, static_argnames="explore")(  # noqa: E731
        state, agent.initial_carry(4), obs, jnp.ones(4, bool), jax.random.PRNGKey(5),
        jnp.int32(0), explore=True)[0]
    leaf = jax.tree.leaves(sharded)[0]
    results[f"seeds_{mode}"] = {
        "state_diff": _max_diff(plain, sharded),
        "act_diff": _max_diff(act(stack, plain), act(sharded_agent, sharded)),
        "per_device_copies": [s.data.shape[0] for s in leaf.addressable_shards],
        "replay_rows": [s.data.shape[0] for s in replay_out.obs.addressable_shards],
        "collectives": _collectives(hlo)}


def _check_data(results: dict, name: str) -> None:
    import dataclasses

    import jax

    from rl.core.types import ActionSpec, EnvSpec
    from rl.sharding import Parallel, make_parallel

    spec = EnvSpec("tiny", (16, 16, 3) if name == "drqv2" else (32, 32, 3), ActionSpec.box(2))
    if name == "drqv2":
        from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
        agent = DrQV2Agent(DrQV2Config.tiny(batch_size=8, encoder_channels=4), spec)
    else:
        from rl.agents.imagination import ImaginationAgent
        from rl.agents.imagination.config import preset
        agent = ImaginationAgent(dataclasses.replace(preset("debug"), batch_size=4, length=4,
                                                     horizon=2), spec)
    replay, init = _tagged_replay(spec, 2), jax.jit(agent.init)(jax.random.PRNGKey(0))
    _, plain, _, _ = _train(agent, Parallel(), replay, init, updates=2)
    _, split, _, hlo = _train(agent, make_parallel(2, "data", 1), replay, init, updates=2)
    leaf = jax.tree.leaves(split)[0]
    scale = max(float(abs(x).max()) for x in jax.tree.leaves(plain) if x.size)
    results[f"data_{name}"] = {"state_diff": _max_diff(plain, split), "scale": scale,
                               "replicated": leaf.sharding.is_fully_replicated,
                               "devices": len(leaf.sharding.device_set),
                               "collectives": _collectives(hlo)}


def _check_loop(results: dict, run_dir: str) -> None:
    """A whole tiny run with ``devices=2 num_seeds=2`` (acting, replay writes, evaluation,
    checkpoint), then resumed: the state, carry and replay stay split over the devices."""
    from hydra import compose, initialize_config_dir

    import rl.loop
    from experiments import config as config_lib
    from experiments.train import train

    sys.path.insert(0, str(ROOT / "tests"))
    from test_loop import TINY

    seen = {}
    run = rl.loop.Trainer.run

    def run_and_record(self):
        out = run(self)
        leaves = {"agent": self.state.agent, "carry": self.state.carry,
                  "replay": self.state.replay.obs}
        seen.update({k: str(getattr(jax.tree.leaves(v)[0].sharding, "spec", None))
                     for k, v in leaves.items()})
        return out

    import jax
    rl.loop.Trainer.run = run_and_record
    config_lib.register()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, "num_seeds=2", "devices=auto", "loop.frames=30",
                                           "loop.eval_at_start=false", "loop.eval_every_frames=30"])
    cfg.run_dir = run_dir
    train(cfg)
    results["loop"] = dict(seen)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, f"resume={run_dir}"])
    final = train(cfg, overrides=["loop.frames=40"])
    results["resumed"] = {**seen, "return": final["return"]}


def _check_one_device(results: dict) -> None:
    from rl.sharding import Parallel, make_parallel

    plan = make_parallel(1, "auto", 2)
    agent, state = object(), object()
    results["one_device"] = {"plan": plan == Parallel(), "wrap": plan.wrap(agent) is agent,
                             "place": plan.place(state) is state}


def _main() -> None:
    import jax

    assert len(jax.devices()) == 2, jax.devices()
    results: dict = {}
    _check_one_device(results)
    import time
    # seeds in update_mode=map only: vmap mode runs the same shard_map (compile time)
    for check, arg in [(_check_seeds, "map"), (_check_data, "drqv2"),
                       (_check_data, "imagination"), (_check_loop, sys.argv[1])]:
        start = time.time()
        check(results, arg)
        print(f"{check.__name__}({arg}): {time.time() - start:.1f} s", file=sys.stderr)
    print("RESULTS " + json.dumps(results))


# ---- the tests (one device in this process) ----------------------------------------------------
@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "")
                         + " --xla_force_host_platform_device_count=2").strip()}
    run_dir = str(tmp_path_factory.mktemp("two_devices"))
    done = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), run_dir], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1][len("RESULTS "):])


def test_sharded_seed_copies_equal_unsharded_ones(two_devices):
    got = two_devices["seeds_map"]
    assert got["state_diff"] < 1e-5, got
    assert got["act_diff"] < 1e-5, got
    assert got["per_device_copies"] == [1, 1]     # one copy's state per device
    assert got["replay_rows"] == [2, 2]           # and its own envs' replay rows
    assert got["collectives"] == [], got          # sample and update never leave the device


@pytest.mark.parametrize("name", ["drqv2", "imagination"])
def test_data_parallel_update_equals_one_device(two_devices, name):
    got = two_devices[f"data_{name}"]
    assert got["state_diff"] < 1e-4 * max(1.0, got["scale"]), got
    assert got["replicated"] and got["devices"] == 2, got
    assert "all-reduce" in got["collectives"], got   # the gradients are summed over devices


def test_a_seed_parallel_run_and_its_resume_keep_the_state_split(two_devices):
    for run in ("loop", "resumed"):
        got = two_devices[run]
        assert got["agent"] == got["carry"] == got["replay"] == "P('seeds',)", got
    assert two_devices["resumed"]["return"] == two_devices["resumed"]["return"]   # not NaN


def test_one_device_leaves_the_run_as_it_was(two_devices):
    assert all(two_devices["one_device"].values()), two_devices["one_device"]
    from rl.sharding import Parallel, make_parallel

    plan = make_parallel("auto", "auto", 1)   # this process: one device
    assert plan == Parallel() and plan.wrap(len) is len and plan.place(3) == 3


def test_config_checks_and_distributed_only_under_slurm_tasks():
    from rl.sharding import check_config, initialize_distributed, make_parallel

    for bad in [("x", "auto", 1), (0, "auto", 1), (1, "model", 1), (2, "data", 2),
                (2, "seeds", 3), (2, "auto", 3)]:
        with pytest.raises(ValueError):
            check_config(*bad)
    check_config("auto", "auto", 3)
    with pytest.raises(ValueError, match="only 1 local"):
        make_parallel(2, "seeds", 2)
    assert not initialize_distributed({"SLURM_NTASKS": "1"})
    assert not initialize_distributed({})


if __name__ == "__main__":
    _main()
