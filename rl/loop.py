"""Collect, update, evaluate, log, checkpoint and resume: the one training loop every agent uses.

Per iteration: the agent acts on the latest frames (one jit), the due updates are dispatched
(one jit, state donated, K updates fused with ``lax.scan``: ``rl/updates.py``), and only then
does the host wait for the actions and step the environments, so env stepping on CPU overlaps
the device update. When updates, logs, evaluations and checkpoints happen: ``rl/loop_schedule.py``;
which envs, loggers and replay rows belong to which seed: ``rl.agents.seed_stack.SeedLayout``.
A stop signal ends the loop after its iteration, with a checkpoint (``rl/preemption.py``); a
non-finite update stops it or is skipped (``loop.on_nonfinite``, ``rl/divergence.py``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rl import replay as replay_lib
from rl.agents.base import Agent, is_prioritized
from rl.agents.seed_stack import SeedLayout
from rl.checkpoint import Checkpointer
from rl.core.types import ActionSpec, TimeStep
from rl.divergence import DivergenceMonitor, NonFiniteError
from rl.episodes import EpisodeStats
from rl.evaluate import eval_reset_seed, evaluate
from rl.logging import Logger
from rl.loop_config import LoopConfig
from rl.loop_schedule import LoopSchedule
from rl.preemption import StopSignals
from rl.progress import progress_bar
from rl.sharding import Parallel
from rl.throughput import Throughput
from rl.trace import LoopTrace
from rl.updates import learn_step, make_update_fn

# what other modules import from here (learn_step and make_update_fn live in rl/updates.py)
__all__ = ["LoopConfig", "LoopState", "Trainer", "TrainerState", "learn_step", "make_update_fn",
           "random_actions"]


def random_actions(key: jax.Array, spec: ActionSpec, num: int) -> jax.Array:
    if spec.discrete:
        return jax.random.randint(key, (num,), 0, spec.num_actions, dtype=jnp.int32)
    return jax.random.uniform(key, (num, *spec.shape), jnp.float32, spec.low, spec.high)


@dataclasses.dataclass
class LoopState:
    """Host-side loop counters and the live env/acting state (part of every checkpoint)."""

    step: int = 0               # agent steps, summed over envs
    updates: int = 0
    episodes: int = 0
    evals: int = 0
    env_faults: int = 0         # env steps that raised or whose worker died (rl/envs/vector.py)
    nonfinite_updates: int = 0  # updates discarded by loop.on_nonfinite=skip


@flax.struct.dataclass
class TrainerState:
    """Everything on the device that a run carries from step to step (and checkpoints)."""

    agent: Any       # the agent's train state (a SeedStack of them with num_seeds > 1)
    replay: Any      # ``rl.replay.ReplayState``
    key: jax.Array   # the loop's rng
    carry: Any       # the agent's acting memory for every env



class Trainer:
    """Owns the pieces of one run; ``run()`` trains until the frame budget is spent.

    ``seeds`` (``rl.agents.seed_stack.SeedLayout``; default: one seed on all of ``env``'s envs)
    with ``num_seeds > 1`` trains that many independent copies of the agent in this one process
    (``SeedStack``): ``env`` and ``eval_env`` then hold one equal block of envs per copy,
    ``logger`` is a list with one logger per copy, and every counter, budget and replay
    capacity in ``cfg`` is per copy.
    """

    def __init__(self, *, agent: Agent, env: Any, eval_env: Any, cfg: LoopConfig, seed: int,
                 logger: Logger | list[Logger], checkpointer: Checkpointer | None,
                 fingerprint: str = "", print_fn: Callable[[str], None] = print,
                 seeds: SeedLayout | None = None, trace_dir: Optional[str] = None,
                 parallel: Parallel | None = None):
        cfg.validate()
        self.seeds = seeds = seeds or SeedLayout(1, env.num_envs, eval_env.num_envs)
        if seeds != SeedLayout.of_envs(seeds.num_seeds, env.num_envs, eval_env.num_envs):
            raise ValueError(f"{seeds} does not fit env ({env.num_envs} envs) and eval_env "
                             f"({eval_env.num_envs} envs)")
        self.loggers = list(logger) if isinstance(logger, (list, tuple)) else [logger]
        seeds.check_loggers(self.loggers)
        # several devices (rl/sharding.py): identity with one
        self.parallel = parallel or Parallel()
        self.agent = agent = self.parallel.wrap(seeds.wrap(agent, cfg.seed_updates))
        self.env, self.eval_env, self.cfg = env, eval_env, cfg
        # the eval env's construction seed: evaluation k resets it under
        # eval_reset_seed(this, k) (fresh episodes per evaluation, the same after a resume)
        self._eval_base_seed = int(getattr(eval_env, "seed", 0))
        self.checkpointer, self.fingerprint = checkpointer, fingerprint
        self.print = print_fn
        self.spec = env.spec
        self.action_repeat = self.spec.action_repeat
        # loop counters are per seed: one iteration is one step of each seed's block of envs
        self.schedule = LoopSchedule.of(cfg, agent, self.action_repeat, seeds.envs_per_seed)
        self.trace = LoopTrace(trace_dir, self.schedule.trace_start, cfg.trace_steps,
                               print_fn) if cfg.trace_at_frames else None
        # experiments.config cuts the per-seed capacity to the frame budget
        capacity = seeds.replay_capacity(cfg.replay_capacity)
        budget = int(cfg.replay_budget_gb * 2**30)
        self.replay_device = replay_lib.choose_device(self.spec, capacity, budget,
                                                      seeds.total_envs)
        self.print(f"replay: {replay_lib.describe(self.spec, capacity, seeds.total_envs)} "
                   f"on {self.replay_device}")
        self.fused = self.replay_device == jax.devices()[0]
        self.act = jax.jit(agent.act, static_argnames=("explore",))
        self.update = make_update_fn(agent, cfg.updates_per_call, self.fused, cfg.fuse_updates,
                                     on_nonfinite=cfg.on_nonfinite)
        self.divergence = DivergenceMonitor(cfg.on_nonfinite, cfg.updates_per_call,
                                            self.action_repeat, print_fn)
        if is_prioritized(agent) and not self.fused:
            self.print(f"warning: prioritised replay needs the replay on the accelerator; it is in "
                       f"host memory ({self.replay_device}), so sampling is uniform (raise "
                       f"loop.replay_budget_gb above {cfg.replay_budget_gb} to keep PER)")
        self.random_actions = jax.jit(random_actions, static_argnums=(1, 2))
        self._split4 = jax.jit(lambda key: tuple(jax.random.split(key, 4)))

        key = jax.random.PRNGKey(seed)
        key, init_key, self.eval_key = jax.random.split(key, 3)
        # agent state and carry committed to the device, like everything the jitted update and
        # act return: otherwise each compiles twice (once for uncommitted inputs)
        device = jax.devices()[0]
        self.state = TrainerState(
            agent=jax.device_put(agent.init(init_key), device),
            replay=replay_lib.init(self.spec, capacity, seeds.total_envs, self.replay_device,
                                   priority_groups=seeds.priority_groups),
            key=key,
            carry=jax.device_put(agent.initial_carry(seeds.total_envs), device))
        self.state = self.parallel.place(self.state)
        self.loop = LoopState()
        self._nonfinite_base = 0            # loop.nonfinite_updates of the checkpoint resumed
        # between two log rows: the latest update metrics and the finished episodes (both go
        # into checkpoints, so a run stopped between log rows resumes to the same rows)
        self._metrics: dict[str, Any] = {}
        self._episodes = EpisodeStats(seeds)
        self.preempted: str | None = None   # the signal that stopped run() early, if one did
        self.timestep: TimeStep | None = None
        self._last_eval: dict[str, float] = {}
        self._last_eval_step = -1

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        """Agent state, replay, rng and counters; the envs are rebuilt on restore by replaying
        the actions of their current episodes (seeded resets make that exact)."""
        if self.checkpointer is None or self.checkpointer.latest_step() == self.loop.step:
            return
        self._check_finite(raise_now=True)   # a non-finite state is never written
        self._pop_faults()
        env_state = self.env.resume_state()
        metrics = jax.device_get(self._metrics)
        meta = {"loop": dataclasses.asdict(self.loop), "fingerprint": self.fingerprint,
                "env": {"episode_index": env_state["episode_index"].tolist(),
                        "chain_start": env_state["chain_start"].tolist(),
                        "actions_per_env": [a.tolist() for a in env_state["actions_per_env"]]},
                "pending": {"episodes": self._episodes.rows,
                            "metrics": {k: [np.asarray(v).tolist(), str(np.asarray(v).dtype)]
                                        for k, v in metrics.items()}}}
        self.checkpointer.save(self.loop.step, self.state, meta)

    def restore(self) -> None:
        self.state, meta = self.checkpointer.restore(self.state, fingerprint=self.fingerprint,
                                                     warn=self.print)
        self.loop = LoopState(**meta["loop"])
        self._nonfinite_base = self.loop.nonfinite_updates
        pending = meta.get("pending", {"episodes": self._episodes.rows, "metrics": {}})
        self._episodes.rows = pending["episodes"]
        self._metrics = {k: np.asarray(v, dtype) for k, (v, dtype) in pending["metrics"].items()}
        action = self.spec.action
        env = meta["env"]
        actions = [np.asarray(a, action.dtype).reshape(len(a), *action.shape)
                   for a in env["actions_per_env"]]
        self.timestep = self.env.restore(np.asarray(env["episode_index"]), actions,
                                         np.asarray(env["chain_start"]))
        self.print(f"resumed from step {self.loop.step} ({self.loop.step * self.action_repeat} frames)")

    # ------------------------------------------------------------------ collection
    def _add(self, ts: TimeStep, action: np.ndarray) -> None:
        self.state = self.state.replace(replay=replay_lib.add_timestep(
            self.state.replay, ts, action.astype(self.spec.action.dtype)))

    def _step_keys(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Keys for acting, random warm-up actions and updates (one jitted split per step)."""
        key, *keys = self._split4(self.state.key)
        self.state = self.state.replace(key=key)
        return tuple(keys)

    def update_every(self) -> int:
        """Agent steps between update calls, from whichever schedule the config names."""
        return self.schedule.update_every

    def run(self) -> dict[str, float]:
        """Trains to the frame budget; returns the final evaluation (seed 0's with several
        seeds; every seed's is in its own log)."""
        cfg, loop, schedule, seeds = self.cfg, self.loop, self.schedule, self.seeds
        repeat, total_envs = self.action_repeat, seeds.total_envs
        if self.timestep is None:
            self.timestep = self.env.reset()
            self._add(self.timestep, np.zeros((total_envs, *self.spec.action.shape),
                                              self.spec.action.dtype))
        perf = Throughput(repeat, seeds.num_seeds)   # env steps summed over all envs
        bar = progress_bar(cfg.progress, schedule.total_steps * repeat, loop.step * repeat)
        episodes = self._episodes
        log, evaluation, checkpoint = schedule.events(
            loop.step, bool(cfg.eval_every_frames), bool(cfg.checkpoint_every_frames))
        if loop.step == 0 and cfg.eval_every_frames and cfg.eval_at_start:
            self._evaluate()
        with StopSignals(self.print) as stop:   # the last checkpoint too: a stop waits for it
            self.stop_signals = stop
            self._logged_at = loop.step
            self._iterate(stop, perf, bar, episodes, log, evaluation, checkpoint)
            if not (self.preempted or stop.name) and self._logged_at != loop.step:
                self._check_finite(raise_now=True)   # the last, partial logging window
                self._log_train(jax.device_get(self._metrics), episodes,
                                {**perf.report(), **self._counters()}, bar)
            if self.trace is not None:
                self.trace.finish(self.state)
            self.save()
            self.preempted = self.preempted or stop.name
        if self.preempted:   # the checkpoint is written: resume=auto (or resume=<dir>) goes on
            self.print(f"stopped by {self.preempted} at step {loop.step} "
                       f"({loop.step * repeat} frames); checkpoint written")
            bar.close()
            return self._last_eval
        final = self._last_eval
        if cfg.eval_every_frames and self._last_eval_step != loop.step:
            final = self._evaluate()
        bar.close()
        return final

    def _iterate(self, stop: StopSignals, perf: Throughput, bar: Any, episodes: EpisodeStats,
                 log: Any, evaluation: Any, checkpoint: Any) -> None:
        """The loop's iterations, until the budget is spent or a stop signal came."""
        cfg, loop, schedule, seeds = self.cfg, self.loop, self.schedule, self.seeds
        repeat, total_envs = self.action_repeat, seeds.total_envs
        while loop.step < schedule.total_steps:
            if self.trace is not None:
                self.trace.tick(loop.step, self.state)
            ts = self.timestep
            key_act, key_rand, key_update = self._step_keys()
            step = np.int32(loop.step)
            action, carry = self.act(self.state.agent, self.state.carry, jnp.asarray(ts.obs),
                                     jnp.asarray(ts.is_first), key_act, step, explore=True)
            self.state = self.state.replace(carry=carry)
            if loop.step < schedule.warmup_steps:
                action = self.random_actions(key_rand, self.spec.action, total_envs)
            calls = schedule.update_calls(loop.step)
            if calls > 0:
                for key in jax.random.split(key_update, calls):
                    perf.start_update()
                    agent_state, replay, metrics = self.update(self.state.agent,
                                                               self.state.replay, key, step)
                    self.state = self.state.replace(agent=agent_state, replay=replay)
                    self._metrics = metrics = self.divergence.observe(metrics, loop.step)
                    perf.end_update(cfg.updates_per_call, metrics)
                    loop.updates += cfg.updates_per_call
            action = np.asarray(action)        # waits for act only; the update keeps running
            self.env.step_async(action)
            self.timestep = ts = self.env.step_wait()
            self._add(ts, action)
            loop.step += seeds.envs_per_seed
            perf.env_steps(total_envs)
            bar.update(seeds.envs_per_seed * repeat)
            loop.episodes += episodes.add(ts)
            if log.due(loop.step):
                diverged = self._check_finite()
                shared = {**perf.report(), **self._counters()}
                metrics = jax.device_get(self._metrics)   # fetched here, not per step
                self._log_train(metrics, episodes, shared, bar)
                self._logged_at = loop.step
                if diverged is not None:   # after the row: it shows the non-finite metrics
                    raise diverged
            if evaluation.due(loop.step):
                self._evaluate()
            if checkpoint.due(loop.step):
                self.save()
            if stop.requested:   # this iteration is complete: run() checkpoints and returns
                self.preempted = stop.name
                break

    def _check_finite(self, raise_now: bool = False) -> NonFiniteError | None:
        """Syncs on the update's non-finite flag (``rl/divergence.py``)."""
        try:
            self.divergence.check()
        except NonFiniteError as error:
            if raise_now:
                raise
            return error
        finally:
            self.loop.nonfinite_updates = self._nonfinite_base + self.divergence.skipped
        return None

    def _log_train(self, metrics: dict[str, Any], episodes: EpisodeStats,
                   shared: dict[str, float], bar: Any) -> None:
        """One row per seed: its update metrics and episodes, and the run's shared row."""
        frames = self.loop.step * self.action_repeat
        for seed_index, logger in enumerate(self.loggers):
            row = {f"train/{k}": self.seeds.of_seed(v, seed_index) for k, v in metrics.items()}
            row.update(episodes.pop(seed_index))
            logger.log(frames, {**row, **shared})
            if seed_index == 0:
                bar.set_postfix(ret=row.get("train/episode_return", float("nan")),
                                fps=shared.get("perf/env_fps", 0.0),
                                ups=shared.get("perf/updates_per_s", 0.0))

    def _pop_faults(self) -> None:
        for env in (self.env, self.eval_env):   # faults since the last call, train and eval
            self.loop.env_faults += env.pop_faults() if hasattr(env, "pop_faults") else 0

    def _counters(self) -> dict[str, float]:
        self._pop_faults()
        counters = {"progress/frames": self.loop.step * self.action_repeat,
                    "progress/agent_steps": self.loop.step, "progress/updates": self.loop.updates,
                    "progress/episodes": self.loop.episodes, "env/faults": self.loop.env_faults}
        if self.cfg.on_nonfinite == "skip":
            counters["progress/nonfinite_updates"] = self.loop.nonfinite_updates
        return counters

    def _evaluate(self) -> dict[str, float]:
        # eval randomness comes from its own stream, so evaluating never shifts training's
        key = jax.random.fold_in(self.eval_key, self.loop.evals)
        self.loop.evals += 1
        record = (self.cfg.video_every_evals > 0
                  and (self.loop.evals - 1) % self.cfg.video_every_evals == 0)
        reset_seed = eval_reset_seed(self._eval_base_seed, self.loop.evals - 1)
        results, video = evaluate(self.agent, self.act, self.state.agent, self.eval_env,
                                  self.cfg.eval_episodes, key, jnp.asarray(self.loop.step),
                                  record_video=record, groups=self.seeds.eval_groups,
                                  reset_seed=reset_seed)
        frames = self.loop.step * self.action_repeat
        for logger, result in zip(self.loggers, results):
            logger.log(frames, {**{f"eval/{k}": v for k, v in result.items()},
                                **self._counters()})
        if video is not None:
            self.loggers[0].video(frames, "eval/video", video)
            self._report(frames, key)
        self.print(f"[eval] frames={frames} return=" + ", ".join(
            f"{r['return']:.1f} ± {r['return_std']:.1f}" for r in results))
        self._last_eval, self._last_eval_step = results[0], self.loop.step
        return results[0]

    def _report(self, frames: int, key: jax.Array) -> None:
        """Agent-specific videos (e.g. a world model's open-loop predictions), at the video rate."""
        if not hasattr(self.agent, "report") or self.loop.updates == 0 or not self.fused:
            return  # (a host-memory replay would need its batch copied over first: skipped)
        if not hasattr(self, "_report_fn"):
            self._report_fn = jax.jit(
                lambda state, replay, key: self.agent.report(state, self.agent.sample(replay, key), key))
        for name, video in self._report_fn(self.state.agent, self.state.replay, key).items():
            self.loggers[0].video(frames, f"report/{name}", np.asarray(video))
