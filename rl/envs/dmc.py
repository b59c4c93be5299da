"""DeepMind Control Suite from pixels: ``dmc/<domain>_<task>`` for every task in the suite.

Conventions (DrQ-v2 / PlaNet):
- Pixels are rendered once per agent step, after the last repeated frame, through a persistent
  ``mujoco.Renderer`` on dm_control's model and data with the same camera as
  ``physics.render(size, size, camera_id=...)`` (byte-identical, see tests): camera 2 for
  quadruped (as DrQ-v2), camera 0 otherwise.
- Actions are in [-1, 1] per dimension, clipped there, then mapped linearly onto the task's
  bounds (only quadruped differs: its upper bound is 1.1; lqr is unbounded and gets them raw).
- An episode is 1000 simulator (control) steps; it ends by truncation (discount 1), as
  dm_control's time limit does. lqr has no time limit in dm_control and is cut at 1000 as well.
- Rewards are summed over the repeated frames; repetition stops early if the episode ends.
- ``reset(seed)`` re-seeds the task's RandomState, so the same seed gives the same initial state.

Distracted DMC (RePo's setting): ``distractor="train"|"test"`` replaces the background (sky and
floor, from MuJoCo's segmentation rendering) every step with a frame of a procedural moving clip
from that pool (``rl.envs.distractors``), chosen per episode from the reset seed;
``distractor_pool="natural"`` uses moving grayscale crops of a natural photo instead, one
stream that runs on across episodes.
``appearance_shift="color"`` recolours the robot (adaptation tests).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rl.envs import distractors
from rl.envs.base import Info, check_choice, check_positive_int, check_seed, repeat_action
from rl.core.types import ActionSpec, EnvSpec

# dm_control.suite.ALL_TASKS (dm-control 1.0.50), kept here so that listing names needs no import;
# a test checks it against the installed suite.
DMC_TASKS: tuple[tuple[str, str], ...] = (
    ("acrobot", "swingup"), ("acrobot", "swingup_sparse"), ("ball_in_cup", "catch"),
    ("cartpole", "balance"), ("cartpole", "balance_sparse"), ("cartpole", "swingup"),
    ("cartpole", "swingup_sparse"), ("cartpole", "two_poles"), ("cartpole", "three_poles"),
    ("cheetah", "run"), ("dog", "stand"), ("dog", "walk"), ("dog", "trot"), ("dog", "run"),
    ("dog", "fetch"), ("finger", "spin"), ("finger", "turn_easy"), ("finger", "turn_hard"),
    ("fish", "upright"), ("fish", "swim"), ("hopper", "stand"), ("hopper", "hop"),
    ("humanoid", "stand"), ("humanoid", "walk"), ("humanoid", "run"),
    ("humanoid", "run_pure_state"), ("humanoid_CMU", "stand"), ("humanoid_CMU", "walk"),
    ("humanoid_CMU", "run"), ("lqr", "lqr_2_1"), ("lqr", "lqr_6_2"),
    ("manipulator", "bring_ball"), ("manipulator", "bring_peg"), ("manipulator", "insert_ball"),
    ("manipulator", "insert_peg"), ("pendulum", "swingup"), ("point_mass", "easy"),
    ("point_mass", "hard"), ("quadruped", "walk"), ("quadruped", "run"),
    ("quadruped", "escape"), ("quadruped", "fetch"), ("reacher", "easy"), ("reacher", "hard"),
    ("stacker", "stack_2"), ("stacker", "stack_4"), ("swimmer", "swimmer6"),
    ("swimmer", "swimmer15"), ("walker", "stand"), ("walker", "walk"), ("walker", "run"),
)
TASK_BY_NAME: dict[str, tuple[str, str]] = {f"{d}_{t}": (d, t) for d, t in DMC_TASKS}
ALIASES: dict[str, str] = {"cup_catch": "ball_in_cup_catch"}  # PlaNet/Dreamer's name

SIZES = (64, 84)
# dreamer: the Dreamer paper's protocol (action repeat 2 on every task, 64x64), not PlaNet's
# per-task repeats that Dreamer-v1 numbers are often quoted under
CONVENTIONS = ("drqv2", "planet", "dreamer")
DEFAULT_SIZE = {"drqv2": 84, "planet": 64, "dreamer": 64}
EPISODE_FRAMES = 1000
_UNBOUNDED = 1e6  # bounds beyond this are treated as "no bounds" (lqr uses +-1e10)


def task_names() -> list[str]:
    return sorted(TASK_BY_NAME)


def resolve_task(task_name: str) -> tuple[str, str]:
    """``"cheetah_run"`` -> ``("cheetah", "run")``; unknown names list the valid ones."""
    key = ALIASES.get(task_name, task_name)
    if key not in TASK_BY_NAME:
        raise ValueError(f"unknown DMC task {task_name!r}; valid tasks: {task_names()} "
                         f"(aliases: {ALIASES})")
    return TASK_BY_NAME[key]


def default_action_repeat(domain: str, task: str, convention: str = "drqv2") -> int:
    """Per-task action repeat: DrQ-v2 and the Dreamer paper use 2 everywhere; PlaNet uses
    cartpole 8, finger_spin 2, walker 2 and 4 for everything else."""
    check_choice("convention", convention, CONVENTIONS)
    if convention in ("drqv2", "dreamer"):
        return 2
    if domain == "cartpole":
        return 8
    if (domain, task) == ("finger", "spin") or domain == "walker":
        return 2
    return 4


def default_camera(domain: str) -> int:
    return 2 if domain == "quadruped" else 0


class DMCEnv:
    """One dm_control task rendered to ``[size, size, 3]`` uint8 pixels."""

    info_keys: tuple[str, ...] = ()

    def __init__(self, task_name: str, *, size: int | None = None,
                 action_repeat: int | None = None, convention: str = "drqv2",
                 camera: int | None = None, episode_frames: int = EPISODE_FRAMES,
                 distractor: str | None = None, appearance_shift: str = "none",
                 distractor_pool: str = "procedural"):
        check_choice("convention", convention, CONVENTIONS)
        check_choice("distractor_pool", distractor_pool, distractors.KINDS)
        if distractor is not None:
            check_choice("distractor", distractor, distractors.POOLS)
        check_choice("appearance_shift", appearance_shift, distractors.APPEARANCE_SHIFTS)
        size = DEFAULT_SIZE[convention] if size is None else size
        check_choice("size", size, SIZES)
        domain, task = resolve_task(task_name)
        if action_repeat is None:
            action_repeat = default_action_repeat(domain, task, convention)
        self._repeat = check_positive_int("action_repeat", action_repeat)
        self._episode_frames = check_positive_int("episode_frames", episode_frames)

        from dm_control import suite  # heavy: imported only when a DMC env is made

        from rl.envs.mujoco_render import BackgroundMasker, PixelRenderer

        self._env = suite.load(domain, task, task_kwargs={"random": 0})
        physics = self._env.physics
        camera = default_camera(domain) if camera is None else camera
        self._renderer = PixelRenderer(physics.model.ptr, size, size, camera)
        self.camera = self._renderer.camera
        self._distractor = (None if distractor is None else
                            distractors.make_distractor(distractor_pool, distractor, size))
        self._appearance_shift = appearance_shift
        self._masker = None
        if distractor is not None or appearance_shift != "none":
            self._masker = BackgroundMasker(physics.model.ptr, size, size, self.camera)

        bounds = self._env.action_spec()
        low = np.asarray(bounds.minimum, np.float64)
        high = np.asarray(bounds.maximum, np.float64)
        bounded = np.isfinite(low) & np.isfinite(high) & (np.abs(low) < _UNBOUNDED) & (
            np.abs(high) < _UNBOUNDED)
        self._scale = np.where(bounded, (high - low) / 2.0, 1.0)
        self._offset = np.where(bounded, (high + low) / 2.0, 0.0)
        self._action_dtype = bounds.dtype
        dim = int(np.prod(bounds.shape))
        self.spec = EnvSpec(name=f"dmc/{domain}_{task}", obs_shape=(size, size, 3),
                            action=ActionSpec.box(dim), action_repeat=self._repeat,
                            max_episode_frames=self._episode_frames)
        self._frames = 0
        self._started = False

    @property
    def physics(self):
        """dm_control's physics (for tests and diagnostics)."""
        return self._env.physics

    def render(self) -> np.ndarray:
        data = self._env.physics.data.ptr
        frame = self._renderer.render(data)
        if self._masker is None:
            return frame
        background = self._masker.mask(data)
        frame = distractors.shift_appearance(frame, ~background, self._appearance_shift)
        if self._distractor is not None:
            frame = distractors.composite(frame, background, self._distractor.next_frame())
        return frame

    def background_mask(self) -> np.ndarray:
        """``[size, size]`` bool: sky and floor pixels of the current frame (distracted envs)."""
        if self._masker is None:
            raise ValueError(f"{self.spec.name}: background_mask needs distractor or "
                             f"appearance_shift set")
        return self._masker.mask(self._env.physics.data.ptr)

    def reset(self, seed: int) -> tuple[np.ndarray, Info]:
        # A fresh RandomState makes the initial state a function of the seed alone
        # (mj_resetData inside dm_control's reset clears everything else).
        self._env.task._random = np.random.RandomState(check_seed(seed))
        self._env.reset()
        if self._distractor is not None:
            self._distractor.reset(seed)
        self._frames = 0
        self._started = True
        return self.render(), {}

    def _scaled(self, action: Any) -> np.ndarray:
        action = np.asarray(action, np.float64)
        if action.shape != self.spec.action.shape:
            raise ValueError(f"{self.spec.name}: action shape {action.shape} != "
                             f"{self.spec.action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"{self.spec.name}: action has non-finite values: {action}")
        action = np.clip(action, -1.0, 1.0)
        return (self._offset + self._scale * action).astype(self._action_dtype)

    def _step_once(self, action: np.ndarray) -> tuple[float, bool, bool, Info]:
        ts = self._env.step(action)
        self._frames += 1
        ended = ts.last()
        terminated = bool(ended and ts.discount == 0.0)
        truncated = bool((ended and not terminated) or self._frames >= self._episode_frames)
        return float(ts.reward), terminated, truncated, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, Info]:
        if not self._started:
            raise RuntimeError(f"{self.spec.name}: call reset(seed) before step()")
        scaled = self._scaled(action)
        reward, terminated, truncated, info, _ = repeat_action(
            lambda: self._step_once(scaled), self._repeat)
        if terminated or truncated:
            self._started = False
        return self.render(), reward, terminated, truncated, info

    def close(self) -> None:
        self._renderer.close()
        if self._masker is not None:
            self._masker.close()
        # If dm_control's own renderer was used (physics.render), free its contexts now, on its
        # render thread: when a Physics is garbage-collected instead, its MuJoCo render context
        # is freed on this thread and deletes GL objects of whatever context is current here
        # (another env's renderer), corrupting that env's images.
        self._env.physics.free()
        self._env.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
