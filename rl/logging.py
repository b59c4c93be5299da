"""Run logging: local JSONL metrics (always) plus Weights & Biases (offline by default).

wandb is imported lazily, only when a W&B mode other than ``disabled`` is chosen, so machines
without it (the GPU image) can log to local files alone.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import uuid
from typing import Any, Mapping, Sequence

import numpy as np

WANDB_MODES = ("offline", "online", "disabled")


def _to_python(value: Any) -> Any:
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"metric values must be scalars, got shape {arr.shape}")
    item = arr.item()
    if isinstance(item, float) and not math.isfinite(item):
        return str(item)  # JSON has no NaN/inf; keep them visible
    return item


class Logger:
    """Writes ``metrics.jsonl`` (one JSON object per log call) and mirrors it to W&B."""

    def __init__(self, run_dir: str | os.PathLike, config: Mapping[str, Any] | None = None,
                 wandb_mode: str = "offline", project: str = "pixel-mbrl",
                 entity: str | None = None, run_name: str | None = None,
                 resume_step: int | None = None, group: str | None = None,
                 tags: Sequence[str] = ()):
        if wandb_mode not in WANDB_MODES:
            raise ValueError(f"logger.wandb_mode={wandb_mode!r}; allowed: {WANDB_MODES}")
        self.run_dir = pathlib.Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        if resume_step is not None:
            self._truncate_after(resume_step)
        self._file = open(self.path, "a", buffering=1)
        self._wandb = None
        if wandb_mode != "disabled":
            self._wandb = self._init_wandb(wandb_mode, project, entity, run_name, config, group,
                                           list(tags))

    def _truncate_after(self, step: int) -> None:
        """On resume, drop rows logged after the checkpoint so the history is not doubled."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def rewind(self, step: int) -> None:
        """Drops the rows after ``step`` (a resume that fell back to an older checkpoint)."""
        self._file.close()
        self._truncate_after(step)
        self._file = open(self.path, "a", buffering=1)

    def _init_wandb(self, mode, project, entity, run_name, config, group, tags):
        import wandb  # lazy: optional on machines that log locally only

        id_file = self.run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        # "create_new": vmapped seeds keep one W&B run each, open side by side in one process
        return wandb.init(project=project, entity=entity, name=run_name, id=run_id,
                          resume="allow", mode=mode, dir=str(self.run_dir), group=group,
                          tags=tags or None, reinit="create_new", config=dict(config) if config else None)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        row = {"step": int(step), **{k: _to_python(v) for k, v in sorted(metrics.items())}}
        self._file.write(json.dumps(row) + "\n")
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "step"}, step=int(step))

    def video(self, step: int, name: str, frames: np.ndarray, fps: int = 20) -> pathlib.Path:
        """Saves ``frames [T,H,W,C] uint8`` as a GIF under ``videos/`` and logs it to W&B."""
        path = save_video(self.run_dir / "videos" / f"{name.replace('/', '_')}_{int(step):09d}.gif",
                          frames, fps)
        if self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Video(str(path), format="gif")}, step=int(step))
        return path

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def video_suffix() -> str:
    """``.mp4`` where imageio's ffmpeg plugin (the ``imageio-ffmpeg`` package) is installed,
    else ``.gif`` (Pillow, always there)."""
    import importlib.util

    return ".mp4" if importlib.util.find_spec("imageio_ffmpeg") is not None else ".gif"


def save_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 20) -> pathlib.Path:
    """Writes ``frames [T,H,W,C] uint8`` (grey or RGB) as a GIF or MP4, by ``path``'s suffix.

    A GIF stores each frame's duration, and Pillow merges identical consecutive frames into one
    longer frame: its frame count is the summed duration times ``fps``, not its image count."""
    import imageio.v2 as imageio

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8 [T,H,W,C], got {frames.dtype} {frames.shape}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mp4":   # macro_block_size=1: keep small frames (84 px) unresized
        imageio.mimsave(path, list(frames), fps=fps, macro_block_size=1)
    else:
        imageio.mimsave(path, list(frames), duration=1000 / fps, loop=0)
    return path


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a run's ``metrics.jsonl``."""
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
