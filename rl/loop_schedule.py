"""When things happen in the training loop: budgets and periods in agent steps, derived once.

Every count is in agent steps of one seed's block of envs (``loop.step`` advances by the
block's ``envs_per_seed`` per iteration), from the frame counts of the ``LoopConfig`` and the
env's action repeat.
"""
from __future__ import annotations

import dataclasses
from typing import Any


def next_multiple(value: int, every: int) -> int:
    """The first multiple of ``every`` (at least 1) after ``value``."""
    every = max(every, 1)
    return (value // every + 1) * every


class Every:
    """A periodic event every ``every`` agent steps (never when ``enabled`` is false);
    ``due(step)`` is true once each time ``step`` reaches the next multiple after the last."""

    def __init__(self, every: int, start: int, enabled: bool = True):
        self.every, self.enabled = every, enabled
        self.next = next_multiple(start, every)

    def due(self, step: int) -> bool:
        if not self.enabled or step < self.next:
            return False
        self.next = next_multiple(step, self.every)
        return True


@dataclasses.dataclass(frozen=True)
class LoopSchedule:
    total_steps: int        # the frame budget
    warmup_steps: int       # uniform random actions before this
    learning_starts: int    # first update: after the warm-up and one batch element per env
    update_every: int       # agent steps between update calls
    envs_per_seed: int      # agent steps per loop iteration
    log_every: int
    eval_every: int         # 0: no periodic evaluation
    checkpoint_every: int   # 0: only at the end
    trace_start: int        # 0: no trace

    @classmethod
    def of(cls, cfg: Any, agent: Any, action_repeat: int, envs_per_seed: int) -> "LoopSchedule":
        """``cfg``: an ``rl.loop.LoopConfig``; ``agent`` the one the loop trains (its
        ``min_replay_steps`` and ``replayed_steps_per_update`` are per copy)."""
        warmup_steps = cfg.warmup_frames // action_repeat
        # never sample before every env holds enough steps for one batch element
        learning_starts = max(warmup_steps,
                              envs_per_seed * (getattr(agent, "min_replay_steps", 1) + 1))
        return cls(total_steps=cfg.frames // action_repeat, warmup_steps=warmup_steps,
                   learning_starts=learning_starts,
                   update_every=update_every(cfg, agent, action_repeat),
                   envs_per_seed=envs_per_seed,
                   log_every=cfg.log_every_frames // action_repeat,
                   eval_every=cfg.eval_every_frames // action_repeat,
                   checkpoint_every=cfg.checkpoint_every_frames // action_repeat,
                   trace_start=cfg.trace_at_frames // action_repeat)

    def update_calls(self, step: int) -> int:
        """Update calls due in the iteration that advances ``step`` by one step of every env
        (a step of several envs can cross a multiple of ``update_every`` without landing on it)."""
        if step < self.learning_starts:
            return 0
        return (step + self.envs_per_seed) // self.update_every - step // self.update_every

    def events(self, step: int, eval_enabled: bool,
               checkpoint_enabled: bool) -> tuple[Every, Every, Every]:
        """The log, evaluation and checkpoint events of a run (re)started at ``step``."""
        return (Every(self.log_every, step),
                Every(max(self.eval_every, 1), step, eval_enabled),
                Every(max(self.checkpoint_every, 1), step, checkpoint_enabled))


def update_every(cfg: Any, agent: Any, action_repeat: int) -> int:
    """Agent steps between update calls, from whichever schedule the config names."""
    if cfg.train_ratio is not None:
        replayed = getattr(agent, "replayed_steps_per_update", None)
        if replayed is None:
            raise ValueError(f"loop.train_ratio needs an agent that replays sequences; "
                             f"{type(agent).__name__} does not")
        return max(1, round(replayed * cfg.updates_per_call / cfg.train_ratio))
    if cfg.update_every_frames is not None:
        return max(1, cfg.update_every_frames // action_repeat)
    return cfg.update_every
