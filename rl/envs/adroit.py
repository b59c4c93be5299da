"""Adroit hand tasks from pixels (``adroit/door|hammer|pen|relocate``) via gymnasium-robotics.

- Env: ``AdroitHand<Task>-v1`` (dense reward), its own time limit (200 env steps for every
  task in gymnasium-robotics 1.4); action repeat on top (default 2, as DrM), so an agent
  episode is 100 steps. No task terminates (pen's early end is commented out in
  gymnasium-robotics; the original mj_envs pen had a 100-step horizon): episodes truncate.
- Pixels: a persistent ``mujoco.Renderer`` on the env's model and data from the model's
  ``vil_camera`` (the fixed camera the RRL/VRL3/DrM Adroit code renders from), rendered once per
  agent step. ``render_quality="fast"`` (default) shrinks the offscreen buffer to the image size
  (the model asks for 3024x1680; the image is unchanged) and the shadow map from 4096 to 1024
  (changes <1% of pixels slightly); ~1.7x faster on CPU. ``"default"`` keeps the model's
  settings.
- ``info["success"]``: the goal was achieved on any of the repeated frames;
  ``info["success_frames"]``: on how many (DrM counts these over an episode: success if > 25,
  pen > 20).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rl.envs.base import Info, check_choice, check_positive_int, check_seed
from rl.core.types import ActionSpec, EnvSpec

ADROIT_TASKS: dict[str, str] = {
    "door": "AdroitHandDoor-v1", "hammer": "AdroitHandHammer-v1",
    "pen": "AdroitHandPen-v1", "relocate": "AdroitHandRelocate-v1",
}
RENDER_QUALITIES = ("fast", "default")


class AdroitEnv:
    info_keys: tuple[str, ...] = ("success", "success_frames")

    def __init__(self, task: str, *, size: int = 84, action_repeat: int = 2,
                 camera: str | int = "vil_camera", render_quality: str = "fast",
                 reward_type: str = "dense", max_episode_steps: int | None = None):
        check_choice("adroit task", task, sorted(ADROIT_TASKS))
        check_choice("render_quality", render_quality, RENDER_QUALITIES)
        check_choice("reward_type", reward_type, ("dense", "sparse"))
        size = check_positive_int("size", size)
        self._repeat = check_positive_int("action_repeat", action_repeat)

        import gymnasium
        import gymnasium_robotics

        from rl.envs.mujoco_render import PixelRenderer

        gymnasium.register_envs(gymnasium_robotics)
        env_id = ADROIT_TASKS[task]
        kwargs: dict[str, Any] = {"reward_type": reward_type}
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = check_positive_int("max_episode_steps",
                                                             max_episode_steps)
        self._env = gymnasium.make(env_id, **kwargs)
        episode_frames = self._env.spec.max_episode_steps
        model = self._env.unwrapped.model
        if render_quality == "fast":
            model.vis.global_.offwidth = max(size, 1)
            model.vis.global_.offheight = max(size, 1)
            model.vis.quality.shadowsize = min(int(model.vis.quality.shadowsize), 1024)
        self._renderer = PixelRenderer(model, size, size, camera)
        low, high = self._env.action_space.low, self._env.action_space.high
        if not (np.all(low == -1.0) and np.all(high == 1.0)):
            raise RuntimeError(f"{env_id}: expected actions in [-1, 1], got [{low}, {high}]")
        self.spec = EnvSpec(name=f"adroit/{task}", obs_shape=(size, size, 3),
                            action=ActionSpec.box(int(np.prod(low.shape))),
                            action_repeat=self._repeat, max_episode_frames=episode_frames)
        self._running = False

    def render(self) -> np.ndarray:
        return self._renderer.render(self._env.unwrapped.data)

    def reset(self, seed: int) -> tuple[np.ndarray, Info]:
        self._env.reset(seed=check_seed(seed))
        self._running = True
        return self.render(), {"success": False, "success_frames": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, Info]:
        if not self._running:
            raise RuntimeError(f"{self.spec.name}: call reset(seed) before step()")
        action = np.asarray(action, np.float32)
        if action.shape != self.spec.action.shape or not np.all(np.isfinite(action)):
            raise ValueError(f"{self.spec.name}: action must be finite with shape "
                             f"{self.spec.action.shape}, got {action!r}")
        action = np.clip(action, -1.0, 1.0)
        total, success_frames = 0.0, 0
        terminated = truncated = False
        for _ in range(self._repeat):
            _, reward, terminated, truncated, info = self._env.step(action)
            total += float(reward)
            success_frames += int(bool(info.get("success", False)))
            if terminated or truncated:
                break
        terminated, truncated = bool(terminated), bool(truncated and not terminated)
        self._running = not (terminated or truncated)
        info = {"success": success_frames > 0, "success_frames": success_frames}
        return self.render(), total, terminated, truncated, info

    def close(self) -> None:
        self._renderer.close()
        self._env.close()
