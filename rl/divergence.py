"""Non-finite losses and parameters: found on the device, acted on when the host syncs anyway.

Inside the jitted update (``guard``), every update computes one flag: all its metrics (the
losses) and every float leaf of the new agent state (parameters and optimiser moments, so a
non-finite gradient shows up too) are finite. ``loop.on_nonfinite``:

- ``stop`` (default): the flag is accumulated on the device (``DivergenceMonitor.observe``, no
  sync) and read at log and checkpoint time; a non-finite update stops the run with a
  ``NonFiniteError`` naming the metrics and the step, before any checkpoint of that state is
  written (the last checkpoint on disk is the last good one).
- ``skip``: a non-finite update is discarded on the device (the old state is selected with
  ``jnp.where``) and counted (``progress/nonfinite_updates`` in the logs).
- ``off``: no flag, no check (an agent whose metrics are non-finite by design).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("stop", "skip", "off")
KEY = "nonfinite"   # the fraction of the call's updates that were non-finite (popped by observe)


class NonFiniteError(FloatingPointError):
    """The run produced a non-finite loss or parameter (``loop.on_nonfinite=stop``)."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def guard(mode: str, old: Any, new: Any, metrics: dict[str, Any],
          old_replay: Any = None, new_replay: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """Traced inside the update: ``(state, replay, metrics)`` with ``KEY`` added to the metrics;
    with ``skip`` a non-finite update's state (and written replay) are replaced by the old."""
    if mode == "off":
        return new, new_replay, metrics
    ok = _all_finite(metrics) & _all_finite(new)   # the state only: the replay is large

    def select(a, b):   # a leaf the update passed through is left alone (no copy)
        return a if a is b else jnp.where(ok, a, b)

    if mode == "skip":   # a select, not a branch: both sides exist already
        new = jax.tree.map(select, new, old)
        if new_replay is not None:
            new_replay = jax.tree.map(select, new_replay, old_replay)
    return new, new_replay, {**metrics, KEY: 1.0 - ok.astype(jnp.float32)}


@functools.partial(jax.jit, static_argnums=(0,))
def _accumulate(names: tuple[str, ...], acc: dict[str, jax.Array], metrics: dict[str, Any],
                step: jax.Array) -> dict[str, jax.Array]:
    bad = metrics[KEY] > 0
    finite = jnp.stack([jnp.all(jnp.isfinite(metrics[k])) for k in names]) if names else \
        jnp.ones((0,), bool)
    first = (acc["first_step"] < 0) & bad
    return {"count": acc["count"] + metrics[KEY],
            "first_step": jnp.where(first, step, acc["first_step"]),
            "first_finite": jnp.where(first, finite, acc["first_finite"])}


class DivergenceMonitor:
    """The host side: ``observe`` each update call's metrics (device ops only), ``check`` where
    the loop syncs anyway (log rows, checkpoints, the end)."""

    def __init__(self, mode: str, updates_per_call: int, frames_per_step: int,
                 print_fn: Callable[[str], None] = print):
        if mode not in MODES:
            raise ValueError(f"loop.on_nonfinite={mode!r}; must be one of {MODES}")
        self.mode, self.updates_per_call = mode, updates_per_call
        self.frames_per_step, self.print = frames_per_step, print_fn
        self._names: tuple[str, ...] | None = None
        self._acc: dict[str, jax.Array] | None = None
        self.skipped = 0   # non-finite updates so far (host copy, as of the last check)

    def observe(self, metrics: dict[str, Any], step: int) -> dict[str, Any]:
        """Accumulates the call's flag; returns the metrics without it."""
        if KEY not in metrics:
            return metrics
        metrics = dict(metrics)
        flag = metrics.pop(KEY)
        names = tuple(sorted(metrics))
        if self._acc is None or names != self._names:
            self._names = names
            self._acc = {"count": jnp.zeros((), jnp.float32),
                         "first_step": jnp.asarray(-1, jnp.int32),
                         "first_finite": jnp.ones((len(names),), bool)}
        self._acc = _accumulate(names, self._acc, {**metrics, KEY: flag}, jnp.int32(step))
        return metrics

    def check(self) -> None:
        """Syncs on the accumulated flag; raises ``NonFiniteError`` in ``stop`` mode."""
        if self._acc is None:
            return
        acc = jax.device_get(self._acc)
        self.skipped = int(round(float(acc["count"]) * self.updates_per_call))
        if self.mode != "stop" or int(acc["first_step"]) < 0:
            return
        step = int(acc["first_step"])
        names = [n for n, ok in zip(self._names, np.asarray(acc["first_finite"])) if not ok]
        what = (", ".join(names) if names
                else "the updated parameters / optimiser state (every loss was finite)")
        report = {"step": step, "frames": step * self.frames_per_step, "nonfinite": names,
                  "nonfinite_updates": self.skipped}
        raise NonFiniteError(
            f"non-finite update at agent step {step} ({report['frames']} frames): {what}. "
            "Stopped without checkpointing this state; the last checkpoint is the last good "
            "one (loop.on_nonfinite=skip discards such updates instead)", report)
