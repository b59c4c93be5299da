"""Pixel environments behind one interface: ``make(name)`` gives an ``Env``; ``VectorEnv`` batches.

Importing this package is cheap: dm_control, ale-py and gymnasium-robotics are imported only
when an env of that suite is made. ``rl.envs.frame_stack`` (JAX) is imported on its own.
"""
import os

# MuJoCo picks its GL backend when it is first imported; headless machines need EGL, and with
# MUJOCO_GL unset rendering fails. Respect a user's choice (e.g. osmesa, glfw).
os.environ.setdefault("MUJOCO_GL", "egl")

from rl.envs.base import Env  # noqa: E402
from rl.envs.registry import list_envs, make  # noqa: E402
from rl.core.types import ActionSpec, EnvSpec, TimeStep  # noqa: E402
from rl.envs.vector import VectorEnv, seed_for  # noqa: E402

__all__ = ["ActionSpec", "Env", "EnvSpec", "TimeStep", "VectorEnv", "list_envs", "make", "seed_for"]
