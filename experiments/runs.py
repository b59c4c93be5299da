"""A run of experiments.train, loaded back: its saved config and one checkpoint of any agent
(drqv2, imagination, rainbow; one copy of a ``num_seeds > 1`` run), for the tools that work
on trained runs (experiments.evaluate, experiments.align)."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

from experiments import config as config_lib


@dataclasses.dataclass
class LoadedRun:
    run_dir: pathlib.Path
    cfg: config_lib.RunConfig  # the run's saved config, resolved
    agent: Any                 # the agent (one copy: never a SeedStack)
    state: Any                 # its state (copy ``seed_index``'s)
    replay: Any                # the replay of its training env (that copy's block of envs)
    step: int                  # checkpoint step (agent steps)
    meta: dict                 # the checkpoint's meta (loop counters, fingerprint, ...)
    seed_index: int = 0


def objective_names(cfg: config_lib.RunConfig) -> str:
    """The trained run's objectives, e.g. ``"repo"`` or ``"repo+taco"`` (``"none"``)."""
    return "+".join(o.name for o in (getattr(cfg.agent, "objectives", None) or {}).values()) \
        or "none"


def check_run(run: str | pathlib.Path, step: int | None = None, seed_index: int = 0,
              label: str = "run") -> tuple[config_lib.RunConfig, int]:
    """The run's resolved config and the checkpoint step to load (``step``, or the latest);
    reads only files, so a wrong directory, step or seed index fails before anything compiles.
    ``label`` names the argument that pointed at ``run`` in the errors."""
    from rl.checkpoint import Checkpointer

    run_dir = pathlib.Path(run).absolute()
    cfg = config_lib.resolve_saved(config_lib.saved_config(run_dir, f"{label}={str(run)!r}"))
    cfg.seeds.check_index(seed_index)
    if not (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(f"{label}={str(run)!r} has no checkpoints/ (trained with "
                                "loop.checkpoints=false?)")
    checkpointer = Checkpointer(run_dir / "checkpoints", keep=1_000_000)
    try:
        steps = checkpointer.steps()
    finally:
        checkpointer.close()
    if not steps:
        raise FileNotFoundError(f"{label}={str(run)!r}: checkpoints/ holds no checkpoint")
    if step is not None and step not in steps:
        raise ValueError(f"checkpoint={step}: {run_dir} has no checkpoint at that step; "
                         f"available: {steps}")
    return cfg, steps[-1] if step is None else int(step)


def load_run(run: str | pathlib.Path, step: int | None = None, seed_index: int = 0,
             print_fn: Callable[[str], None] = print, label: str = "run") -> LoadedRun:
    """The agent, state and replay of a run of ``experiments.train`` at checkpoint ``step``
    (None: the latest). The agent state goes to the default device; the replay where the
    trainer kept it (host memory past ``loop.replay_budget_gb``)."""
    import jax

    from rl import replay as replay_lib
    from rl.checkpoint import Checkpointer

    cfg, step = check_run(run, step, seed_index, label)
    run_dir = pathlib.Path(run).absolute()
    seeds = cfg.seeds
    env = cfg.env.maker()()
    spec = env.spec
    env.close()
    agent = cfg.agent_class()(cfg.agent, spec)
    stacked = seeds.wrap(agent)
    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(lambda k: {
        "agent": stacked.init(k),
        "replay": replay_lib.init(spec, cfg.replay_capacity, seeds.total_envs,
                                  priority_groups=seeds.priority_groups),
        "key": k, "carry": stacked.initial_carry(seeds.total_envs)}, key)
    replay_device = replay_lib.choose_device(spec, cfg.replay_capacity,
                                             int(cfg.loop.replay_budget_gb * 2**30),
                                             seeds.total_envs)

    def like(tree: Any, device: Any) -> Any:
        sharding = jax.sharding.SingleDeviceSharding(device)
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                            tree)

    target = {name: like(tree, replay_device if name == "replay" else jax.devices()[0])
              for name, tree in shapes.items()}
    checkpointer = Checkpointer(run_dir / "checkpoints", keep=1_000_000)
    try:
        state, meta = checkpointer.restore(target, fingerprint=cfg.fingerprint, step=step)
    finally:
        checkpointer.close()
    replay = seeds.replay_block(state["replay"], seed_index)
    print_fn(f"loaded {run_dir} at step {step} ({step * spec.action_repeat} frames; agent "
             f"{cfg.agent_name}, objectives {objective_names(cfg)}"
             + (f", seed_index {seed_index} of {cfg.num_seeds}" if seeds.stacked else "")
             + f"); replay {int(replay.size)} steps x {replay.num_envs} envs")
    return LoadedRun(run_dir=run_dir, cfg=cfg, agent=agent,
                     state=seeds.member(state["agent"], seed_index), replay=replay,
                     step=int(step), meta=meta, seed_index=seed_index)
