"""``LoopConfig``: the training loop's schedule, budgets and switches (``loop.*`` in the config),
with the range checks ``experiments.config.resolve`` runs before anything is built."""
from __future__ import annotations

import dataclasses
from typing import Optional

from rl.agents.seed_stack import UPDATE_MODES
from rl.divergence import MODES as NONFINITE_MODES


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
    on_nonfinite: str = "stop"            # a non-finite loss/state: stop | skip | off (rl/divergence.py)

    def validate(self, batch_size: Optional[int] = None) -> None:
        """The fields' ranges; with ``batch_size`` (the agent's), also that the replay can
        hold one batch."""
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
        if self.on_nonfinite not in NONFINITE_MODES:
            raise ValueError(f"loop.on_nonfinite={self.on_nonfinite!r}; must be one of "
                             f"{NONFINITE_MODES}")
        if self.seed_updates not in UPDATE_MODES:
            raise ValueError(f"loop.seed_updates={self.seed_updates!r}; must be one of "
                             f"{UPDATE_MODES}")
        if self.replay_budget_gb < 0:
            raise ValueError(f"loop.replay_budget_gb={self.replay_budget_gb}; must be >= 0")
        if batch_size is not None and batch_size > self.replay_capacity:
            raise ValueError(f"agent.batch_size={batch_size} is larger than "
                             f"loop.replay_capacity={self.replay_capacity} (per seed); raise "
                             f"loop.replay_capacity or lower agent.batch_size")
