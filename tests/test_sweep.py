"""-m sweeps: the parallel local launcher runs a sweep's jobs to the end, and the SLURM launcher
preset composes (no cluster here to submit to)."""
import json
import os
import pathlib
import subprocess
import sys

import yaml
from hydra import compose, initialize_config_dir

from experiments import config as config_lib

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()
TINY = ["experiment=quickstart", "agent.hidden_dim=32", "agent.feature_dim=8",
        "agent.encoder_channels=8", "agent.encoder_layers=2", "agent.batch_size=8",
        "agent.num_expl_steps=0", "loop.frames=600", "loop.warmup_frames=400",
        "loop.eval_every_frames=600", "loop.eval_episodes=2", "loop.progress=false",
        "loop.checkpoint_every_frames=0", "loop.video_every_evals=0",
        "logger.wandb_mode=disabled", "device=cpu"]


def _launcher(name):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"hydra/launcher={name}"],
                       return_hydra_config=True).hydra.launcher


def test_launcher_presets_compose():
    parallel = _launcher("parallel")
    assert parallel._target_.endswith("JoblibLauncher") and parallel.n_jobs == 2
    slurm = _launcher("slurm")
    assert slurm._target_.endswith("SlurmLauncher")
    assert (slurm.gpus_per_node, slurm.tasks_per_node, slurm.timeout_min) == (1, 1, 120)


def test_parallel_sweep_runs_every_job(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, "-m", "experiments.train", "-m",
                           "hydra/launcher=parallel", "share_device=true", "seed=1,2", *TINY,
                           f"hydra.sweep.dir={tmp_path}"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0_toy-reach_drqv2_s1", "1_toy-reach_drqv2_s2"]
    for job, seed in zip(jobs, (1, 2)):
        saved = yaml.safe_load((job / "config.yaml").read_text())
        assert (saved["seed"], saved["share_device"], saved["run_dir"]) == (seed, True, str(job))
        final = json.loads((job / "final.json").read_text())
        assert final["episodes"] == 2.0 and final["return"] == final["return"]   # not NaN
