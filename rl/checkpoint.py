"""Orbax checkpoints of the whole run: agent state, replay, loop counters and rng.

A checkpoint is two items: ``state`` (one pytree of arrays, restored onto the same devices and
shardings as a freshly initialised run) and ``meta`` (JSON: counters, env action logs, a format
version and the config fingerprint). Anything that does not match is refused with a message.

Crash safety: orbax writes a step into ``<step>.orbax-checkpoint-tmp-<time>`` and renames it to
``<step>`` only once every file is written, so a process killed mid-write (``kill -9``, a node
lost) leaves the previous checkpoints as they were and an ignored temporary directory (removed
when the next Checkpointer opens the directory). A finished checkpoint that is unreadable anyway
(truncated or deleted files) is skipped on restore: ``restore`` warns, moves it aside to
``<step>.corrupt`` and falls back to the one before.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file it writes at INFO

FORMAT_VERSION = 2   # 2: agent states name their networks (nets, opt_states)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used by this run (corrupt, or from another config)."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint whose files cannot be read or do not fit (the previous one may)."""


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"checkpoint keep={keep}; must be >= 1")
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        """Every step saved here (and kept), oldest first."""
        return sorted(int(s) for s in self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        meta = {**meta, "format_version": FORMAT_VERSION}
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def restore(self, like: Any, fingerprint: str | None = None, step: int | None = None,
                warn: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
        """Restores onto the structure, shapes, dtypes and devices of ``like``: ``step``, or
        else the latest checkpoint that can be read, falling back step by step (with a
        ``warn`` naming each unreadable one, which is then moved aside to ``<step>.corrupt``)."""
        if step is not None:
            return self._restore_step(like, fingerprint, step)
        steps = self.all_steps()[::-1]
        if not steps:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        errors: list[tuple[int, CorruptCheckpointError]] = []
        for candidate in steps:
            try:
                restored = self._restore_step(like, fingerprint, candidate)
            except CorruptCheckpointError as err:
                warn(f"warning: {err}; trying the checkpoint before it")
                errors.append((candidate, err))
                continue
            # only now that an older one was read are the newer ones known to be corrupt
            # (all failing alike means a config mismatch, which must not delete anything)
            for bad, _ in errors:
                self._set_aside(bad)
            return restored
        raise errors[0][1]

    def _set_aside(self, step: int) -> None:
        """Renames a corrupt step so it is kept for inspection but never listed again (and the
        resumed run can write that step anew)."""
        path = self.directory / str(step)
        target = path.with_name(f"{step}.corrupt")
        k = 1
        while target.exists():
            target, k = path.with_name(f"{step}.corrupt{k}"), k + 1
        path.rename(target)
        self._manager.reload()

    def _restore_step(self, like: Any, fingerprint: str | None,
                      step: int) -> tuple[Any, dict[str, Any]]:
        path = self.directory / str(step)
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(
                meta=ocp.args.JsonRestore()))["meta"]
        except Exception as err:  # orbax raises many kinds; all mean "unreadable"
            raise CorruptCheckpointError(
                f"checkpoint {path} is unreadable (corrupt or partial): {err}") from err
        if not isinstance(meta, dict):
            raise CorruptCheckpointError(f"checkpoint {path} is unreadable: its meta is {meta!r}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"checkpoint {path} has format {meta.get('format_version')}, "
                                  f"this code reads format {FORMAT_VERSION}")
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"checkpoint {path} was written by a run with a different model/replay config "
                f"(fingerprint {meta.get('fingerprint')} != {fingerprint}); resume it with its own "
                "saved config.yaml")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            state = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract)))["state"]
        except Exception as err:
            raise CorruptCheckpointError(
                f"checkpoint {path} does not match this run's state (different config, or "
                f"corrupt files): {type(err).__name__}: {err}") from err
        return state, meta

    def close(self) -> None:
        self._manager.close()
