"""Collect, update, evaluate, log, checkpoint and resume: the one training loop every agent uses.

Per iteration: the agent acts on the latest frames (one jit), the due updates are dispatched
(one jit, state donated, K updates fused with ``lax.scan``), and only then does the host wait
for the actions and step the environments, so env stepping on CPU overlaps the device update.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rl import replay as replay_lib
from rl.agents.base import Agent, Metrics, is_prioritized
from rl.agents.seed_stack import UPDATE_MODES, SeedStack
from rl.checkpoint import Checkpointer
from rl.core.types import ActionSpec, TimeStep
from rl.evaluate import evaluate
from rl.logging import Logger
from rl.throughput import Throughput


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    frames: int = 100_000                 # training budget in env frames (agent steps x action repeat)
    warmup_frames: int = 4_000            # uniform random actions and no updates before this
    update_every: int = 2                 # agent steps between two update calls
    update_every_frames: Optional[int] = None  # the same in env frames (Dreamer); overrides
    updates_per_call: int = 1             # updates fused with lax.scan in one call
    train_ratio: Optional[float] = None   # replayed steps per agent step (DreamerV3); overrides
    eval_every_frames: int = 10_000
    eval_at_start: bool = True            # also evaluate the untrained agent at frame 0
    eval_episodes: int = 10
    eval_envs: int = 1
    log_every_frames: int = 1_000
    checkpoint_every_frames: int = 100_000  # 0 = only at the end
    checkpoints: bool = True              # false: never save (throwaway runs; no resume)
    keep_checkpoints: int = 2
    replay_capacity: int = 1_000_000      # transitions in total over all envs
    replay_budget_gb: float = 16.0        # larger buffers live in host memory
    video_every_evals: int = 1            # 0 = no eval videos
    fuse_updates: bool = True             # K updates per call in one lax.scan, else K dispatches
    seed_updates: str = "map"             # num_seeds > 1: copies updated in turn (map) or vmapped
    progress: bool = True
    trace_at_frames: int = 0              # >0: a profiler trace of trace_steps loop iterations
    trace_steps: int = 100                # from this frame, into the run dir's trace/

    def validate(self) -> None:
        for name in ("frames", "update_every", "updates_per_call", "eval_episodes", "eval_envs",
                     "log_every_frames", "replay_capacity", "trace_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"loop.{name}={getattr(self, name)}; must be >= 1")
        if self.update_every_frames is not None and self.update_every_frames < 1:
            raise ValueError(f"loop.update_every_frames={self.update_every_frames}; must be >= 1")
        if self.train_ratio is not None and self.train_ratio <= 0:
            raise ValueError(f"loop.train_ratio={self.train_ratio}; must be > 0")
        for name in ("warmup_frames", "eval_every_frames", "checkpoint_every_frames",
                     "video_every_evals", "trace_at_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"loop.{name}={getattr(self, name)}; must be >= 0")
        if self.seed_updates not in UPDATE_MODES:
            raise ValueError(f"loop.seed_updates={self.seed_updates!r}; must be one of "
                             f"{UPDATE_MODES}")


def random_actions(key: jax.Array, spec: ActionSpec, num: int) -> jax.Array:
    if spec.discrete:
        return jax.random.randint(key, (num,), 0, spec.num_actions, dtype=jnp.int32)
    return jax.random.uniform(key, (num, *spec.shape), jnp.float32, spec.low, spec.high)


def _mean_over_updates(metrics: Any) -> Any:
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), metrics)


@jax.jit
def _mean_of_rows(rows: list[Any]) -> Any:
    """Mean of K metric dicts, in one call rather than eager ops per metric."""
    return _mean_over_updates(jax.tree.map(lambda *x: jnp.stack(x), *rows))


def learn_step(agent: Agent, state: Any, replay: Any, key: jax.Array,
               step: jax.Array) -> tuple[Any, Any, Metrics]:
    """One sample + update: ``(state, replay, metrics)``, with the same keys as
    ``update(state, sample(replay, k1), k2, step)``. A prioritised agent
    (``rl.agents.base.PrioritizedAgent``) writes the batch's new priorities into the returned
    replay; any other agent returns ``replay`` itself."""
    key_sample, key_update = jax.random.split(key)
    batch = agent.sample(replay, key_sample)
    if not is_prioritized(agent):
        state, metrics = agent.update(state, batch, key_update, step)
        return state, replay, metrics
    state, metrics, priorities = agent.update_with_priorities(state, batch, key_update, step)
    return state, agent.write_priorities(replay, batch, priorities), metrics


def make_update_fn(agent: Agent, updates_per_call: int, fused_sampling: bool,
                   fuse: bool = True) -> Callable:
    """``(state, replay, key, step) -> (state, replay, metrics)``: ``updates_per_call`` updates
    (``learn_step``) in one call, the agent state donated; metrics averaged over the K updates.

    With the replay on the accelerator, sampling happens inside the same jit (no host round
    trip); a prioritised agent's replay is donated too and comes back with its priorities
    written, any other agent's replay is not touched (the same object comes back). ``fuse``: the
    K updates run in one ``lax.scan``; otherwise the single-update jit is dispatched K times
    (asynchronously; XLA:GPU runs some updates, e.g. Dreamer's, ~2x slower inside a loop body).

    With the replay in host memory, batches are sampled by a CPU jit and copied over; a
    prioritised agent's priorities are then never written, so its sampling stays uniform.
    """
    if not fused_sampling:
        return _host_sampled_update_fn(agent, updates_per_call)
    writes = is_prioritized(agent)

    def updates(state, replay, keys, step):  # one learn_step per key
        if len(keys) == 1:  # XLA:CPU runs convolutions ~10x slower inside a loop body
            state, replay, metrics = learn_step(agent, state, replay, keys[0], step)
        else:
            def body(carry, key):
                state, written = carry
                state, written, metrics = learn_step(agent, state,
                                                     written if writes else replay, key, step)
                return (state, written if writes else None), metrics

            (state, written), metrics = jax.lax.scan(body, (state, replay if writes else None),
                                                     keys)
            replay, metrics = (written if writes else replay), _mean_over_updates(metrics)
        # an untouched replay is not returned: an output cannot alias an undonated input
        return (state, replay, metrics) if writes else (state, metrics)

    def jit_over(split_key: Callable) -> Callable:
        jitted = jax.jit(lambda state, replay, key, step: updates(state, replay, split_key(key),
                                                                  step),
                         donate_argnums=(0, 1) if writes else 0)

        def call(state, replay, key, step):
            if writes:
                return jitted(state, replay, key, step)
            state, metrics = jitted(state, replay, key, step)
            return state, replay, metrics
        return call

    if fuse or updates_per_call == 1:
        return jit_over(lambda key: jax.random.split(key, updates_per_call))
    one = jit_over(lambda key: key[None])

    def dispatched(state, replay, key, step):
        rows = []
        for k in jax.random.split(key, updates_per_call):  # the keys the scan would use
            state, replay, metrics = one(state, replay, k, step)
            rows.append(metrics)
        return state, replay, _mean_of_rows(rows)

    return dispatched


def _host_sampled_update_fn(agent: Agent, updates_per_call: int) -> Callable:
    """``make_update_fn`` with the replay in host memory: K batches sampled by a CPU jit, copied
    to the accelerator and scanned over in one update jit (state donated)."""
    def updates_from_batches(state, batches, key, step):
        def body(state, batch_and_key):
            batch, key = batch_and_key
            return agent.update(state, batch, key, step)

        keys = jax.random.split(key, updates_per_call)
        state, metrics = jax.lax.scan(body, state, (batches, keys))
        return state, _mean_over_updates(metrics)

    update = jax.jit(updates_from_batches, donate_argnums=0)
    sample_many = jax.jit(jax.vmap(agent.sample, in_axes=(None, 0)))

    def host_sampled(state, replay, key, step):
        key_sample, key_update = jax.random.split(key)
        replay_device = jax.tree.leaves(replay)[0].devices().pop()
        keys = jax.device_put(jax.random.split(key_sample, updates_per_call), replay_device)
        batches = jax.device_put(sample_many(replay, keys), jax.devices()[0])
        state, metrics = update(state, batches, key_update, step)
        return state, replay, metrics

    return host_sampled


@dataclasses.dataclass
class LoopState:
    """Host-side loop counters and the live env/acting state (part of every checkpoint)."""

    step: int = 0               # agent steps, summed over envs
    updates: int = 0
    episodes: int = 0
    evals: int = 0


@flax.struct.dataclass
class TrainerState:
    """Everything on the device that a run carries from step to step (and checkpoints)."""

    agent: Any       # the agent's train state (a SeedStack of them with num_seeds > 1)
    replay: Any      # ``rl.replay.ReplayState``
    key: jax.Array   # the loop's rng
    carry: Any       # the agent's acting memory for every env


class Trainer:
    """Owns the pieces of one run; ``run()`` trains until the frame budget is spent.

    ``num_seeds > 1`` trains that many independent copies of the agent in this one process
    (``rl.agents.seed_stack.SeedStack``): ``env`` and ``eval_env`` then hold ``num_seeds`` equal
    blocks of envs, ``logger`` is a list with one logger per copy, and every counter, budget and
    replay capacity in ``cfg`` is per copy.
    """

    def __init__(self, *, agent: Agent, env: Any, eval_env: Any, cfg: LoopConfig, seed: int,
                 logger: Logger | list[Logger], checkpointer: Checkpointer | None,
                 fingerprint: str = "", print_fn: Callable[[str], None] = print,
                 num_seeds: int = 1, trace_dir: Optional[str] = None):
        cfg.validate()
        self.num_seeds = num_seeds
        self.loggers = list(logger) if isinstance(logger, (list, tuple)) else [logger]
        if len(self.loggers) != num_seeds:
            raise ValueError(f"num_seeds={num_seeds} needs one logger per seed, got "
                             f"{len(self.loggers)}")
        for name, e in (("env", env), ("eval_env", eval_env)):
            if e.num_envs % num_seeds:
                raise ValueError(f"{name} has {e.num_envs} envs; num_seeds={num_seeds} needs a "
                                 f"multiple of it (one equal block per seed)")
        if num_seeds > 1:
            agent = SeedStack(agent, num_seeds, cfg.seed_updates)
        self.agent, self.env, self.eval_env, self.cfg = agent, env, eval_env, cfg
        self.checkpointer, self.fingerprint = checkpointer, fingerprint
        self.trace = _LoopTrace(trace_dir, cfg.trace_at_frames // env.spec.action_repeat,
                                cfg.trace_steps, print_fn) if cfg.trace_at_frames else None
        self.print = print_fn
        self.spec = env.spec
        self.total_envs = env.num_envs
        self.num_envs = env.num_envs // num_seeds   # per seed: loop counters are per seed
        self.action_repeat = self.spec.action_repeat
        # experiments.train cuts the per-seed capacity to the frame budget
        capacity = cfg.replay_capacity * num_seeds
        budget = int(cfg.replay_budget_gb * 2**30)
        self.replay_device = replay_lib.choose_device(self.spec, capacity, budget,
                                                      self.total_envs)
        self.print(f"replay: {replay_lib.describe(self.spec, capacity, self.total_envs)} "
                   f"on {self.replay_device}")
        self.fused = self.replay_device == jax.devices()[0]
        self.act = jax.jit(self.agent.act, static_argnames=("explore",))
        self.update = make_update_fn(self.agent, cfg.updates_per_call, self.fused,
                                     cfg.fuse_updates)
        if is_prioritized(self.agent) and not self.fused:
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
            agent=jax.device_put(self.agent.init(init_key), device),
            replay=replay_lib.init(self.spec, capacity, self.total_envs, self.replay_device,
                                   priority_groups=num_seeds),
            key=key,
            carry=jax.device_put(self.agent.initial_carry(self.total_envs), device))
        self.loop = LoopState()
        self.timestep: TimeStep | None = None
        self._last_eval: dict[str, float] = {}
        self._last_eval_step = -1

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        """Agent state, replay, rng and counters; the envs are rebuilt on restore by replaying
        the actions of their current episodes (seeded resets make that exact)."""
        if self.checkpointer is None or self.checkpointer.latest_step() == self.loop.step:
            return
        env_state = self.env.resume_state()
        meta = {"loop": dataclasses.asdict(self.loop), "fingerprint": self.fingerprint,
                "env": {"episode_index": env_state["episode_index"].tolist(),
                        "chain_start": env_state["chain_start"].tolist(),
                        "actions_per_env": [a.tolist() for a in env_state["actions_per_env"]]}}
        self.checkpointer.save(self.loop.step, self.state, meta)

    def restore(self) -> None:
        self.state, meta = self.checkpointer.restore(self.state, fingerprint=self.fingerprint)
        self.loop = LoopState(**meta["loop"])
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
        cfg = self.cfg
        if cfg.train_ratio is not None:
            replayed = getattr(self.agent, "replayed_steps_per_update", None)
            if replayed is None:
                raise ValueError(f"loop.train_ratio needs an agent that replays sequences; "
                                 f"{type(self.agent).__name__} does not")
            return max(1, round(replayed * cfg.updates_per_call / cfg.train_ratio))
        if cfg.update_every_frames is not None:
            return max(1, cfg.update_every_frames // self.action_repeat)
        return cfg.update_every

    def run(self) -> dict[str, float]:
        """Trains to the frame budget; returns the final evaluation (seed 0's with several
        seeds; every seed's is in its own log)."""
        cfg, loop = self.cfg, self.loop
        update_every = self.update_every()
        if self.timestep is None:
            self.timestep = self.env.reset()
            self._add(self.timestep, np.zeros((self.total_envs, *self.spec.action.shape),
                                              self.spec.action.dtype))
        total_steps = cfg.frames // self.action_repeat
        warmup_steps = cfg.warmup_frames // self.action_repeat
        # never sample before every env holds enough steps for one batch element
        learning_starts = max(warmup_steps,
                              self.num_envs * (getattr(self.agent, "min_replay_steps", 1) + 1))
        perf = Throughput(self.action_repeat, self.num_seeds)   # env steps summed over all envs
        bar = _progress(cfg.progress, total_steps * self.action_repeat, loop.step * self.action_repeat)
        metrics = {}
        episodes = _EpisodeStats(self.num_seeds, self.num_envs)
        next_log = _next_multiple(loop.step, cfg.log_every_frames // self.action_repeat)
        next_eval = _next_multiple(loop.step, max(cfg.eval_every_frames // self.action_repeat, 1))
        next_ckpt = _next_multiple(loop.step, max(cfg.checkpoint_every_frames // self.action_repeat, 1))
        if loop.step == 0 and cfg.eval_every_frames and cfg.eval_at_start:
            self._evaluate()
        while loop.step < total_steps:
            if self.trace is not None:
                self.trace.tick(loop.step, self.state)
            ts = self.timestep
            key_act, key_rand, key_update = self._step_keys()
            step = np.int32(loop.step)
            action, carry = self.act(self.state.agent, self.state.carry, jnp.asarray(ts.obs),
                                     jnp.asarray(ts.is_first), key_act, step, explore=True)
            self.state = self.state.replace(carry=carry)
            if loop.step < warmup_steps:
                action = self.random_actions(key_rand, self.spec.action, self.total_envs)
            calls = (loop.step + self.num_envs) // update_every - loop.step // update_every
            if loop.step >= learning_starts and calls > 0:
                for key in jax.random.split(key_update, calls):
                    perf.start_update()
                    agent_state, replay, metrics = self.update(self.state.agent,
                                                               self.state.replay, key, step)
                    self.state = self.state.replace(agent=agent_state, replay=replay)
                    perf.end_update(cfg.updates_per_call, metrics)
                    loop.updates += cfg.updates_per_call
            action = np.asarray(action)        # waits for act only; the update keeps running
            self.env.step_async(action)
            self.timestep = ts = self.env.step_wait()
            self._add(ts, action)
            loop.step += self.num_envs
            perf.env_steps(self.total_envs)
            bar.update(self.num_envs * self.action_repeat)
            loop.episodes += episodes.add(ts)
            if loop.step >= next_log:
                next_log = _next_multiple(loop.step, cfg.log_every_frames // self.action_repeat)
                shared = {**perf.report(), **self._counters()}
                metrics = jax.device_get(metrics)   # fetched here, not per step
                for seed_index, logger in enumerate(self.loggers):
                    row = {f"train/{k}": self._of_seed(v, seed_index) for k, v in metrics.items()}
                    row.update(episodes.pop(seed_index))
                    logger.log(loop.step * self.action_repeat, {**row, **shared})
                    if seed_index == 0:
                        bar.set_postfix(ret=row.get("train/episode_return", float("nan")),
                                        fps=shared.get("perf/env_fps", 0.0),
                                        ups=shared.get("perf/updates_per_s", 0.0))
            if cfg.eval_every_frames and loop.step >= next_eval:
                next_eval = _next_multiple(loop.step, cfg.eval_every_frames // self.action_repeat)
                self._evaluate()
            if cfg.checkpoint_every_frames and loop.step >= next_ckpt:
                next_ckpt = _next_multiple(loop.step, cfg.checkpoint_every_frames // self.action_repeat)
                self.save()
        if self.trace is not None:
            self.trace.finish(self.state)
        self.save()
        final = self._last_eval
        if cfg.eval_every_frames and self._last_eval_step != loop.step:
            final = self._evaluate()
        bar.close()
        return final

    def _of_seed(self, value: Any, seed_index: int) -> Any:
        return value[seed_index] if self.num_seeds > 1 else value

    def _counters(self) -> dict[str, float]:
        return {"progress/frames": self.loop.step * self.action_repeat,
                "progress/agent_steps": self.loop.step, "progress/updates": self.loop.updates,
                "progress/episodes": self.loop.episodes}

    def _evaluate(self) -> dict[str, float]:
        # eval randomness comes from its own stream, so evaluating never shifts training's
        key = jax.random.fold_in(self.eval_key, self.loop.evals)
        self.loop.evals += 1
        record = (self.cfg.video_every_evals > 0
                  and (self.loop.evals - 1) % self.cfg.video_every_evals == 0)
        results, video = evaluate(self.agent, self.act, self.state.agent, self.eval_env,
                                  self.cfg.eval_episodes, key, jnp.asarray(self.loop.step),
                                  record_video=record, groups=self.num_seeds)
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


class _EpisodeStats:
    """Returns, lengths and successes of finished training episodes, per seed (env block)."""

    def __init__(self, num_seeds: int, envs_per_seed: int):
        self.envs_per_seed = envs_per_seed
        self.rows: list[dict[str, list[float]]] = [
            {"episode_return": [], "episode_length": [], "success": []} for _ in range(num_seeds)]

    def add(self, ts: TimeStep) -> int:
        finished = np.flatnonzero(ts.is_last)
        for i in finished:
            row = self.rows[i // self.envs_per_seed]
            row["episode_return"].append(float(ts.info["episode_return"][i]))
            row["episode_length"].append(float(ts.info["episode_length"][i]))
            if "episode_success" in ts.info:
                row["success"].append(float(ts.info["episode_success"][i]))
        return len(finished)

    def pop(self, seed_index: int) -> dict[str, float]:
        row = self.rows[seed_index]
        out = {f"train/{k}": float(np.mean(v)) for k, v in row.items() if v}
        for v in row.values():
            v.clear()
        return out


class _LoopTrace:
    """A jax.profiler trace of ``steps`` loop iterations from agent step ``start`` on (where
    the step's time goes: act, update, replay add, env), with the wall clock per iteration."""

    def __init__(self, trace_dir: Optional[str], start: int, steps: int,
                 print_fn: Callable[[str], None]):
        if trace_dir is None:
            raise ValueError("loop.trace_at_frames > 0 needs a trace directory (the Trainer's "
                             "trace_dir; experiments.train passes <run dir>/trace)")
        self.dir, self.start, self.steps, self.print = trace_dir, start, steps, print_fn
        self.iterations, self.t0, self.done = 0, 0.0, False

    def tick(self, step: int, state: Any) -> None:
        """Called at the top of every loop iteration."""
        if self.done or step < self.start:
            return
        if self.iterations == 0:
            jax.block_until_ready(state)
            options = jax.profiler.ProfileOptions()
            options.python_tracer_level = 0     # Python function events would slow the loop
            jax.profiler.start_trace(self.dir, create_perfetto_trace=True,
                                     profiler_options=options)
            self.t0 = time.perf_counter()
        elif self.iterations == self.steps:
            return self.finish(state)
        self.iterations += 1

    def finish(self, state: Any) -> None:
        """Stops a running trace (also when the run ends first, with the iterations done)."""
        if self.done or self.iterations == 0:
            return
        jax.block_until_ready(state)
        wall_ms = 1e3 * (time.perf_counter() - self.t0) / self.iterations
        jax.profiler.stop_trace()
        self.done = True
        with open(os.path.join(self.dir, "loop.json"), "w") as f:
            json.dump({"start_step": self.start, "iterations": self.iterations,
                       "wall_ms_per_iteration": wall_ms}, f)
        self.print(f"trace: {self.iterations} loop iterations from step {self.start}, "
                   f"{wall_ms:.2f} ms each, in {self.dir}")


def _next_multiple(value: int, every: int) -> int:
    every = max(every, 1)
    return (value // every + 1) * every


class _NoBar:
    def update(self, n): pass
    def set_postfix(self, **kw): pass
    def close(self): pass


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    import sys

    return tqdm(total=total, initial=initial, unit="frame", unit_scale=True, dynamic_ncols=True,
                mininterval=1.0 if sys.stderr.isatty() else 30.0)
