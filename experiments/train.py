"""Train an agent: ``python -m experiments.train env=dmc/walker_walk agent=drqv2 seed=1``.

The whole data path, in order: Hydra config (conf/) -> one frozen ``RunConfig``
(experiments/config.py) -> envs (rl/envs) -> agent (rl/agents) -> rl.loop.Trainer, which owns the replay (rl/replay), the jitted act/update, evaluation,
logging (rl/logging) and checkpoints (rl/checkpoint).
Resume an interrupted run with ``python -m experiments.train resume=<run_dir>``; ``resume=auto``
resumes the run directory Hydra gives this job if it holds a checkpoint, else starts there.

Stopping: SIGTERM / SIGINT (SLURM's preemption, Ctrl-C) make the loop finish its iteration,
checkpoint and return (``rl/preemption.py``); ``train`` then returns the last evaluation with
``"preempted": 1.0`` and writes ``preempted.json``, and the command exits with code 75
(``EXIT_PREEMPTED``). A second signal aborts at once. A non-finite loss or state with
``loop.on_nonfinite=stop`` raises ``rl.divergence.NonFiniteError`` (exit code 1) after writing
``diverged.json``; the last checkpoint is the last finite one.
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Sequence

import hydra
from omegaconf import DictConfig

from experiments import config as config_lib
from rl.preemption import EXIT_PREEMPTED

config_lib.register()


def build_envs(run: config_lib.RunConfig):
    """Train and eval ``VectorEnv``s, each with one block of envs per seed (``run.seeds``)."""
    from rl.envs import registry
    from rl.envs.vector import VectorEnv

    seeds = run.seeds
    train_env = VectorEnv(run.env.maker(), seeds.total_envs, seed=run.seed,
                          parallel=run.env.parallel, workers=run.env.workers)
    # evaluation follows the test protocol (e.g. Atari: no terminal on life loss)
    eval_env = VectorEnv(run.env.maker(**registry.eval_overrides(run.env.name)),
                         seeds.total_eval_envs, seed=run.eval_seed, parallel=run.env.parallel,
                         workers=run.env.workers)
    if train_env.spec.action_repeat != run.action_repeat:
        raise RuntimeError(f"{run.env.name}: the env repeats actions "
                           f"{train_env.spec.action_repeat} times, the resolved config says "
                           f"{run.action_repeat} (rl.envs.registry.action_repeat)")
    return train_env, eval_env


def train(cfg: DictConfig | config_lib.RunConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Runs (or resumes) one training run described by a composed (or resolved) config.

    ``overrides`` are the command line's ``key=value`` pairs; on resume they are applied on top
    of the run's saved config (anything that changes the state's shapes is refused on restore).
    """
    auto = not isinstance(cfg, config_lib.RunConfig) and cfg.resume == "auto"
    run = cfg if isinstance(cfg, config_lib.RunConfig) else config_lib.resolve(cfg, overrides)
    if run.share_device:   # read when JAX's GPU client starts, i.e. before the first array
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    import jax

    if run.device != "auto":
        jax.config.update("jax_platforms", "cpu" if run.device == "cpu" else "cuda")
    from rl.checkpoint import Checkpointer
    from rl.divergence import NonFiniteError
    from rl.loop import Trainer

    run_dir = pathlib.Path(run.run_dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    train_env, eval_env = build_envs(run)
    run.save(run_dir / "config.yaml")
    agent = run.agent_class()(run.agent, train_env.spec)
    checkpointer = (Checkpointer(run_dir / "checkpoints", keep=run.loop.keep_checkpoints)
                    if run.loop.checkpoints else None)
    if run.resume and checkpointer is None:
        raise ValueError(f"resume={run.resume!r} with loop.checkpoints=false: nothing to resume")
    resume_step = checkpointer.latest_step() if run.resume else None
    # resume=auto starting afresh: rows of an attempt that died before its first checkpoint go
    fresh_frame = -1 if auto and resume_step is None else None
    loggers = make_loggers(run, run_dir, fresh_frame if resume_step is None
                           else resume_step * run.action_repeat)
    print(f"run dir: {run_dir}\nenv: {train_env.spec}\ndevice: {jax.devices()[0]}"
          + (f"\nseeds: {run.num_seeds} vmapped copies, logs in seed_<k>/" if run.seeds.stacked
             else ""))
    trainer = Trainer(agent=agent, env=train_env, eval_env=eval_env, cfg=run.loop,
                      seed=run.seed, logger=loggers, checkpointer=checkpointer,
                      fingerprint=run.fingerprint, seeds=run.seeds,
                      trace_dir=str(run_dir / "trace"))
    try:
        if resume_step is not None:
            trainer.restore()
            if trainer.loop.step != resume_step:   # the latest was corrupt: an older one it is
                for logger in loggers:
                    logger.rewind(trainer.loop.step * run.action_repeat)
        final = trainer.run()
        if trainer.preempted:
            final = {**final, "preempted": 1.0}
            (run_dir / "preempted.json").write_text(json.dumps(
                {"signal": trainer.preempted, "step": trainer.loop.step,
                 "frames": trainer.loop.step * run.action_repeat}, indent=2))
        else:
            (run_dir / "final.json").write_text(json.dumps(final, indent=2))
            (run_dir / "preempted.json").unlink(missing_ok=True)
    except NonFiniteError as err:
        (run_dir / "diverged.json").write_text(json.dumps(err.report, indent=2))
        print(f"diverged: {err}", file=sys.stderr)
        raise
    finally:
        for logger in loggers:
            logger.close()
        if checkpointer is not None:
            checkpointer.close()
        train_env.close()
        eval_env.close()
    if trainer.preempted:   # only now, with everything closed: e.g. submitit requeues the job
        trainer.stop_signals.forward()
    return final


def make_loggers(run: config_lib.RunConfig, run_dir: pathlib.Path,
                 resume_frame: int | None) -> list:
    """One logger per seed (``run.seeds``): the run directory itself, or ``seed_<k>/`` for each
    of several vmapped copies (each its own W&B run, grouped under the run's name)."""
    from rl.logging import Logger

    config = run.to_dict()
    dirs, names = run.seeds.log_dirs(run_dir), run.seeds.run_names(run_dir.name)
    return [Logger(d, {**config, "seed_index": k}, wandb_mode=run.logger.wandb_mode,
                   project=run.logger.project, entity=run.logger.entity, run_name=name,
                   group=run_dir.name, resume_step=resume_frame)
            for k, (d, name) in enumerate(zip(dirs, names))]


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    final = train(cfg, HydraConfig.get().overrides.task)
    if "preempted" in final:
        raise SystemExit(EXIT_PREEMPTED)   # stopped early (checkpointed): not a finished run
    return final.get("return", float("nan"))  # lets sweepers optimise the final eval return


if __name__ == "__main__":
    sys.exit(main())
