"""Stopping cleanly on a signal, and finding the checkpoint to pick the run up again from.

``StopSignals`` turns SIGTERM / SIGINT (and SIGUSR1/2 where a handler is already installed,
e.g. submitit's requeue handler) into a flag that the training loop reads once per iteration:
the loop finishes that iteration, writes a checkpoint and returns. A second signal aborts at
once (``KeyboardInterrupt``). After the run has shut down, ``forward()`` hands the signals on
to the handlers that were there before, so submitit still requeues the job (it resumes with
``resume=auto``) -- but only once the checkpoint is on disk.
"""
from __future__ import annotations

import pathlib
import signal
import threading
from typing import Any, Callable

# SLURM (via submitit) announces a time-out or preemption with SIGUSR2 (submitit's --signal);
# these are caught only where some Python handler already owns them, not in plain runs
_CHAINED = (signal.SIGUSR1, signal.SIGUSR2)
EXIT_PREEMPTED = 75   # EX_TEMPFAIL: "try again later" -- the run stopped early, resumable


class StopSignals:
    """Context manager: while inside, the first stop signal only sets ``requested``."""

    def __init__(self, print_fn: Callable[[str], None] = print):
        self.print = print_fn
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return bool(self.received)

    @property
    def name(self) -> str | None:
        return signal.Signals(self.received[0]).name if self.received else None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received:   # the second signal: the user (or the scheduler) means it
            self._restore()
            raise KeyboardInterrupt(f"second stop signal ({signal.Signals(signum).name}): "
                                    "aborting without a checkpoint")
        self.received.append(signum)
        self.print(f"caught {signal.Signals(signum).name}: finishing this iteration, then "
                   "checkpointing and stopping (send it again to abort at once)")

    def __enter__(self) -> "StopSignals":
        # signal handlers can only be set from the main thread (a Trainer run from a worker
        # thread, e.g. a notebook's, simply has no graceful stop)
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGTERM, signal.SIGINT, *_CHAINED):
            previous = signal.getsignal(sig)
            if sig in _CHAINED and not callable(previous):
                continue
            self._previous[sig] = previous
            signal.signal(sig, self._handle)
        return self

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous_restored = dict(self._previous)
        self._previous = {}

    def __exit__(self, *exc: Any) -> None:
        if self._previous:
            self._restore()

    def forward(self) -> None:
        """Calls the earlier Python handler of each received signal (submitit's requeue), except
        Python's own SIGINT handler (which would only raise ``KeyboardInterrupt``)."""
        previous = getattr(self, "_previous_restored", {})
        for sig in self.received:
            handler = previous.get(sig)
            if callable(handler) and handler is not signal.default_int_handler:
                handler(sig, None)


def has_checkpoint(run_dir: str | pathlib.Path) -> bool:
    """Whether ``run_dir`` is a run with at least one finished checkpoint (``resume=auto``).

    Orbax writes a step into ``<step>.orbax-checkpoint-tmp-*`` and renames it to ``<step>``
    when complete, so only all-digit names count; whether that checkpoint is readable is
    decided on restore (``rl.checkpoint.Checkpointer.restore`` falls back to older ones)."""
    run_dir = pathlib.Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    return ((run_dir / "config.yaml").exists() and checkpoints.is_dir()
            and any(p.name.isdigit() for p in checkpoints.iterdir() if p.is_dir()))
