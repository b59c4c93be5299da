"""experiments.evaluate: a checkpoint of a tiny trained run of each agent, evaluated (scores,
episode video, a world model's open-loop video), its Hydra config, and the errors it raises
before anything compiles."""
import json
import pathlib
import shutil

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from experiments import config as config_lib
from experiments import evaluate as evaluate_lib
from experiments.train import train
from rl.logging import video_suffix

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()

# 100 frames, checkpoints at 60 and 100; no evaluation or video while training
LOOP = ["loop.frames=100", "loop.warmup_frames=20", "loop.log_every_frames=50",
        "loop.eval_every_frames=0", "loop.checkpoint_every_frames=60", "loop.progress=false",
        "loop.video_every_evals=0", "logger.wandb_mode=disabled"]
AGENTS = {
    "drqv2": ["env=toy/reach", "agent=drqv2", "agent.hidden_dim=16", "agent.feature_dim=8",
              "agent.encoder_channels=4", "agent.encoder_layers=2", "agent.batch_size=8",
              "agent.num_expl_steps=10"],
    "imagination": ["env=toy/reach", "agent=imagination", "world_model=debug", "env.size=32",
                    "agent.batch_size=2", "agent.length=6", "agent.horizon=3",
                    "agent.actor_critic.actor_units=8", "agent.actor_critic.critic_units=8",
                    "agent.actor_critic.actor_layers=1", "agent.actor_critic.critic_layers=1",
                    "loop.update_every_frames=20", "loop.updates_per_call=1"],
    "rainbow": ["env=toy/reach_discrete", "agent=rainbow", "agent.encoder_channels=[8,16]",
                "agent.encoder_kernels=[4,3]", "agent.encoder_strides=[2,2]",
                "agent.hidden_dim=16", "agent.batch_size=8", "agent.n_step=3",
                "agent.num_atoms=11", "agent.frame_stack=2", "loop.update_every=4",
                "loop.updates_per_call=1"],
}
FPS = 20


def _train(tmp_path_factory, agent: str) -> pathlib.Path:
    run = tmp_path_factory.mktemp(f"{agent}_run")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*AGENTS[agent], *LOOP])
    cfg.run_dir = str(run)
    train(cfg)
    return run


@pytest.fixture(scope="module")
def drqv2_run(tmp_path_factory):
    return _train(tmp_path_factory, "drqv2")


@pytest.fixture(scope="module")
def imagination_run(tmp_path_factory):
    return _train(tmp_path_factory, "imagination")


@pytest.fixture(scope="module")
def rainbow_run(tmp_path_factory):
    return _train(tmp_path_factory, "rainbow")


def _frames(path: pathlib.Path) -> tuple[int, tuple[int, int]]:
    """A video's frame count and (height, width). A GIF's count is its summed frame duration:
    Pillow merges identical consecutive frames (rl.logging.save_video)."""
    if path.suffix == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as gif:
            total = sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif))
            return round(total * FPS / 1000), (gif.height, gif.width)
    import imageio.v3 as iio

    frames = iio.imread(path)
    return len(frames), frames.shape[1:3]


def _quiet(_):
    pass


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_evaluates_a_checkpoint_of_each_agent(agent, request):
    run = request.getfixturevalue(f"{agent}_run")
    result = evaluate_lib.evaluate_run(run, episodes=3, envs=1, print_fn=_quiet)
    out = run / "evaluations" / "100"
    scores = json.loads((out / "scores.json").read_text())
    assert scores == {k: v for k, v in result.items() if k != "out_dir"}
    assert result["out_dir"] == str(out)
    assert scores["episodes"] == len(scores["returns"]) == len(scores["lengths"]) == 3
    assert scores["mean"] == pytest.approx(np.mean(scores["returns"]))
    assert scores["std"] == pytest.approx(np.std(scores["returns"]))
    assert scores["checkpoint_step"] == scores["step"] == scores["frames"] == 100
    assert scores["agent"] == agent and scores["explore"] is False
    assert scores["env"] == ("toy/reach_discrete" if agent == "rainbow" else "toy/reach")
    assert scores["seed"] == 1 + evaluate_lib.EVALUATE_SEED_OFFSET
    size = 32
    video = out / scores["videos"]["episode_0"]
    assert video.suffix == video_suffix()
    # env 0's first episode: its reset frame and one per step
    assert _frames(video) == (scores["lengths"][0] + 1, (size, size))
    if agent == "imagination":   # truth | model | error, one frame per replayed step
        assert _frames(out / scores["videos"]["report_openloop"]) == (6, (size, 3 * size))
    else:
        assert set(scores["videos"]) == {"episode_0"}


def test_evaluates_an_older_checkpoint_and_the_exploring_policy(drqv2_run):
    older = evaluate_lib.evaluate_run(drqv2_run, checkpoint=60, episodes=1, video=False,
                                      print_fn=_quiet)
    scores = json.loads((drqv2_run / "evaluations" / "60" / "scores.json").read_text())
    assert scores["checkpoint_step"] == older["checkpoint_step"] == 60
    assert scores["episodes"] == 1 and scores["videos"] == {}
    explored = evaluate_lib.evaluate_run(drqv2_run, checkpoint=60, episodes=1, video=False,
                                         explore=True, seed=5, print_fn=_quiet)
    assert explored["out_dir"] == str(drqv2_run / "evaluations" / "60-explore")
    assert explored["explore"] is True and explored["seed"] == 5


def test_refuses_bad_runs_and_arguments_before_compiling(drqv2_run, tmp_path, monkeypatch):
    import jax

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before refusing")

    monkeypatch.setattr(jax, "jit", no_compile)
    evaluate = evaluate_lib.evaluate_run
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        evaluate(tmp_path / "nothing")
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    shutil.copy(drqv2_run / "config.yaml", untrained / "config.yaml")
    with pytest.raises(FileNotFoundError, match="has no checkpoints/"):
        evaluate(untrained)
    with pytest.raises(ValueError, match=r"checkpoint=7: .* available: \[60, 100\]"):
        evaluate(drqv2_run, checkpoint=7)
    with pytest.raises(ValueError, match="seed_index=1; the run has num_seeds=1"):
        evaluate(drqv2_run, seed_index=1)
    with pytest.raises(ValueError, match="episodes=0; must be an int >= 1"):
        evaluate(drqv2_run, episodes=0)
    with pytest.raises(ValueError, match="run is required"):
        evaluate("")
    assert not (untrained / "evaluations").exists()


def test_conf_evaluate_composes_and_refuses_unknown_keys():
    def composed(*overrides):
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return compose("evaluate", overrides=list(overrides))

    cfg = evaluate_lib.to_config(composed("run=/some/run", "checkpoint=60", "episodes=3",
                                          "video=false", "seed_index=1", "explore=true"))
    assert cfg == evaluate_lib.EvaluateConfig(run="/some/run", checkpoint=60, episodes=3,
                                              video=False, seed_index=1, explore=True)
    for typo in ("episode=3", "video.fps=1"):
        with pytest.raises(ConfigCompositionException):
            composed("run=/x", typo)
    with pytest.raises(ValueError, match=r"unknown EvaluateConfig fields \['extra'\]"):
        evaluate_lib.to_config(composed("run=/x", "+extra=1"))   # '+' appends past the schema
    with pytest.raises(ValueError, match="episodes=0"):
        evaluate_lib.to_config(composed("run=/x", "episodes=0"))
