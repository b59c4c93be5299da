"""Throughput metrics: env frames/s, updates/s, compile time and device memory."""
from __future__ import annotations

import time
from typing import Any

import jax


class Throughput:
    """``env_steps(n)`` counts single-env steps (n envs stepped once = n), each worth
    ``frames_per_env_step`` frames (the action repeat). ``perf/env_fps`` sums the frames of all
    envs; with ``seeds`` > 1 seed copies in the process (``num_seeds``), ``perf/env_fps_per_seed``
    is one copy's rate (the rate at which each seed's run advances)."""

    def __init__(self, frames_per_env_step: int, seeds: int = 1):
        if seeds < 1:
            raise ValueError(f"seeds={seeds}; must be >= 1")
        self.frames_per_env_step = frames_per_env_step
        self.seeds = seeds
        self._t0 = time.perf_counter()
        self._env_steps = 0
        self._updates = 0
        self._compile_s: float | None = None
        self._update_start = 0.0

    def env_steps(self, n: int) -> None:
        self._env_steps += n

    def start_update(self) -> None:
        self._update_start = time.perf_counter()

    def end_update(self, n: int, metrics: Any) -> None:
        if self._compile_s is None:  # the first call compiles: wait for it once to time it
            jax.block_until_ready(metrics)
            self._compile_s = time.perf_counter() - self._update_start
        self._updates += n

    def report(self) -> dict[str, float]:
        now = time.perf_counter()
        dt = max(now - self._t0, 1e-9)
        row = {"perf/env_fps": self._env_steps * self.frames_per_env_step / dt,
               "perf/updates_per_s": self._updates / dt}
        if self.seeds > 1:   # each seed's log gets the shared row: say what one copy achieved
            row["perf/env_fps_per_seed"] = row["perf/env_fps"] / self.seeds
        if self._compile_s is not None:
            row["perf/update_compile_s"] = self._compile_s
        row.update(device_memory())
        self._t0, self._env_steps, self._updates = now, 0, 0
        return row


def device_memory() -> dict[str, float]:
    stats = jax.devices()[0].memory_stats() or {}
    out = {}
    if "bytes_in_use" in stats:
        out["perf/device_mem_gb"] = stats["bytes_in_use"] / 2**30
    if "peak_bytes_in_use" in stats:
        out["perf/device_peak_mem_gb"] = stats["peak_bytes_in_use"] / 2**30
    return out
