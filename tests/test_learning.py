"""CPU learning tests: each agent must clearly beat a random policy on the toy pixel task.

The toy reach task (32x32 pixels, 50-step episodes, reward exp(-distance/8) per step) gives a
random policy ~11 per episode and a policy that walks to the goal ~40-48 (rl/envs/toy.py).
These tests fail if learning is broken (e.g. a sign error, a detached encoder, a wrong target).
"""
import pathlib

import pytest
from hydra import compose, initialize_config_dir

from experiments import config as config_lib
from experiments.train import train

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()
RANDOM_RETURN = 11.0
COMMON = ["loop.progress=false", "logger.wandb_mode=disabled", "loop.checkpoint_every_frames=0",
          "loop.video_every_evals=0", "loop.eval_episodes=10", "seed=0"]


def _train(tmp_path, *overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*COMMON, *overrides])
    cfg.run_dir = str(tmp_path)
    return train(cfg)


@pytest.mark.slow
def test_drqv2_learns_toy_reach(tmp_path):
    final = _train(tmp_path, "experiment=quickstart", "loop.frames=8000",
                   "loop.eval_every_frames=8000")
    assert final["return"] > RANDOM_RETURN + 9, final


@pytest.mark.slow
def test_imagination_agent_learns_toy_reach(tmp_path):
    final = _train(tmp_path, "env=toy/reach", "agent=imagination", "world_model=debug",
                   "env.size=32", "agent.batch_size=16", "agent.length=16",
                   "loop.frames=6000", "loop.warmup_frames=500", "loop.update_every_frames=100",
                   "loop.updates_per_call=10", "loop.eval_every_frames=6000")
    assert final["return"] > RANDOM_RETURN + 9, final
