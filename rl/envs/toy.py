"""A tiny pure-numpy pixel task for fast CPU learning tests: move a dot onto a goal square.

``toy/reach``: continuous action in [-1, 1]^2 = (dx, dy) times ``speed`` (3 px) per frame.
``toy/reach_discrete``: 5 actions, 0 stay, 1 up, 2 down, 3 left, 4 right (``speed`` px each).

The image (default 32x32x3 uint8) shows a 4x4 green goal square and a 3x3 red agent dot (drawn on
top) on a dark background (``goal_size``/``agent_size`` change them: world models, which must
reconstruct the sprites, learn much faster from larger ones). Start and goal are drawn from the
reset seed; ``fixed_goal=True`` puts the goal at the image centre in every episode, so only the
agent's position varies. An episode is 50 frames, never terminal (truncation only). Reward per
frame: ``exp(-d / 8)`` with ``d`` the distance in pixels from the agent to the goal's centre: ~1
on the goal, ~0.13 at 16 px.
``info["success"]``: the agent's centre is on the goal square.

Expected returns over 50 steps at 32 px (2,000 episodes, measured with the env): random
~10.6 (std ~7, both action types; standing still ~11); moving straight to the goal
(``oracle_action``) ~48 continuous, ~41 discrete (3-px moves rarely land on the goal's centre).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rl.envs.base import Info, check_choice, check_positive_int, check_seed, repeat_action
from rl.core.types import ActionSpec, EnvSpec

TOY_TASKS = ("reach", "reach_discrete")
GOAL = 4        # goal square side (px)
AGENT = 3       # agent dot side (px)
REWARD_SCALE = 8.0
BACKGROUND = np.array([16, 16, 40], np.uint8)
GOAL_COLOUR = np.array([60, 220, 60], np.uint8)
AGENT_COLOUR = np.array([240, 60, 60], np.uint8)
_MOVES = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]], np.float64)  # (dx, dy)


class ToyReachEnv:
    info_keys: tuple[str, ...] = ("success",)

    def __init__(self, task: str = "reach", *, size: int = 32, action_repeat: int = 1,
                 episode_frames: int = 50, speed: float = 3.0, agent_size: int = AGENT,
                 goal_size: int = GOAL, fixed_goal: bool = False):
        check_choice("toy task", task, TOY_TASKS)
        self.discrete = task == "reach_discrete"
        self.size = check_positive_int("size", size)
        if size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        self._repeat = check_positive_int("action_repeat", action_repeat)
        self._episode_frames = check_positive_int("episode_frames", episode_frames)
        self.speed = float(speed)
        self.agent_size = check_positive_int("agent_size", agent_size)
        self.goal_size = check_positive_int("goal_size", goal_size)
        if not isinstance(fixed_goal, (bool, np.bool_)):
            raise ValueError(f"fixed_goal must be true or false, got {fixed_goal!r}")
        self.fixed_goal = bool(fixed_goal)
        if max(agent_size, goal_size) > size // 2:
            raise ValueError(f"agent_size={agent_size} and goal_size={goal_size} must be at most "
                             f"size // 2 = {size // 2}")
        action = ActionSpec.categorical(len(_MOVES)) if self.discrete else ActionSpec.box(2)
        self.spec = EnvSpec(name=f"toy/{task}", obs_shape=(size, size, 3), action=action,
                            action_repeat=self._repeat, max_episode_frames=self._episode_frames)
        self._agent = np.zeros(2)        # (x, y) centre, continuous
        self._goal = np.zeros(2, int)    # (x, y) of the goal's top-left pixel
        self._frames = 0
        self._running = False

    # -------------------------------------------------------------- state
    @property
    def goal_centre(self) -> np.ndarray:
        return self._goal + (self.goal_size - 1) / 2.0

    def _distance(self) -> float:
        return float(np.linalg.norm(self._agent - self.goal_centre))

    def _on_goal(self) -> bool:
        offset = np.abs(self._agent - self.goal_centre)
        return bool(np.all(offset <= self.goal_size / 2.0))

    def _agent_bounds(self) -> tuple[int, int]:
        """The agent centre's range that keeps its sprite inside the image."""
        half = self.agent_size // 2
        return half, self.size - 1 - (self.agent_size - 1 - half)

    def render(self) -> np.ndarray:
        image = np.empty((self.size, self.size, 3), np.uint8)
        image[:] = BACKGROUND
        gx, gy = self._goal
        image[gy:gy + self.goal_size, gx:gx + self.goal_size] = GOAL_COLOUR
        ax, ay = np.rint(self._agent).astype(int) - self.agent_size // 2
        image[ay:ay + self.agent_size, ax:ax + self.agent_size] = AGENT_COLOUR
        return image

    def oracle_action(self) -> Any:
        """A scripted policy that moves straight to the goal (for reference returns)."""
        delta = (self.goal_centre - self._agent) / self.speed
        if not self.discrete:
            return np.clip(delta, -1.0, 1.0).astype(np.float32)
        if np.max(np.abs(delta)) < 0.5:
            return np.int32(0)
        if abs(delta[0]) >= abs(delta[1]):
            return np.int32(4 if delta[0] > 0 else 3)
        return np.int32(2 if delta[1] > 0 else 1)

    # -------------------------------------------------------------- protocol
    def reset(self, seed: int) -> tuple[np.ndarray, Info]:
        rng = np.random.default_rng(check_seed(seed))
        low, high = self._agent_bounds()
        self._agent = rng.uniform(low, high, size=2)
        self._goal = (np.full(2, (self.size - self.goal_size) // 2) if self.fixed_goal
                      else rng.integers(0, self.size - self.goal_size + 1, size=2))
        self._frames = 0
        self._running = True
        return self.render(), {"success": self._on_goal()}

    def _move(self, action: Any) -> np.ndarray:
        if self.discrete:
            a = np.asarray(action)
            if a.shape != () or not np.issubdtype(a.dtype, np.integer) or not 0 <= a < len(_MOVES):
                raise ValueError(f"{self.spec.name}: action must be an integer in "
                                 f"[0, {len(_MOVES)}), got {action!r}")
            return _MOVES[int(a)] * self.speed
        a = np.asarray(action, np.float64)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise ValueError(f"{self.spec.name}: action must be finite with shape (2,), "
                             f"got {action!r}")
        return np.clip(a, -1.0, 1.0) * self.speed

    def _step_once(self, move: np.ndarray) -> tuple[float, bool, bool, Info]:
        low, high = self._agent_bounds()
        self._agent = np.clip(self._agent + move, low, high)
        self._frames += 1
        reward = float(np.exp(-self._distance() / REWARD_SCALE))
        return reward, False, self._frames >= self._episode_frames, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, Info]:
        if not self._running:
            raise RuntimeError(f"{self.spec.name}: call reset(seed) before step()")
        move = self._move(action)
        reward, terminated, truncated, _, _ = repeat_action(lambda: self._step_once(move),
                                                            self._repeat)
        self._running = not truncated
        return self.render(), reward, terminated, truncated, {"success": self._on_goal()}

    def close(self) -> None:
        self._running = False
