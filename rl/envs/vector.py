"""N environments stepped together, with auto-reset, deterministic episode seeds and replay-restore.

- Auto-reset: the ``step`` after an ``is_last`` step returns the first step of a new episode for
  that env (``is_first``, reward 0, discount 1); the action passed for it is ignored.
- Seeds: episode ``k`` of env ``i`` is reset with ``seed_for(seed, i, k)``. ``reset()`` restarts
  that schedule at ``k = 0``, so the same ``VectorEnv`` gives the same episodes after every
  ``reset()`` (``reset(seed)`` moves to another schedule: each evaluation passes its own,
  ``rl.evaluate.eval_reset_seed``, the same whether the run was resumed or not).
- Restore: ``restore(episode_index, actions_per_env)`` rebuilds every env's state by resetting it
  with that episode's seed and replaying the actions taken since the episode's first step
  (exactly what a resumed run needs). Atari with ``terminal_on_life_loss`` continues a game across
  "episodes" (soft resets); there the replay must start at the last hard reset: pass
  ``chain_start`` too, or checkpoint ``resume_state()``, which tracks both.
- Infos (arrays of shape [N]): the env's ``info_keys`` every step (bools as bool, numbers as
  float32); ``episode_return`` and ``episode_length`` (agent steps) on ``is_last``, NaN elsewhere;
  where the env reports ``success``: ``episode_success`` (1.0 if any step of the episode
  succeeded) and, with ``success_frames``, ``episode_success_frames`` (their sum), NaN elsewhere.
- ``parallel=True`` (and N > 1) runs the envs in ``workers`` subprocesses ('spawn' context, Pipes;
  ``workers=None``: one per env; at most N), each hosting a contiguous block of envs (block sizes
  differ by at most 1). A vector step sends each worker one message with the commands of its
  envs and reads one reply with all their results (``rl/envs/vector_worker.py``). ``make_fn`` must be picklable
  (e.g. ``functools.partial(rl.envs.make, name, ...)``) and a script that builds a parallel
  VectorEnv needs the ``if __name__ == "__main__":`` guard (spawn re-imports the main module).
  ``step_async`` / ``step_wait`` let the caller overlap its own work with env stepping
  (in-process, the work happens in ``step_wait``).
- Faults: an exception in an env's ``step`` (a MuJoCo physics error, an ALE error) or a worker
  process that dies ends the affected episodes instead of the run: the env (or the whole worker)
  is rebuilt, the step returns ``is_last`` (a truncation: discount 1, the return so far) and the
  next step resets it with the next episode's seed. A failed reset is retried. Faults are
  counted (``faults``, ``pop_faults()``; the loop logs ``env/faults``) and printed; an env that
  faults ``max_consecutive_faults`` times in a row, or one that cannot be rebuilt, raises.
  ``restore`` tolerates no step fault (its replay must be exact).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import numpy as np

from rl.envs.base import Env, check_positive_int
from rl.core.types import EnvSpec, TimeStep
from rl.envs.vector_worker import EnvFault, WorkerPool, run_command

Command = tuple[str, Any]  # ("reset", seed) | ("step", action)


def seed_for(base_seed: int, env_index: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of env ``env_index`` (a 32-bit integer)."""
    if min(base_seed, env_index, episode) < 0:
        raise ValueError(f"seed_for needs non-negative integers, got "
                         f"({base_seed}, {env_index}, {episode})")
    state = np.random.SeedSequence([int(base_seed), int(env_index), int(episode)])
    return int(state.generate_state(1)[0])


def _check_base_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class VectorEnv:
    """``num_envs`` copies of ``make_fn()`` behind a batched ``TimeStep`` interface."""

    def __init__(self, make_fn: Callable[[], Env], num_envs: int, seed: int,
                 parallel: bool = False, context: str = "spawn", workers: int | None = None,
                 max_consecutive_faults: int = 3):
        self.num_envs = check_positive_int("num_envs", num_envs)
        self.seed = _check_base_seed(seed)
        self.parallel = bool(parallel) and self.num_envs > 1
        workers = self.num_envs if workers is None else check_positive_int("workers", workers)
        self.max_consecutive_faults = check_positive_int("max_consecutive_faults",
                                                         max_consecutive_faults)
        self._make_fn = make_fn
        self._envs: list[Env] = []
        self._pool: WorkerPool | None = None
        self._closed = False
        self._pending: dict[int, Command] | None = None
        self.faults = 0                  # env faults so far (see the module docstring)
        self._unreported_faults = 0
        self._fault_streak = np.zeros(self.num_envs, np.int64)
        if self.parallel:
            self._pool = WorkerPool(make_fn, self.num_envs, workers, context)
            specs_keys = [self._pool.ready[i] for i in range(self.num_envs)]
        else:
            self._envs = [make_fn() for _ in range(self.num_envs)]
            specs_keys = [(e.spec, tuple(getattr(e, "info_keys", ()))) for e in self._envs]
        self.spec: EnvSpec = specs_keys[0][0]
        self.info_keys: tuple[str, ...] = specs_keys[0][1]
        for i, (spec, keys) in enumerate(specs_keys):
            if spec != self.spec or keys != self.info_keys:
                self.close()
                raise ValueError(f"env {i} differs from env 0: {spec}, {keys} vs "
                                 f"{self.spec}, {self.info_keys}")
        n = self.num_envs
        self.episode_index = np.full(n, -1, np.int64)  # current episode of each env
        self.chain_start = np.full(n, -1, np.int64)    # episode of each env's last hard reset
        self._chain_actions: list[list[np.ndarray]] = [[] for _ in range(n)]
        self._needs_reset = np.ones(n, bool)
        self._return = np.zeros(n, np.float64)
        self._length = np.zeros(n, np.int64)
        self._success_any = np.zeros(n, bool)
        self._success_frames = np.zeros(n, np.int64)
        self._last_rows: list[dict[str, Any] | None] = [None] * n
        self._started = False

    # ------------------------------------------------------------------ workers and faults
    def _execute(self, commands: dict[int, Command]) -> dict[int, Any]:
        """Results by env index; an ``EnvFault`` for an env that raised (and was rebuilt)."""
        if self.parallel:
            self._pool.send(commands)
            return self._receive(commands)
        return {i: run_command(self._envs, self._make_fn, i, cmd, arg)
                for i, (cmd, arg) in commands.items()}

    def _receive(self, commands: dict[int, Command]) -> dict[int, Any]:
        results = self._pool.receive(commands)
        for i in sorted(self._pool.lost):   # a restarted worker's envs start from scratch
            self._needs_reset[i] = True
        self._pool.lost.clear()
        return results

    def _settle(self, commands: dict[int, Command], results: dict[int, Any],
                tolerate_steps: bool = True) -> dict[int, dict[str, Any]]:
        """The rows of executed commands: a faulted reset is retried (same seed), a faulted
        step ends its episode (a truncation, ``_fault_row``)."""
        rows = {}
        for i in sorted(commands):
            command, result = commands[i][0], results[i]
            while isinstance(result, EnvFault):
                self._count_fault(i, command, result)
                if command == "step":
                    if not tolerate_steps:
                        raise RuntimeError(f"env {i} faulted while replaying its actions:\n"
                                           f"{result.traceback}")
                    break
                result = self._execute({i: commands[i]})[i]
            if isinstance(result, EnvFault):
                rows[i] = self._fault_row(i)
            else:   # a reset does not end a streak: a bad action faults every other step
                self._fault_streak[i] = 0 if command == "step" else self._fault_streak[i]
                rows[i] = self._absorb(i, command, result)
        return rows

    def _count_fault(self, i: int, command: str, fault: EnvFault) -> None:
        self.faults += 1
        self._unreported_faults += 1
        self._fault_streak[i] += 1
        if self._fault_streak[i] >= self.max_consecutive_faults:
            raise RuntimeError(f"env {i} faulted {self._fault_streak[i]} time(s) in a row "
                               f"(max_consecutive_faults), last in {command}:\n"
                               f"{fault.traceback}")
        print(f"warning: env {i} faulted in {command} ({fault.summary}); it was rebuilt and "
              f"its episode {self.episode_index[i]} ended (fault {self.faults})",
              file=sys.stderr)

    def _fault_row(self, i: int) -> dict[str, Any]:
        """A faulted step: the last observation again, reward 0, the episode truncated (its
        statistics those of the steps before the fault); the next step resets the env."""
        self._needs_reset[i] = True
        last = self._last_rows[i]
        info = dict(last["info"])
        info["episode_return"] = self._return[i]
        info["episode_length"] = float(self._length[i])
        if "episode_success" in info:
            info["episode_success"] = float(self._success_any[i])
        if "episode_success_frames" in info:
            info["episode_success_frames"] = float(self._success_frames[i])
        row = {**last, "reward": 0.0, "discount": 1.0, "is_first": False, "is_last": True,
               "is_terminal": False, "info": info}
        self._last_rows[i] = row
        return row

    def pop_faults(self) -> int:
        """Faults since the last call (the loop's ``env/faults`` counter)."""
        n, self._unreported_faults = self._unreported_faults, 0
        return n

    # ------------------------------------------------------------------ per-env logic
    def _plan(self, i: int, action: Any) -> Command:
        """Reset if the last step ended the episode, else step (and log the action)."""
        if self._needs_reset[i]:
            self.episode_index[i] += 1
            return ("reset", seed_for(self.seed, i, int(self.episode_index[i])))
        self._chain_actions[i].append(action)
        return ("step", action)

    def _absorb(self, i: int, command: str, result: Any) -> dict[str, Any]:
        nan = float("nan")
        if command == "reset":
            obs, info = result
            if not info.get("soft_reset", False):
                self.chain_start[i] = self.episode_index[i]
                self._chain_actions[i] = []
            self._needs_reset[i] = False
            self._return[i], self._length[i] = 0.0, 0
            self._success_any[i], self._success_frames[i] = False, 0
            reward, terminated, last = 0.0, False, False
        else:
            obs, reward, terminated, truncated, info = result
            reward, terminated = float(reward), bool(terminated)
            last = terminated or bool(truncated)
            self._needs_reset[i] = last
            self._return[i] += reward
            self._length[i] += 1
            self._success_any[i] |= bool(info.get("success", False))
            self._success_frames[i] += int(info.get("success_frames", 0))
        if obs.shape != self.spec.obs_shape or obs.dtype != np.uint8:
            raise RuntimeError(f"env {i} returned obs {obs.shape} {obs.dtype}; the spec says "
                               f"{self.spec.obs_shape} uint8")
        row = {"obs": obs, "reward": reward, "discount": 0.0 if terminated else 1.0,
               "is_first": command == "reset", "is_last": last, "is_terminal": terminated,
               "info": {key: info[key] for key in self.info_keys}}
        stats = {"episode_return": self._return[i] if last else nan,
                 "episode_length": float(self._length[i]) if last else nan}
        if "success" in self.info_keys:
            stats["episode_success"] = float(self._success_any[i]) if last else nan
        if "success_frames" in self.info_keys:
            stats["episode_success_frames"] = float(self._success_frames[i]) if last else nan
        row["info"].update(stats)
        self._last_rows[i] = row
        return row

    def _idle_row(self, i: int) -> dict[str, Any]:
        """An env that was not stepped: its last observation and infos, reward 0, no
        boundary, episode statistics NaN."""
        last = self._last_rows[i]
        info = {k: float("nan") if k.startswith("episode_") else v
                for k, v in last["info"].items()}
        return {**last, "reward": 0.0, "discount": 1.0, "is_first": False, "is_last": False,
                "is_terminal": False, "info": info}

    def _batch(self, rows: Sequence[dict[str, Any]]) -> TimeStep:
        info = {}
        for key in rows[0]["info"]:
            values = np.asarray([row["info"][key] for row in rows])
            info[key] = values if values.dtype == bool else values.astype(np.float32)
        return TimeStep(
            obs=np.stack([row["obs"] for row in rows]),
            reward=np.asarray([row["reward"] for row in rows], np.float32),
            discount=np.asarray([row["discount"] for row in rows], np.float32),
            is_first=np.asarray([row["is_first"] for row in rows], bool),
            is_last=np.asarray([row["is_last"] for row in rows], bool),
            is_terminal=np.asarray([row["is_terminal"] for row in rows], bool),
            info=info)

    def _check_actions(self, actions: Any) -> np.ndarray:
        spec = self.spec.action
        actions = np.asarray(actions)
        expected = (self.num_envs, *spec.shape)
        if actions.shape != expected:
            raise ValueError(f"{self.spec.name}: actions must have shape {expected}, got "
                             f"{actions.shape}")
        if spec.discrete and not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"{self.spec.name}: discrete actions must be integers, got "
                             f"{actions.dtype}")
        return actions.astype(spec.dtype, copy=True)

    # ------------------------------------------------------------------ public API
    def reset(self, seed: int | None = None) -> TimeStep:
        """First steps of episode 0 of every env (optionally under a new base seed)."""
        self._check_open()
        if self._pending is not None:
            self.step_wait()
        if seed is not None:
            self.seed = _check_base_seed(seed)
        self.episode_index[:] = -1
        self._needs_reset[:] = True
        commands = {i: self._plan(i, None) for i in range(self.num_envs)}
        rows = self._settle(commands, self._execute(commands))
        self._started = True
        return self._batch([rows[i] for i in range(self.num_envs)])

    def step_async(self, actions: np.ndarray, active: np.ndarray | None = None) -> None:
        """Starts one step of every env (an auto-reset for those whose episode ended).

        ``active`` (bool [N], default all): only those envs step; the others stay where they
        are and ``step_wait`` repeats their last observation with reward 0 and no episode
        boundary (evaluation stops stepping envs that have played their episodes)."""
        self._check_open()
        if not self._started:
            raise RuntimeError("call reset() (or restore()) before step_async()")
        if self._pending is not None:
            raise RuntimeError("step_async() called twice without step_wait()")
        actions = self._check_actions(actions)
        if active is None:
            indices = range(self.num_envs)
        else:
            active = np.asarray(active)
            if active.shape != (self.num_envs,) or active.dtype != bool:
                raise ValueError(f"{self.spec.name}: active must be a bool array of shape "
                                 f"({self.num_envs},), got {active.dtype} {active.shape}")
            indices = np.flatnonzero(active).tolist()
        commands = {i: self._plan(i, actions[i]) for i in indices}
        if self.parallel:
            self._pool.send(commands)
        self._pending = commands

    def step_wait(self) -> TimeStep:
        if self._pending is None:
            raise RuntimeError("step_wait() called without step_async()")
        commands, self._pending = self._pending, None
        if self.parallel:
            results = self._receive(commands)
        else:
            results = self._execute(commands)
        rows = self._settle(commands, results)
        return self._batch([rows[i] if i in commands else self._idle_row(i)
                            for i in range(self.num_envs)])

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> TimeStep:
        self.step_async(actions, active)
        return self.step_wait()

    def resume_state(self) -> dict[str, Any]:
        """What ``restore`` needs to rebuild the current env states (for checkpoints)."""
        shape = self.spec.action.shape
        dtype = self.spec.action.dtype
        return {"episode_index": self.episode_index.copy(),
                "chain_start": self.chain_start.copy(),
                "actions_per_env": [np.asarray(a, dtype).reshape(len(a), *shape)
                                    for a in self._chain_actions]}

    def restore(self, episode_index: Sequence[int] | np.ndarray,
                actions_per_env: Sequence[np.ndarray],
                chain_start: Sequence[int] | np.ndarray | None = None) -> TimeStep:
        """Rebuilds each env's state: reset with the seed of episode ``chain_start[i]``
        (default ``episode_index[i]``), replay ``actions_per_env[i]`` (the actions of the steps
        that were not ``is_first``), auto-resetting in between, until episode
        ``episode_index[i]``. Returns the last ``TimeStep`` the original run saw."""
        self._check_open()
        if self._pending is not None:
            self.step_wait()
        n = self.num_envs
        target = np.asarray(episode_index, np.int64).reshape(-1)
        start = target if chain_start is None else np.asarray(chain_start, np.int64).reshape(-1)
        if target.shape != (n,) or start.shape != (n,) or len(actions_per_env) != n:
            raise ValueError(f"restore needs {n} episode indices, chain starts and action "
                             f"arrays; got {target.shape}, {start.shape}, {len(actions_per_env)}")
        if np.any(start < 0) or np.any(start > target):
            raise ValueError(f"need 0 <= chain_start <= episode_index, got {start} and {target}")
        queues = [list(self._check_replay(i, a)) for i, a in enumerate(actions_per_env)]
        self.episode_index[:] = start - 1
        self._needs_reset[:] = True
        rows: list[dict[str, Any] | None] = [None] * n
        while True:
            commands = {}
            for i in range(n):
                if self._needs_reset[i] and (rows[i] is None or self.episode_index[i] < target[i]):
                    commands[i] = self._plan(i, None)
                elif queues[i]:
                    commands[i] = self._plan(i, queues[i].pop(0))
            if not commands:
                break
            for i, row in self._settle(commands, self._execute(commands),
                                       tolerate_steps=False).items():
                rows[i] = row
        wrong = np.flatnonzero(self.episode_index != target)
        if wrong.size:
            raise ValueError(f"replayed actions end in episodes {self.episode_index[wrong]} for "
                             f"envs {wrong}, expected {target[wrong]}: the action lists do not "
                             f"match the episode indices")
        self._started = True
        return self._batch(rows)

    def _check_replay(self, i: int, actions: Any) -> np.ndarray:
        spec = self.spec.action
        actions = np.asarray(actions)
        if actions.size == 0:
            return np.zeros((0, *spec.shape), spec.dtype)
        if actions.shape[1:] != spec.shape:
            raise ValueError(f"env {i}: replay actions must have shape [T, *{spec.shape}], got "
                             f"{actions.shape}")
        return actions.astype(spec.dtype)

    # ------------------------------------------------------------------ shutdown
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this VectorEnv is closed")

    def close(self) -> None:
        """Closes every env; workers are asked to exit, then killed if they hang."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None and self._pending is not None:
            try:  # drain the replies of an unfinished step so that "close" is answered next
                self._pool.receive(self._pending, restart=False)
            except RuntimeError:
                pass
        self._pending = None
        for env in self._envs:
            env.close()
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> "VectorEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
