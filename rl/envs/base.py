"""The single-environment protocol every suite implements, and helpers they share."""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from rl.core.types import EnvSpec

Info = dict[str, Any]


@runtime_checkable
class Env(Protocol):
    """One environment on the host, pixels out (uint8 HWC).

    ``info_keys`` names the scalar entries that every ``reset`` and ``step`` info carries (e.g.
    ``("success",)`` for Adroit); ``VectorEnv`` batches exactly those. Suites without per-step
    extras have ``info_keys == ()``.
    """

    spec: EnvSpec
    info_keys: tuple[str, ...]

    def reset(self, seed: int) -> tuple[np.ndarray, Info]:
        """Starts an episode; the same seed gives the same initial state."""

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, Info]:
        """``(obs, reward, terminated, truncated, info)`` after one agent step (action repeat
        included; the reward is summed over the repeated frames)."""

    def close(self) -> None:
        """Frees simulator and renderer resources."""


StepOnce = Callable[[], tuple[float, bool, bool, Info]]


def repeat_action(step_once: StepOnce, repeat: int) -> tuple[float, bool, bool, Info, int]:
    """Calls ``step_once`` up to ``repeat`` times, summing rewards; stops when the episode ends.

    Returns ``(reward_sum, terminated, truncated, last_info, frames_taken)``. Rendering is the
    caller's job, once, after the last frame.
    """
    total, terminated, truncated, info = 0.0, False, False, {}
    for frame in range(1, repeat + 1):
        reward, terminated, truncated, info = step_once()
        total += reward
        if terminated or truncated:
            return total, terminated, truncated, info, frame
    return total, terminated, truncated, info, repeat


def check_choice(what: str, value: Any, allowed: tuple | list) -> None:
    """Raises a ValueError naming the bad value and the allowed ones."""
    if value not in allowed:
        raise ValueError(f"{what}={value!r} is not allowed; choose one of {list(allowed)}")


def check_positive_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)
