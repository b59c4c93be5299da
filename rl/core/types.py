"""Types shared by every environment suite: the spec and the batched time step."""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    """Continuous (Box) when ``num_actions`` is None, else Discrete(num_actions)."""

    shape: tuple[int, ...]
    low: float | None = None
    high: float | None = None
    num_actions: int | None = None

    @property
    def discrete(self) -> bool:
        return self.num_actions is not None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int32) if self.discrete else np.dtype(np.float32)

    @staticmethod
    def box(dim: int, low: float = -1.0, high: float = 1.0) -> "ActionSpec":
        return ActionSpec(shape=(dim,), low=low, high=high)

    @staticmethod
    def categorical(n: int) -> "ActionSpec":
        return ActionSpec(shape=(), num_actions=n)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an environment. Pixels are uint8 HWC."""

    name: str
    obs_shape: tuple[int, int, int]
    action: ActionSpec
    action_repeat: int = 1
    max_episode_frames: int | None = None


class TimeStep(NamedTuple):
    """One step of N environments (leading axis N everywhere, host numpy arrays).

    ``reward[i]`` is the reward received on arriving at ``obs[i]`` (0 on ``is_first``).
    ``discount`` is 0 on a true terminal and 1 otherwise (truncation keeps 1).
    ``is_last`` marks the final step of an episode (terminal or truncated); with auto-reset the
    next ``step`` call returns a fresh episode whose first step has ``is_first``.
    """

    obs: np.ndarray          # [N, H, W, C] uint8
    reward: np.ndarray       # [N] float32
    discount: np.ndarray     # [N] float32
    is_first: np.ndarray     # [N] bool
    is_last: np.ndarray      # [N] bool
    is_terminal: np.ndarray  # [N] bool
    info: dict[str, Any]     # arrays of shape [N]; e.g. "success", "episode_return" on is_last

    @property
    def truncated(self) -> np.ndarray:
        return self.is_last & ~self.is_terminal
