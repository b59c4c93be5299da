"""Evaluate a checkpoint of a trained run (any agent): scores and videos.

    python -m experiments.evaluate run=<run dir>                    # latest checkpoint, 10 episodes
    python -m experiments.evaluate run=<run dir> checkpoint=<step> episodes=20 video=false
    python -m experiments.evaluate run=<run dir> seed_index=2 explore=true

From Python (a notebook): ``evaluate_run(run_dir, checkpoint=None, episodes=10, ...)``.
In order: load the run's config and checkpoint (``experiments.runs``); build its eval env
under the test protocol (``experiments.train.make_eval_env``), seeded apart from the episodes
the run trained and evaluated on; play ``episodes`` episodes of the deterministic policy
(``rl.evaluate.play``; ``explore=true``: the training-time policy); write to
``<run>/evaluations/<step>/`` (``<step>-explore/`` with explore; ``seed_<k>/`` in it for a
``num_seeds > 1`` run):
- ``scores.json``: per-episode returns and lengths, their mean and std, step, frames, agent, env;
- ``episode_0.mp4`` (``.gif`` without the ``imageio-ffmpeg`` package): env 0's first episode;
- ``report_<name>.<ext>`` for agents with a ``report`` (world models: ``report_openloop``, the
  open-loop predictions on a batch of the run's replay, as the training loop logs them).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from typing import Any, Callable, Optional

import hydra
import numpy as np
from omegaconf import DictConfig

from experiments import config as config_lib
from experiments import runs

# episode seeds apart from training's (seed) and its evaluations' (seed + EVAL_SEED_OFFSET)
EVALUATE_SEED_OFFSET = 2_000_003


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    run: str = ""                     # run directory of experiments.train (required)
    checkpoint: Optional[int] = None  # checkpoint step (agent steps); None: the latest
    episodes: int = 10
    video: bool = True                # the first episode's video (and the agent's report videos)
    seed_index: int = 0               # which copy of a num_seeds > 1 run
    explore: bool = False             # act as in training instead of deterministically
    seed: Optional[int] = None        # episode seeds' base; None: run seed + EVALUATE_SEED_OFFSET
    envs: Optional[int] = None        # eval envs; None: the run's loop.eval_envs
    out_dir: str = ""                 # "": <run>/evaluations/<step>[-explore][/seed_<k>]
    device: str = "auto"              # auto | cpu | gpu
    fps: int = 20

    def __post_init__(self) -> None:
        if not self.run:
            raise ValueError("run is required: the directory of a run of experiments.train "
                             "(with config.yaml and checkpoints/)")
        if self.device not in config_lib.DEVICES:
            raise ValueError(f"device={self.device!r}; allowed: {', '.join(config_lib.DEVICES)}")
        for name, low in (("episodes", 1), ("fps", 1), ("seed_index", 0), ("checkpoint", 0),
                          ("seed", 0), ("envs", 1)):
            value = getattr(self, name)
            if value is None and name in ("checkpoint", "seed", "envs"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r}; must be an int >= {low}")


def register() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="evaluate_schema", node=config_lib.mirror(EvaluateConfig))


register()


def to_config(cfg: DictConfig | EvaluateConfig) -> EvaluateConfig:
    return cfg if isinstance(cfg, EvaluateConfig) else config_lib._from_node(EvaluateConfig, cfg)


def out_dir(cfg: EvaluateConfig, run: runs.LoadedRun) -> pathlib.Path:
    if cfg.out_dir:
        return pathlib.Path(cfg.out_dir).absolute()
    base = run.run_dir / "evaluations" / (f"{run.step}-explore" if cfg.explore else str(run.step))
    return run.cfg.seeds.log_dirs(base)[cfg.seed_index]


def evaluate_run(run_dir: str | pathlib.Path, checkpoint: int | None = None, episodes: int = 10,
                 video: bool = True, seed_index: int = 0, explore: bool = False,
                 seed: int | None = None, envs: int | None = None,
                 out: str | pathlib.Path | None = None, device: str = "auto", fps: int = 20,
                 print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluates one checkpoint of a run (module docstring); returns what ``scores.json`` holds."""
    return run_evaluation(EvaluateConfig(
        run=str(run_dir), checkpoint=checkpoint, episodes=episodes, video=video,
        seed_index=seed_index, explore=explore, seed=seed, envs=envs,
        out_dir=str(out or ""), device=device, fps=fps), print_fn)


def run_evaluation(cfg: EvaluateConfig, print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """``evaluate_run`` on a validated config (the CLI's entry)."""
    import jax

    if cfg.device != "auto":
        jax.config.update("jax_platforms", "cpu" if cfg.device == "cpu" else "cuda")
    import jax.numpy as jnp

    from experiments.train import make_eval_env
    from rl.evaluate import play, summarise
    from rl.logging import save_video, video_suffix

    started = time.time()
    run = runs.load_run(cfg.run, cfg.checkpoint, cfg.seed_index, print_fn)
    rc, agent = run.cfg, run.agent
    seed = rc.seed + EVALUATE_SEED_OFFSET if cfg.seed is None else cfg.seed
    num_envs = cfg.envs or rc.loop.eval_envs
    play_key, report_key = jax.random.split(jax.random.PRNGKey(seed))
    act = jax.jit(agent.act, static_argnames=("explore",))
    env = make_eval_env(rc, num_envs, seed)
    try:
        (played,), frames = play(agent, act, run.state, env, cfg.episodes, play_key,
                                 jnp.int32(run.step), record_video=cfg.video,
                                 explore=cfg.explore)
    finally:
        env.close()
    out = out_dir(cfg, run)
    videos = {}
    if cfg.video:
        videos["episode_0"] = save_video(out / f"episode_0{video_suffix()}", frames, cfg.fps)
        videos.update(report_videos(run, report_key, out, cfg.fps, print_fn))
    summary = summarise(played)
    scores = {
        "run": str(run.run_dir), "agent": rc.agent_name, "env": rc.env.name,
        "objectives": runs.objective_names(rc), "checkpoint_step": run.step,
        "step": int(run.meta.get("loop", {}).get("step", run.step)),
        "frames": run.step * rc.action_repeat, "seed": seed, "seed_index": cfg.seed_index,
        "explore": cfg.explore, "num_envs": num_envs, "episodes": len(played["return"]),
        "returns": played["return"], "lengths": [int(n) for n in played["length"]],
        "mean": summary["return"], "std": summary["return_std"],
        "mean_length": summary["episode_length"],
        **({"successes": played["success"], "success": summary["success"]}
           if played["success"] else {}),
        "videos": {name: str(path.relative_to(out)) for name, path in videos.items()},
        "wall_s": time.time() - started,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(scores, indent=2))
    print_fn(f"wrote {out / 'scores.json'}: return {scores['mean']:.1f} ± {scores['std']:.1f} "
             f"over {scores['episodes']} episodes at step {run.step} ({scores['frames']} frames)")
    return {**scores, "out_dir": str(out)}


def report_videos(run: runs.LoadedRun, key: Any, out: pathlib.Path, fps: int,
                  print_fn: Callable[[str], None] = print) -> dict[str, pathlib.Path]:
    """The agent's own videos (``rl.evaluate.make_report_fn``) from a batch of the run's replay."""
    import jax

    from rl.evaluate import make_report_fn
    from rl.logging import save_video, video_suffix

    report = make_report_fn(run.agent)
    if report is None:
        return {}
    if jax.tree.leaves(run.replay)[0].devices() != {jax.devices()[0]}:
        # as the training loop: a host-memory replay would need its batch copied over first
        print_fn("report videos skipped: the run's replay lives in host memory")
        return {}
    videos = report(run.state, run.replay, key)
    return {f"report_{name}": save_video(out / f"report_{name}{video_suffix()}",
                                         np.asarray(video), fps)
            for name, video in videos.items()}


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float:
    return run_evaluation(to_config(cfg))["mean"]


if __name__ == "__main__":
    sys.exit(main())
