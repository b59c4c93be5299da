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
import logging
import os
import pathlib
import sys
from typing import Sequence

import hydra
from omegaconf import DictConfig

from experiments import config as config_lib
from rl.preemption import EXIT_PREEMPTED

config_lib.register()
log = logging.getLogger("pixel_mbrl")
LOG_FORMAT = "[%(asctime)s][%(levelname)s] %(message)s"


def console_to_train_log(run_dir: pathlib.Path) -> list[logging.Handler] | None:
    """Console output also goes to ``<run_dir>/train.log``. Under Hydra its job logging already
    writes both (``train.log`` in the output dir); called as a function (a notebook, a test)
    this adds a console handler and the file. Returns the handlers it added (to remove)."""
    path = str((run_dir / "train.log").absolute())
    handlers = logging.getLogger().handlers + log.handlers
    if any(getattr(h, "baseFilename", None) == path for h in handlers):
        return None
    log.setLevel(logging.INFO)
    added = [logging.FileHandler(path)]
    if not logging.getLogger().handlers:
        added.append(logging.StreamHandler(sys.stdout))
    for handler in added:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        log.addHandler(handler)
    return added


def build_envs(run: config_lib.RunConfig):
    """Train and eval ``VectorEnv``s, each with one block of envs per seed (``run.seeds``)."""
    from rl.envs.vector import VectorEnv

    seeds = run.seeds
    train_env = VectorEnv(run.env.maker(), seeds.total_envs, seed=run.seed,
                          parallel=run.env.parallel, workers=run.env.workers)
    eval_env = make_eval_env(run, seeds.total_eval_envs, run.eval_seed)
    if train_env.spec.action_repeat != run.action_repeat:
        raise RuntimeError(f"{run.env.name}: the env repeats actions "
                           f"{train_env.spec.action_repeat} times, the resolved config says "
                           f"{run.action_repeat} (rl.envs.registry.action_repeat)")
    return train_env, eval_env


def make_eval_env(run: config_lib.RunConfig, num_envs: int, seed: int):
    """A ``VectorEnv`` of the run's env under the test protocol (e.g. Atari: no terminal on
    life loss; ``rl.envs.registry.eval_overrides``), its episodes seeded from ``seed``."""
    from rl.envs import registry
    from rl.envs.vector import VectorEnv

    return VectorEnv(run.env.maker(**registry.eval_overrides(run.env.name)), num_envs,
                     seed=seed, parallel=run.env.parallel, workers=run.env.workers)


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
    from rl import sharding

    sharding.initialize_distributed()   # several SLURM tasks: before the first array
    from rl.checkpoint import Checkpointer
    from rl.divergence import NonFiniteError
    from rl.loop import Trainer

    from experiments.provenance import source_info

    run_dir = pathlib.Path(run.run_dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    added_handlers = console_to_train_log(run_dir)
    train_env, eval_env = build_envs(run)
    run.save(run_dir / "config.yaml")
    source = source_info()
    (run_dir / "source.json").write_text(json.dumps(source, indent=2))
    agent = run.agent_class()(run.agent, train_env.spec)
    checkpointer = (Checkpointer(run_dir / "checkpoints", keep=run.loop.keep_checkpoints)
                    if run.loop.checkpoints else None)
    if run.resume and checkpointer is None:
        raise ValueError(f"resume={run.resume!r} with loop.checkpoints=false: nothing to resume")
    resume_step = checkpointer.latest_step() if run.resume else None
    # resume=auto starting afresh: rows of an attempt that died before its first checkpoint go
    fresh_frame = -1 if auto and resume_step is None else None
    loggers = make_loggers(run, run_dir, fresh_frame if resume_step is None
                           else resume_step * run.action_repeat, source)
    log.info(f"run dir: {run_dir}\nenv: {train_env.spec}\ndevice: {jax.devices()[0]}\n"
             f"commit: {source['commit']}{' (dirty)' if source['dirty'] else ''}"
             + (f"\nseeds: {run.num_seeds} vmapped copies, logs in seed_<k>/"
                if run.seeds.stacked else ""))
    trainer = Trainer(agent=agent, env=train_env, eval_env=eval_env, cfg=run.loop,
                      seed=run.seed, logger=loggers, checkpointer=checkpointer,
                      fingerprint=run.fingerprint, seeds=run.seeds, print_fn=log.info,
                      trace_dir=str(run_dir / "trace"),
                      parallel=sharding.make_parallel(run.devices, run.parallel, run.num_seeds))
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
        log.error(f"diverged: {err}")
        raise
    finally:
        for logger in loggers:
            logger.close()
        if checkpointer is not None:
            checkpointer.close()
        train_env.close()
        eval_env.close()
        for handler in added_handlers or ():
            log.removeHandler(handler)
            handler.close()
    if trainer.preempted:   # only now, with everything closed: e.g. submitit requeues the job
        trainer.stop_signals.forward()
    return final


def make_loggers(run: config_lib.RunConfig, run_dir: pathlib.Path, resume_frame: int | None,
                 source: dict | None = None) -> list:
    """One logger per seed (``run.seeds``): the run directory itself, or ``seed_<k>/`` for each
    of several vmapped copies. Every W&B run of one experiment, env and method shares a group
    (``RunConfig.wandb_group``: the seeds of a sweep, the copies of a vmapped run) and is tagged
    with its method, env, suite, experiment and seed."""
    from rl.logging import Logger

    config = {**run.to_dict(), "source": source or {}, "method": run.method, "suite": run.suite,
              "group": run.wandb_group}
    dirs = run.seeds.log_dirs(run_dir)
    names = run.seeds.run_names(run.logger.name or run_dir.name)
    return [Logger(d, {**config, "seed_index": k}, wandb_mode=run.logger.wandb_mode,
                   project=run.logger.project, entity=run.logger.entity, run_name=name,
                   group=run.wandb_group, tags=run.wandb_tags(k), resume_step=resume_frame)
            for k, (d, name) in enumerate(zip(dirs, names))]


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    if cfg.experiment is None and not cfg.resume:   # recorded for W&B groups and tables
        cfg.experiment = hydra_cfg.runtime.choices.get("experiment")
    final = train(cfg, hydra_cfg.overrides.task)
    if "preempted" in final:
        raise SystemExit(EXIT_PREEMPTED)   # stopped early (checkpointed): not a finished run
    return final.get("return", float("nan"))  # lets sweepers optimise the final eval return


if __name__ == "__main__":
    sys.exit(main())
