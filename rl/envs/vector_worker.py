"""The subprocess side of ``rl.envs.vector.VectorEnv``: one worker hosts a block of envs.

An exception in an env's ``reset``/``step`` (a MuJoCo physics error, an ALE error) is not the
worker's end: the env is rebuilt with ``make_fn`` and its result is an ``EnvFault`` carrying the
traceback, so the parent ends that episode and goes on (``VectorEnv`` counts the faults).
"""
from __future__ import annotations

import atexit
import dataclasses
import signal
import traceback
import weakref
from typing import Any, Callable

from rl.envs.base import Env

# Signals a scheduler sends to every process of a job (SLURM: SIGTERM on preemption and at the
# time limit, SIGUSR2 from submitit's --signal). The parent decides when its workers stop --
# after its checkpoint -- and then closes them (or SIGKILLs one that hangs).
IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@dataclasses.dataclass(frozen=True)
class EnvFault:
    """In place of a result: the env raised (``traceback``) and has been rebuilt."""

    traceback: str

    @property
    def summary(self) -> str:
        lines = [line for line in self.traceback.strip().splitlines() if line.strip()]
        return lines[-1] if lines else "unknown error"


def run_command(envs: dict[int, Env], make_fn: Callable[[], Env], i: int, command: str,
                arg: Any) -> Any:
    """Executes one command; an exception rebuilds env ``i`` and returns an ``EnvFault``
    (a failure of ``make_fn`` itself is not caught: then the worker cannot go on)."""
    if command not in ("reset", "step"):
        raise ValueError(f"unknown command {command!r}")
    try:
        return envs[i].reset(arg) if command == "reset" else envs[i].step(arg)
    except Exception:
        fault = EnvFault(traceback.format_exc())
    try:
        envs[i].close()
    except Exception:   # a broken env may fail to close too; it is replaced either way
        pass
    envs[i] = make_fn()
    return fault


def worker(conn, make_fn: Callable[[], Env], indices: range) -> None:
    """Hosts envs ``indices``. Receives ``("run", [(env index, command, arg), ...])`` or
    ``("close", None)``; replies ``("ok", results in order)`` (an ``EnvFault`` for an env that
    raised) or ``("error", [(env index, traceback), ...])`` when an env cannot be (re)built."""
    for sig in IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    envs: dict[int, Env] = {}
    try:
        for i in indices:
            envs[i] = make_fn()
    except Exception:
        conn.send(("error", [(i, traceback.format_exc())]))
        conn.close()
        return
    conn.send(("ok", [(env.spec, tuple(getattr(env, "info_keys", ()))) for env in envs.values()]))
    while True:
        try:
            message, batch = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        if message == "close":
            for env in envs.values():
                env.close()
            conn.send(("ok", None))
            break
        results, errors = [], []
        for i, command, arg in batch:
            try:
                results.append(run_command(envs, make_fn, i, command, arg))
            except Exception:
                errors.append((i, traceback.format_exc()))
        conn.send(("error", errors) if errors else ("ok", results))
    conn.close()


def _blocks(num_envs: int, workers: int) -> list[range]:
    """``workers`` contiguous blocks of env indices whose sizes differ by at most 1."""
    size, extra = divmod(num_envs, workers)
    starts = [w * size + min(w, extra) for w in range(workers + 1)]
    return [range(a, b) for a, b in zip(starts, starts[1:])]


class WorkerPool:
    """The worker processes of a ``VectorEnv``: one block of envs each, one message per step.

    A worker that dies (killed, out of memory, a segfault in native env code) is restarted with
    fresh envs: the commands it had are answered with an ``EnvFault`` and ``lost`` names every
    env of its block (their states are gone), for the caller to reset."""

    def __init__(self, make_fn: Callable[[], Env], num_envs: int, workers: int, context: str):
        if context not in ("spawn", "forkserver"):
            raise ValueError(f"context={context!r} is not allowed; choose 'spawn' or "
                             f"'forkserver' (fork is unsafe once JAX or GL are initialised)")
        import multiprocessing as mp

        self._ctx, self._make_fn = mp.get_context(context), make_fn
        self.blocks = _blocks(num_envs, min(workers, num_envs))
        self.worker_of = [w for w, block in enumerate(self.blocks) for _ in block]
        self.conns: list[Any] = [None] * len(self.blocks)
        self.procs: list[Any] = [None] * len(self.blocks)
        self._unsent: set[int] = set()
        self.lost: set[int] = set()     # envs whose worker was restarted since the last pop
        self._closed = False
        for w in range(len(self.blocks)):
            self._spawn(w)
        # before multiprocessing's own exit hook (atexit runs hooks last-in first-out), whose
        # SIGTERM the workers ignore: an unclosed pool must not hang the interpreter's exit
        atexit.register(_close_at_exit, weakref.ref(self))
        try:
            self.ready = self._ready(range(len(self.blocks)))
        except Exception:
            self.close()
            raise

    def _spawn(self, w: int) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=worker, args=(child, self._make_fn, self.blocks[w]),
                                 daemon=True)
        proc.start()
        child.close()
        self.conns[w], self.procs[w] = parent, proc

    def _ready(self, workers: Any) -> dict[int, Any]:
        """Each started worker's first reply: its envs' (spec, info keys), or its error."""
        specs, errors = {}, []
        for w in workers:
            try:
                status, payload = self.conns[w].recv()
            except (EOFError, OSError):
                errors.append(f"env worker {w} ({self.envs_of(w)}) died while starting")
                continue
            if status == "error":
                errors.extend(f"env {i} (worker {w}) raised:\n{tb}" for i, tb in payload)
            else:
                specs.update(zip(self.blocks[w], payload))
        if errors:
            raise RuntimeError("\n".join(errors))
        return specs

    def envs_of(self, w: int) -> str:
        block = self.blocks[w]
        return f"envs {block.start}-{block.stop - 1}" if len(block) > 1 else f"env {block.start}"

    def by_worker(self, commands: dict[int, Any]) -> dict[int, list[int]]:
        """The env indices of ``commands`` grouped by worker (in increasing order)."""
        groups: dict[int, list[int]] = {}
        for i in sorted(commands):
            groups.setdefault(self.worker_of[i], []).append(i)
        return groups

    def send(self, commands: dict[int, tuple[str, Any]]) -> None:
        """One message to each worker that hosts an env with a command."""
        for w, indices in self.by_worker(commands).items():
            try:
                self.conns[w].send(("run", [(i, *commands[i]) for i in indices]))
            except (BrokenPipeError, OSError):
                self._unsent.add(w)   # dead: answered (with faults) by receive

    def receive(self, commands: dict[int, Any], restart: bool = True) -> dict[int, Any]:
        """The results of ``commands`` by env index: one reply from each worker they went to
        (all are read before raising, to keep the pipes in step); a dead worker's envs get an
        ``EnvFault`` and, with ``restart``, the worker is started again."""
        results, errors = {}, []
        for w, indices in self.by_worker(commands).items():
            try:
                if w in self._unsent:
                    raise EOFError
                status, payload = self.conns[w].recv()
            except (EOFError, OSError):
                fault = EnvFault(f"env worker {w} ({self.envs_of(w)}) died (exit code "
                                 f"{self._exitcode(w)}); restarted it")
                if restart:
                    self._restart(w)
                results.update((i, fault) for i in indices)
                continue
            if status == "error":
                errors.extend(f"env {i} (worker {w}) raised:\n{tb}" for i, tb in payload)
            else:
                results.update(zip(indices, payload))
        if errors:
            raise RuntimeError("\n".join(errors))
        return results

    def _exitcode(self, w: int) -> Any:
        self.procs[w].join(timeout=1.0)
        return self.procs[w].exitcode

    def _restart(self, w: int) -> None:
        self._unsent.discard(w)
        self._stop(w)
        self._spawn(w)
        self._ready([w])
        self.lost.update(self.blocks[w])

    def _stop(self, w: int) -> None:
        conn, proc = self.conns[w], self.procs[w]
        try:
            if proc.is_alive():
                conn.send(("close", None))
                if conn.poll(5.0):
                    conn.recv()
        except (BrokenPipeError, EOFError, OSError):
            pass
        proc.join(timeout=5.0)
        if proc.is_alive():   # SIGKILL: the workers ignore SIGTERM (IGNORED_SIGNALS)
            proc.kill()
            proc.join(timeout=1.0)
        conn.close()

    def close(self) -> None:
        """Asks each worker to exit; kills those that hang."""
        if self._closed:
            return
        self._closed = True
        for w, proc in enumerate(self.procs):
            if proc is not None:
                self._stop(w)


def _close_at_exit(ref: "weakref.ref[WorkerPool]") -> None:
    pool = ref()
    if pool is not None:
        pool.close()
