"""Train an agent: ``python -m experiments.train env=dmc/walker_walk agent=drqv2 seed=1``.

The whole data path, in order: Hydra config (conf/) -> envs (rl/envs) -> agent (rl/agents) ->
rl.loop.Trainer, which owns the replay (rl/replay), the jitted act/update, evaluation,
logging (rl/logging) and checkpoints (rl/checkpoint).
Resume an interrupted run with ``python -m experiments.train resume=<run_dir>``.
"""
from __future__ import annotations

import functools
import json
import os
import pathlib
import sys
from typing import Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from experiments import config as config_lib

config_lib.register()


def load_resumed(cfg: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """The run's saved config, plus this command's overrides (e.g. a larger ``loop.frames``)."""
    run_dir = pathlib.Path(cfg.resume).absolute()
    saved = run_dir / "config.yaml"
    if not saved.exists():
        raise FileNotFoundError(f"resume={cfg.resume!r}: no config.yaml in {run_dir}; "
                                "pass the directory of a run started by experiments.train")
    resumed = OmegaConf.merge(OmegaConf.structured(config_lib.Config), OmegaConf.load(saved))
    extra = [o for o in overrides if not o.startswith(("resume=", "hydra."))]
    if extra:
        resumed = OmegaConf.merge(resumed, OmegaConf.from_dotlist(extra))
    resumed.resume = str(run_dir)
    resumed.run_dir = str(run_dir)
    return resumed


def build_envs(cfg: DictConfig, eval_envs: int, num_seeds: int = 1):
    """Train and eval ``VectorEnv``s; with ``num_seeds`` copies, each holds one block of
    ``num_envs`` (``eval_envs``) envs per copy."""
    from rl.envs import registry
    from rl.envs.vector import VectorEnv

    make = functools.partial(registry.make, cfg.env.name, size=cfg.env.size,
                             action_repeat=cfg.env.action_repeat, convention=cfg.env.convention,
                             **OmegaConf.to_container(cfg.env.kwargs))
    train_env = VectorEnv(make, cfg.env.num_envs * num_seeds, seed=cfg.seed,
                          parallel=cfg.env.parallel, workers=cfg.env.get("workers"))
    # evaluation follows the test protocol (e.g. Atari: no terminal on life loss)
    eval_make = functools.partial(make, **registry.eval_overrides(cfg.env.name))
    eval_env = VectorEnv(eval_make, eval_envs * num_seeds, seed=cfg.seed + 1_000_003,
                         parallel=cfg.env.parallel, workers=cfg.env.get("workers"))
    return train_env, eval_env


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Runs (or resumes) one training run described by a composed config.

    ``overrides`` are the command line's ``key=value`` pairs; on resume they are applied on top
    of the run's saved config (anything that changes the state's shapes is refused on restore).
    """
    if cfg.resume:
        cfg = load_resumed(cfg, overrides)
    if cfg.device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device={cfg.device!r}; allowed: auto, cpu, gpu")
    if cfg.share_device:   # read when JAX's GPU client starts, i.e. before the first array
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    import jax

    if cfg.device != "auto":
        jax.config.update("jax_platforms", "cpu" if cfg.device == "cpu" else "cuda")
    from rl.checkpoint import Checkpointer
    from rl.loop import Trainer

    run_dir = pathlib.Path(cfg.run_dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    agent_cfg = config_lib.agent_config(cfg)
    config_lib.loop_config(cfg).validate()
    if cfg.num_seeds < 1:
        raise ValueError(f"num_seeds={cfg.num_seeds}; must be >= 1")
    train_env, eval_env = build_envs(cfg, cfg.loop.eval_envs, cfg.num_seeds)
    if not cfg.resume:  # the saved config records the replay actually allocated
        cfg.loop.replay_capacity = config_lib.replay_capacity(cfg, train_env.spec.action_repeat)
    loop_cfg = config_lib.loop_config(cfg)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    _, agent_cls = config_lib.agent_class(cfg.agent.name)
    agent = agent_cls(agent_cfg, train_env.spec)
    checkpointer = (Checkpointer(run_dir / "checkpoints", keep=loop_cfg.keep_checkpoints)
                    if loop_cfg.checkpoints else None)
    if cfg.resume and checkpointer is None:
        raise ValueError(f"resume={cfg.resume!r} with loop.checkpoints=false: nothing to resume")
    resume_step = checkpointer.latest_step() if cfg.resume else None
    loggers = make_loggers(cfg, run_dir, None if resume_step is None
                           else resume_step * train_env.spec.action_repeat)
    print(f"run dir: {run_dir}\nenv: {train_env.spec}\ndevice: {jax.devices()[0]}"
          + (f"\nseeds: {cfg.num_seeds} vmapped copies, logs in seed_<k>/" if cfg.num_seeds > 1
             else ""))
    trainer = Trainer(agent=agent, env=train_env, eval_env=eval_env, cfg=loop_cfg,
                      seed=cfg.seed, logger=loggers, checkpointer=checkpointer,
                      fingerprint=config_lib.fingerprint(cfg), num_seeds=cfg.num_seeds,
                      trace_dir=str(run_dir / "trace"))
    try:
        if resume_step is not None:
            trainer.restore()
        final = trainer.run()
        (run_dir / "final.json").write_text(json.dumps(final, indent=2))
        return final
    finally:
        for logger in loggers:
            logger.close()
        if checkpointer is not None:
            checkpointer.close()
        train_env.close()
        eval_env.close()


def make_loggers(cfg: DictConfig, run_dir: pathlib.Path, resume_frame: int | None) -> list:
    """One logger per seed: the run directory itself, or ``seed_<k>/`` for each of several
    vmapped copies (each its own W&B run, grouped under the run's name)."""
    from rl.logging import Logger

    config = OmegaConf.to_container(cfg, resolve=True)
    dirs = ([run_dir] if cfg.num_seeds == 1
            else [run_dir / f"seed_{k}" for k in range(cfg.num_seeds)])
    return [Logger(d, {**config, "seed_index": k}, wandb_mode=cfg.logger.wandb_mode,
                   project=cfg.logger.project, entity=cfg.logger.entity,
                   run_name=run_dir.name if cfg.num_seeds == 1 else f"{run_dir.name}-seed_{k}",
                   group=run_dir.name, resume_step=resume_frame)
            for k, d in enumerate(dirs)]


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    final = train(cfg, HydraConfig.get().overrides.task)
    return final.get("return", float("nan"))  # lets sweepers optimise the final eval return


if __name__ == "__main__":
    sys.exit(main())
