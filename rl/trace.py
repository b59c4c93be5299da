"""A profiler trace of a window of loop iterations (``loop.trace_at_frames``)."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Optional

import jax


class LoopTrace:
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
