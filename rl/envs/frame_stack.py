"""Frame stacking for the acting carry, in pure jnp (jittable).

The carry is the stack itself, ``[N, H, W, C*S]`` uint8, oldest frame first along the channel
axis and newest last. On ``is_first`` the older slots are filled with copies of the new frame
(``pad="repeat"``, DrQ-v2 at reset) or zeros (``"zero"``, rlpyt/SPR, which also zeroes the
stack after a life loss); ``rl.replay.gather_stack`` pads replayed stacks the same two ways.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import Array

PADS = ("repeat", "zero")


def init(num_envs: int, obs_shape: tuple[int, int, int], num_frames: int) -> Array:
    """An all-zero stack; the first ``push`` (with ``is_first``) fills it."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if len(obs_shape) != 3:
        raise ValueError(f"obs_shape must be (H, W, C), got {obs_shape}")
    height, width, channels = obs_shape
    return jnp.zeros((num_envs, height, width, channels * num_frames), jnp.uint8)


def push(stack: Array, obs: Array, is_first: Array, pad: str = "repeat") -> Array:
    """Appends ``obs [N, H, W, C]`` (dropping the oldest frame); refills where ``is_first``."""
    if pad not in PADS:
        raise ValueError(f"pad={pad!r}; valid: {list(PADS)}")
    channels = obs.shape[-1]
    if stack.shape[:-1] != obs.shape[:-1] or stack.shape[-1] % channels:
        raise ValueError(f"stack {stack.shape} does not hold frames of shape {obs.shape}")
    num_frames = stack.shape[-1] // channels
    obs = obs.astype(stack.dtype)
    shifted = jnp.concatenate([stack[..., channels:], obs], axis=-1)
    if pad == "repeat":
        refilled = jnp.tile(obs, (1, 1, 1, num_frames))
    else:
        refilled = jnp.concatenate([jnp.zeros_like(stack[..., channels:]), obs], axis=-1)
    first = jnp.asarray(is_first, bool).reshape(-1, 1, 1, 1)
    return jnp.where(first, refilled, shifted)


def stacked(stack: Array) -> Array:
    """The ``[N, H, W, C*S]`` network input held by the carry (the carry is the stack)."""
    return stack
