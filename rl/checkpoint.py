"""Orbax checkpoints of the whole run: agent state, replay, loop counters and rng.

A checkpoint is two items: ``state`` (one pytree of arrays, restored onto the same devices and
shardings as a freshly initialised run) and ``meta`` (JSON: counters, env action logs, a format
version and the config fingerprint). Anything that does not match is refused with a message.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file it writes at INFO

FORMAT_VERSION = 2   # 2: agent states name their networks (nets, opt_states)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used by this run (corrupt, or from another config)."""


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"checkpoint keep={keep}; must be >= 1")
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=False)
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

    def restore(self, like: Any, fingerprint: str | None = None,
                step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores onto the structure, shapes, dtypes and devices of ``like``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        path = self.directory / str(step)
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(
                meta=ocp.args.JsonRestore()))["meta"]
        except Exception as err:  # orbax raises many kinds; all mean "unreadable"
            raise CheckpointError(f"checkpoint {path} is unreadable (corrupt or partial): {err}") from err
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
            raise CheckpointError(
                f"checkpoint {path} does not match this run's state (different config, or "
                f"corrupt files): {type(err).__name__}: {err}") from err
        return state, meta

    def close(self) -> None:
        self._manager.close()
