"""Preemption, crash-safe checkpoints, divergence and env faults (issue 32), on the toy task."""
import functools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from hydra import compose, initialize_config_dir

from experiments import config as config_lib
from experiments.train import train
from rl.checkpoint import Checkpointer, CorruptCheckpointError
from rl.divergence import NonFiniteError
from rl.envs import VectorEnv, make
from rl.logging import read_metrics
from rl.preemption import StopSignals

ROOT = pathlib.Path(__file__).parents[1]
config_lib.register()
# tests/test_loop.py's tiny DrQ-v2: logs every 10 frames, checkpoints every 30, 120 frames
TINY = ["env=toy/reach", "loop.warmup_frames=20", "loop.log_every_frames=10",
        "loop.eval_every_frames=40", "loop.eval_episodes=1", "loop.video_every_evals=0",
        "loop.checkpoint_every_frames=30", "loop.progress=false", "logger.wandb_mode=disabled",
        "agent=drqv2", "agent.hidden_dim=16", "agent.feature_dim=8", "agent.encoder_channels=4",
        "agent.encoder_layers=2", "agent.batch_size=8", "agent.num_expl_steps=10",
        "loop.frames=120"]


def _cfg(run_dir, *overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, *overrides])
    cfg.run_dir = str(run_dir)
    return cfg


def _comparable(rows):
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in rows]


def _steps(run_dir):
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def _tree(scale=1.0):
    return {"w": jnp.arange(4, dtype=jnp.float32) * scale, "n": jnp.asarray(3, jnp.int32)}


# ---------------------------------------------------------------------- preemption
def test_sigterm_mid_run_then_resume_auto_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    """SIGTERM at agent step 44 (between log rows and checkpoints): the iteration finishes, a
    checkpoint of step 45 is written and train returns; resume=auto continues to the same rows
    as a run never stopped. A copy whose step-45 checkpoint is corrupt falls back to step 30
    (with a warning naming it) and ends the same too."""
    from rl.loop import Trainer

    straight = tmp_path / "straight"
    train(_cfg(straight))

    run = tmp_path / "run"
    add, handler = Trainer._add, signal.getsignal(signal.SIGTERM)

    def add_then_signal(self, ts, action):
        if self.loop.step == 44 and not self.preempted:
            os.kill(os.getpid(), signal.SIGTERM)   # handled: the loop goes on to step 45
        add(self, ts, action)

    monkeypatch.setattr(Trainer, "_add", add_then_signal)
    final = train(_cfg(run, "resume=auto"))          # nothing there yet: a fresh start
    monkeypatch.setattr(Trainer, "_add", add)
    assert final["preempted"] == 1.0 and not (run / "final.json").exists()
    assert json.loads((run / "preempted.json").read_text()) == {
        "signal": "SIGTERM", "step": 45, "frames": 45}
    assert _steps(run) == [30, 45]
    assert signal.getsignal(signal.SIGTERM) is handler   # handlers given back

    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    for path in (broken / "checkpoints" / "45" / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"")                    # truncated files
    config = broken / "config.yaml"                   # the copy's own run dir
    config.write_text(config.read_text().replace(str(run), str(broken)))

    train(_cfg(run, "resume=auto"))
    assert (run / "final.json").exists() and not (run / "preempted.json").exists()
    assert _comparable(read_metrics(run)) == _comparable(read_metrics(straight))

    train(_cfg(broken, "resume=auto"))
    out = (broken / "train.log").read_text()          # the console output, also in train.log
    assert f"warning: checkpoint {broken / 'checkpoints' / '45'} " in out, out
    assert "resumed from step 30" in out
    assert (broken / "checkpoints" / "45.corrupt").exists()
    assert _comparable(read_metrics(broken)) == _comparable(read_metrics(straight))


def test_resume_auto_resolves_a_requeued_command_line(tmp_path):
    """A requeued job repeats its command line (config groups included) with resume=auto: a
    fresh start where there is no checkpoint, else the saved config, the overrides not applied
    again."""
    overrides = [*TINY, "resume=auto"]
    fresh = config_lib.resolve(_cfg(tmp_path, "resume=auto"), overrides)
    assert fresh.resume is None and fresh.run_dir == str(tmp_path)
    fresh.save(tmp_path / "config.yaml")
    (tmp_path / "checkpoints" / "7.orbax-checkpoint-tmp-1").mkdir(parents=True)  # unfinished
    assert config_lib.resolve(_cfg(tmp_path, "resume=auto"), overrides).resume is None
    (tmp_path / "checkpoints" / "7").mkdir()
    resumed = config_lib.resolve(_cfg(tmp_path, "resume=auto"), overrides)
    assert resumed.resume == str(tmp_path) and resumed.fingerprint == fresh.fingerprint


def test_a_second_signal_aborts_and_chained_handlers_are_forwarded():
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda s, f: calls.append(s))   # e.g. submitit's
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with StopSignals(print_fn=lambda m: None) as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert stop.requested and stop.name == "SIGUSR2" and not calls
            with pytest.raises(KeyboardInterrupt, match="second stop signal"):
                os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is handler
        stop.forward()                                # after the checkpoint: requeue now
        assert calls == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


# ---------------------------------------------------------------------- checkpoints
def test_kill_9_during_a_checkpoint_write_leaves_the_previous_one(tmp_path):
    """A process saving large checkpoints is SIGKILLed as soon as a step's temporary directory
    appears (mid-write); the directory then restores its latest finished step."""
    directory = tmp_path / "ck"
    script = textwrap.dedent(f"""
        import jax.numpy as jnp
        from rl.checkpoint import Checkpointer
        ck = Checkpointer({str(directory)!r}, keep=2)
        for step in range(1, 1000):
            ck.save(step, {{"w": jnp.full((16, 1024, 1024), float(step))}}, {{"fingerprint": "x"}})
            print(step, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"})
    assert proc.stdout.readline().strip() == b"1"     # one finished checkpoint
    deadline = time.time() + 120
    while time.time() < deadline:
        if any(".orbax-checkpoint-tmp" in p.name for p in directory.iterdir()):
            proc.kill()                                   # SIGKILL mid-write
            break
        time.sleep(0.001)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ck = Checkpointer(directory, keep=2)
    step = ck.latest_step()
    tree, meta = ck.restore({"w": jnp.zeros((16, 1024, 1024))})
    assert meta["fingerprint"] == "x" and float(tree["w"][0, 0, 0]) == step
    assert not any(".orbax-checkpoint-tmp" in p.name for p in directory.iterdir())  # cleaned
    ck.save(step + 1, {"w": jnp.ones((16, 1024, 1024))}, {"fingerprint": "x"})
    ck.close()


def test_corrupt_checkpoints_fall_back_step_by_step_with_a_warning(tmp_path):
    ck = Checkpointer(tmp_path / "ck", keep=3)
    for step in (10, 20, 30):
        ck.save(step, _tree(step), {"fingerprint": "abc"})
    shutil.rmtree(tmp_path / "ck" / "30" / "state")                  # files missing
    (tmp_path / "ck" / "20" / "meta" / "metadata").write_text("{trunc")  # a truncated file
    warnings = []
    tree, _ = ck.restore(_tree(), fingerprint="abc", warn=warnings.append)
    np.testing.assert_array_equal(tree["w"], np.arange(4) * 10.0)
    assert len(warnings) == 2 and str(tmp_path / "ck" / "30") in warnings[0]
    assert str(tmp_path / "ck" / "20") in warnings[1]
    assert ck.latest_step() == 10 and (tmp_path / "ck" / "30.corrupt").exists()
    ck.save(20, _tree(2.0), {"fingerprint": "abc"})   # the step can be written anew
    assert ck.all_steps() == [10, 20]
    # every checkpoint failing alike (another config's shapes) deletes nothing
    with pytest.raises(CorruptCheckpointError):
        ck.restore({"w": jnp.zeros(7), "n": jnp.asarray(0, jnp.int32)}, warn=lambda m: None)
    assert ck.all_steps() == [10, 20]
    ck.close()


# ---------------------------------------------------------------------- divergence, env faults
def _poison_updates_from(monkeypatch, step_from: int):
    """DrQ-v2 updates at agent steps >= ``step_from`` return NaN params and critic loss."""
    from rl.agents.drqv2.agent import DrQV2Agent

    update = DrQV2Agent.update

    def poisoned(self, state, batch, key, step):
        new, metrics = update(self, state, batch, key, step)
        bad = jnp.asarray(step) >= step_from
        nan = lambda x: jnp.where(bad, jnp.nan, x) if jnp.issubdtype(x.dtype, jnp.floating) else x
        new = new.replace(nets=jax.tree.map(nan, new.nets))
        return new, {**metrics, "critic_loss": nan(metrics["critic_loss"])}

    monkeypatch.setattr(DrQV2Agent, "update", poisoned)


def test_a_nonfinite_update_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                             monkeypatch):
    _poison_updates_from(monkeypatch, 35)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"agent step 3[5-9].*critic_loss") as info:
        train(_cfg(run))
    report = json.loads((run / "diverged.json").read_text())
    assert report["nonfinite"] == ["critic_loss"] and report == info.value.report
    assert _steps(run) == [30]                       # the non-finite state was never written
    state = ocp.PyTreeCheckpointer().restore(run / "checkpoints" / "30" / "state")
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state)
               if np.issubdtype(np.asarray(x).dtype, np.floating))


def test_skip_discards_nonfinite_updates_and_env_faults_end_episodes(tmp_path, monkeypatch):
    """on_nonfinite=skip: every update from step 60 is discarded (counted) and the run ends with
    finite params; meanwhile one env step raises: the episode ends, the env is rebuilt, the run
    goes on and logs env/faults."""
    from rl.envs.toy import ToyReachEnv

    _poison_updates_from(monkeypatch, 60)
    step, calls = ToyReachEnv.step, []

    def flaky(self, action):
        calls.append(1)
        if len(calls) == 80:   # the eval at frame 0 plays 50 steps: train step 30
            raise FloatingPointError("simulated physics error")
        return step(self, action)

    monkeypatch.setattr(ToyReachEnv, "step", flaky)
    run = tmp_path / "run"
    final = train(_cfg(run, "loop.on_nonfinite=skip"))
    rows = [r for r in read_metrics(run) if "progress/updates" in r]
    assert np.isfinite(final["return"]) and rows[-1]["step"] == 120
    at_60 = next(r for r in rows if r["step"] == 60)   # every update after it was poisoned
    skipped = rows[-1]["progress/nonfinite_updates"]
    assert skipped == rows[-1]["progress/updates"] - at_60["progress/updates"] > 0
    assert at_60["progress/nonfinite_updates"] == 0
    assert rows[-1]["env/faults"] == 1 and any(r["env/faults"] == 0 for r in rows)
    state = ocp.PyTreeCheckpointer().restore(run / "checkpoints" / "120" / "state")
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state)
               if np.issubdtype(np.asarray(x).dtype, np.floating))


def test_a_killed_env_worker_is_restarted_and_its_episode_ends():
    make_fn = functools.partial(make, "toy/reach", episode_frames=4)
    env = VectorEnv(make_fn, num_envs=2, seed=3, parallel=True)
    env.reset()
    actions = np.zeros((2, *env.spec.action.shape), env.spec.action.dtype)
    env.step(actions)
    old = env._pool.procs[0]
    os.kill(old.pid, signal.SIGKILL)
    old.join(5)
    ts = env.step(actions)                            # env 0's step is lost with its worker
    assert ts.is_last.tolist() == [True, False] and not ts.is_terminal[0]
    assert ts.info["episode_length"][0] == 1 and env.faults == 1 and env.pop_faults() == 1
    assert env._pool.procs[0].is_alive() and env._pool.procs[0] is not old
    ts = env.step(actions)                            # a new episode with the next seed
    assert ts.is_first.tolist() == [True, False] and env.episode_index.tolist() == [1, 0]
    for _ in range(6):
        ts = env.step(actions)
    assert env.pop_faults() == 0
    procs = list(env._pool.procs)
    env.close()
    assert not any(p.is_alive() for p in procs)
