"""The training loop end to end on the toy task: runs, checkpoints, and resumes exactly."""
import json
import pathlib

import pytest
from hydra import compose, initialize_config_dir

from experiments import config as config_lib
from experiments.train import train
from rl.logging import Logger, read_metrics

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()

LOOP = ["env=toy/reach", "loop.warmup_frames=20", "loop.log_every_frames=10",
        "loop.eval_every_frames=40", "loop.eval_episodes=1", "loop.video_every_evals=2",
        "loop.checkpoint_every_frames=30", "loop.progress=false", "logger.wandb_mode=disabled"]
TINY = [*LOOP, "agent=drqv2", "agent.hidden_dim=16", "agent.feature_dim=8",
        "agent.encoder_channels=4", "agent.encoder_layers=2", "agent.batch_size=8",
        "agent.num_expl_steps=10"]
TINY_IMAGINATION = [*LOOP, "agent=imagination", "world_model=debug", "env.size=32",
                    "agent.batch_size=2", "agent.length=6", "agent.horizon=3",
                    "agent.actor_critic.actor_units=8", "agent.actor_critic.critic_units=8",
                    "agent.actor_critic.actor_layers=1", "agent.actor_critic.critic_layers=1",
                    "loop.update_every_frames=10", "loop.updates_per_call=1"]
# Rainbow with PER (priorities written back into the replay) and SPR (aux params, windows)
TINY_RAINBOW_SPR = [*LOOP, "env=toy/reach_discrete", "agent=rainbow", "objective=spr",
                    "agent.objectives.spr.horizon=2", "agent.objectives.spr.transition_channels=8",
                    "agent.encoder_channels=[8,16]", "agent.encoder_kernels=[4,3]",
                    "agent.encoder_strides=[2,2]", "agent.hidden_dim=16", "agent.batch_size=8",
                    "agent.n_step=3", "agent.num_atoms=11", "agent.frame_stack=2",
                    "loop.updates_per_call=2", "loop.update_every=1"]
AGENTS = {"drqv2": TINY, "imagination": TINY_IMAGINATION, "rainbow_spr": TINY_RAINBOW_SPR}


def _cfg(run_dir, *overrides, agent="drqv2"):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*AGENTS[agent], *overrides])
    cfg.run_dir = str(run_dir)
    return cfg


def _comparable(rows):
    """Everything but wall-clock measurements."""
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in rows]


class Killed(Exception):
    pass


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_resume_reproduces_an_uninterrupted_run(tmp_path, monkeypatch, agent):
    straight = tmp_path / "straight"
    train(_cfg(straight, "loop.frames=120", agent=agent))

    interrupted = tmp_path / "interrupted"
    log = Logger.log

    def log_then_die(self, step, metrics):  # the process dies at frame 80; last checkpoint: 60
        if step >= 80:
            raise Killed
        log(self, step, metrics)

    monkeypatch.setattr(Logger, "log", log_then_die)
    with pytest.raises(Killed):
        train(_cfg(interrupted, "loop.frames=120", agent=agent))
    monkeypatch.setattr(Logger, "log", log)
    train(_cfg(interrupted, f"resume={interrupted}", agent=agent))

    a, b = read_metrics(straight), read_metrics(interrupted)
    assert sum("progress/updates" in row and row["progress/updates"] > 0 for row in a) > 3
    assert any(k.startswith("train/") and "loss" in k for row in a for k in row)
    assert a[-1]["step"] == 120
    assert _comparable(a) == _comparable(b)
    assert (straight / "videos").exists() and (straight / "final.json").exists()


def test_resume_refuses_a_changed_model(tmp_path):
    from rl.checkpoint import CheckpointError

    run = tmp_path / "run"
    train(_cfg(run, "loop.frames=45"))
    # the last, partial logging window (frames 41-45) is logged too
    train_rows = [row for row in read_metrics(run) if "progress/updates" in row
                  and not any(k.startswith("eval/") for k in row)]
    assert [row["step"] for row in train_rows][-2:] == [40, 45], train_rows
    with pytest.raises(CheckpointError, match="different model/replay config"):
        train(_cfg(run, f"resume={run}"), ["agent.hidden_dim=32"])


def test_resume_needs_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        train(_cfg(tmp_path / "x", f"resume={tmp_path / 'nothing'}"))


def test_resume_can_extend_the_frame_budget(tmp_path):
    run = tmp_path / "run"
    train(_cfg(run, "loop.frames=40"))
    train(_cfg(run, f"resume={run}"), ["loop.frames=80"])
    rows = read_metrics(run)
    assert rows[-1]["step"] == 80 and rows[-1]["progress/frames"] == 80
    # console output is also in train.log (both runs'), and the code's commit in source.json
    log = (run / "train.log").read_text()
    assert log.count("run dir:") == 2 and "resumed from step 40" in log and "[eval]" in log
    source = json.loads((run / "source.json").read_text())
    assert set(source) == {"commit", "dirty"} and (source["commit"] is None
                                                   or len(source["commit"]) == 40)


@pytest.mark.parametrize("num_envs", [1, 4])
def test_the_update_schedule_counts_frames_whatever_the_number_of_envs(tmp_path, num_envs):
    """``loop.update_every_frames=10`` after a 40-frame warm-up, 120 frames: one update at each
    of 50, 60, ..., 120 frames, whether one env steps per iteration or four (a step of four envs
    can cross a multiple of 10 without landing on it)."""
    run = tmp_path / "run"
    train(_cfg(run, "loop.frames=120", "loop.warmup_frames=40", f"env.num_envs={num_envs}",
               "loop.eval_every_frames=0", "loop.checkpoints=false", agent="imagination"))
    rows = [row for row in read_metrics(run) if "progress/updates" in row]
    assert rows[-1]["progress/frames"] == 120 and rows[-1]["progress/updates"] == 8
    # no update before the warm-up ends
    assert all(row["progress/updates"] == 0 for row in rows if row["progress/frames"] <= 40)


def test_vmapped_seeds_log_apart_and_resume_exactly(tmp_path, monkeypatch):
    """``num_seeds=2``: one process, two copies, each with its own log; a killed and resumed
    run reproduces the uninterrupted one."""
    two = ["num_seeds=2", "loop.frames=100"]
    straight = tmp_path / "straight"
    final = train(_cfg(straight, *two))
    logs = [read_metrics(straight / f"seed_{k}") for k in range(2)]
    evals = [[row["eval/return"] for row in rows if "eval/return" in row] for rows in logs]
    assert len(evals[0]) == len(evals[1]) >= 3 and final["return"] == evals[0][-1]
    losses = [[row["train/critic_loss"] for row in rows if "train/critic_loss" in row]
              for rows in logs]
    assert losses[0] and losses[0] != losses[1]          # independent copies
    assert not (straight / "metrics.jsonl").exists()

    interrupted = tmp_path / "interrupted"
    log = Logger.log

    def log_then_die(self, step, metrics):
        if step >= 70:
            raise Killed
        log(self, step, metrics)

    monkeypatch.setattr(Logger, "log", log_then_die)
    with pytest.raises(Killed):
        train(_cfg(interrupted, *two))
    monkeypatch.setattr(Logger, "log", log)
    train(_cfg(interrupted, f"resume={interrupted}"))
    for k in range(2):
        assert (_comparable(read_metrics(interrupted / f"seed_{k}"))
                == _comparable(logs[k]))


def test_trace_covers_the_requested_iterations_and_summarises(tmp_path):
    import json
    import subprocess
    import sys

    run = tmp_path / "run"
    train(_cfg(run, "loop.frames=60", "loop.trace_at_frames=30", "loop.trace_steps=4",
               agent="rainbow_spr"))
    loop = json.loads((run / "trace" / "loop.json").read_text())
    assert loop["iterations"] == 4 and loop["wall_ms_per_iteration"] > 0
    summary = subprocess.run([sys.executable, "experiments/trace_summary.py",
                              str(run / "trace")], capture_output=True, text=True, check=True,
                             cwd=pathlib.Path(__file__).parents[1]).stdout
    assert "4 loop iterations" in summary and "host events" in summary
    # the host's events are listed (on the CPU backend the only ones: no device process)
    assert summary.count(" calls ") >= 3, summary


def test_trace_without_a_directory_is_refused():
    from rl.trace import LoopTrace

    with pytest.raises(ValueError, match="trace_at_frames"):
        LoopTrace(None, 10, 4, print)


def test_a_run_that_ends_mid_trace_stops_it_with_the_iterations_done(tmp_path):
    import json

    run = tmp_path / "run"   # toy: action repeat 1, one env; the trace starts at step 40
    train(_cfg(run, "loop.frames=60", "loop.trace_at_frames=40", "loop.trace_steps=100",
               agent="rainbow_spr"))
    loop = json.loads((run / "trace" / "loop.json").read_text())
    assert loop["start_step"] == 40 and loop["iterations"] == 20   # steps 40..59, not 100


def test_evaluations_use_fresh_reset_seeds_the_same_in_every_run(tmp_path, monkeypatch):
    """Issue 31: each evaluation of a run resets its eval env under a new seed; a second run
    with the same seed gets the same ones (the resume test covers resumed runs)."""
    import rl.loop

    calls, real = [], rl.loop.evaluate

    def recording(*args, reset_seed=None, **kwargs):
        calls[-1].append(reset_seed)
        return real(*args, reset_seed=reset_seed, **kwargs)

    monkeypatch.setattr(rl.loop, "evaluate", recording)
    for run in ("a", "b"):
        calls.append([])
        train(_cfg(tmp_path / run, "loop.frames=80", "loop.checkpoints=false"))
    assert len(calls[0]) == 3 and len(set(calls[0])) == 3     # frames 0, 40, 80
    assert calls[0] == calls[1]
