"""The replay state: per-env rings of uint8 frames on one device, plus memory projections.

All envs step in lockstep, so the rings share one write pointer. Slot ``c`` of env ``e`` holds
the step that arrived at ``obs[e, c]``: ``action`` is the action that LED to that frame (zeros on
``is_first``), ``reward`` the reward received on arriving there (0 on ``is_first``), ``discount``
0 on a true terminal else 1. Ages count back from the newest write: ``age = (ptr - 1 - slot) mod C``
(newest = 0); a slot holds data iff ``age < size``.
"""
from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rl.core.types import EnvSpec


@flax.struct.dataclass
class ReplayState:
    obs: jax.Array           # [E, C, H, W, Ch] uint8
    action: jax.Array        # [E, C, *A] float32, or [E, C] int32 for discrete actions
    reward: jax.Array        # [E, C] float32
    discount: jax.Array      # [E, C] float32
    is_first: jax.Array      # [E, C] bool
    is_last: jax.Array       # [E, C] bool
    is_terminal: jax.Array   # [E, C] bool
    priority: jax.Array      # [E, C] float32, for prioritised samplers
    max_priority: jax.Array  # [G] float32: per priority group (a block of E // G envs: one
                             # agent's envs), the largest priority it ever set; its new entries
                             # get it (as Dopamine's PER). G = 1 for one agent.
    ptr: jax.Array           # int32 scalar: next write slot, shared by all envs
    size: jax.Array          # int32 scalar: filled slots per env (<= C)

    @property
    def num_envs(self) -> int:
        return self.obs.shape[0]

    @property
    def capacity_per_env(self) -> int:
        return self.obs.shape[1]


def capacity_per_env(capacity: int, num_envs: int) -> int:
    """Slots per env ring; raises on sizes that cannot hold even one transition."""
    if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    if not isinstance(capacity, (int, np.integer)) or capacity < 2 * num_envs:
        raise ValueError(
            f"capacity={capacity!r} total transitions is too small for num_envs={num_envs}: each env "
            f"ring needs at least 2 slots, so capacity must be an int >= {2 * num_envs}")
    return int(capacity) // int(num_envs)


def _check_spec(spec: EnvSpec) -> None:
    if len(spec.obs_shape) != 3:
        raise ValueError(f"spec.obs_shape must be (H, W, C) for uint8 pixels, got {spec.obs_shape!r}")


def _field_shapes(spec: EnvSpec, num_envs: int, per_env: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    lead = (num_envs, per_env)
    flag = np.dtype(np.bool_)
    f32 = np.dtype(np.float32)
    return {
        "obs": (lead + tuple(spec.obs_shape), np.dtype(np.uint8)),
        "action": (lead + tuple(spec.action.shape), spec.action.dtype),
        "reward": (lead, f32), "discount": (lead, f32),
        "is_first": (lead, flag), "is_last": (lead, flag), "is_terminal": (lead, flag),
        "priority": (lead, f32),
    }


def init(spec: EnvSpec, capacity: int, num_envs: int, device: jax.Device | None = None,
         priority_groups: int = 1) -> ReplayState:
    """An empty buffer of ``capacity`` total transitions (``capacity // num_envs`` per env) on ``device``.

    ``priority_groups``: independent agents sharing the buffer (``SeedStack``), each owning an
    equal block of consecutive envs; each keeps its own max priority, so seeds stay independent.

    ``device=None`` uses the default device (uncommitted); a given device commits every array to it,
    so jitted functions of the state run there (see ``choose_device`` for the host fallback).
    """
    _check_spec(spec)
    per_env = capacity_per_env(capacity, num_envs)
    if (isinstance(priority_groups, bool) or not isinstance(priority_groups, (int, np.integer))
            or priority_groups < 1 or num_envs % priority_groups):
        raise ValueError(f"priority_groups={priority_groups!r}; must be a positive int that "
                         f"divides num_envs={num_envs}")
    fields = {name: jnp.zeros(shape, dtype, device=device)
              for name, (shape, dtype) in _field_shapes(spec, num_envs, per_env).items()}
    return ReplayState(
        **fields,
        max_priority=jnp.ones((int(priority_groups),), jnp.float32, device=device),
        ptr=jnp.zeros((), jnp.int32, device=device),
        size=jnp.zeros((), jnp.int32, device=device),
    )


def projected_bytes(spec: EnvSpec, capacity: int, num_envs: int = 1) -> int:
    """Bytes the buffer will take on its device."""
    _check_spec(spec)
    per_env = capacity_per_env(capacity, num_envs)
    return sum(math.prod(shape) * dtype.itemsize
               for shape, dtype in _field_shapes(spec, num_envs, per_env).values())


def _human(num_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.2f} {unit}"
    return f"{num_bytes} B"


def describe(spec: EnvSpec, capacity: int, num_envs: int = 1) -> str:
    """One line for the start-up log: how many transitions and how much memory they will take."""
    per_env = capacity_per_env(capacity, num_envs)
    total = projected_bytes(spec, capacity, num_envs)
    frames = num_envs * per_env * math.prod(spec.obs_shape)
    h, w, c = spec.obs_shape
    return (f"replay: {num_envs * per_env:,} transitions ({num_envs} envs x {per_env:,}) of {h}x{w}x{c} "
            f"uint8 frames, projected {_human(total)} ({_human(frames)} frames + "
            f"{_human(total - frames)} actions/rewards/flags/priorities)")


def choose_device(spec: EnvSpec, capacity: int, budget_bytes: int, num_envs: int = 1) -> jax.Device:
    """The default accelerator if the buffer fits ``budget_bytes``, else the host CPU device.

    On the host fallback the same jitted functions run on the CPU backend; the caller copies each
    sampled batch to the accelerator (``jax.device_put``) and passes keys that are uncommitted or
    already on the CPU device.
    """
    if projected_bytes(spec, capacity, num_envs) <= budget_bytes:
        return jax.devices()[0]
    return jax.devices("cpu")[0]


def slot_ages(state: ReplayState) -> jax.Array:
    """``[C]`` int32 age of every slot (newest write = 0). The map slot <-> age is its own inverse."""
    slots = jnp.arange(state.capacity_per_env, dtype=jnp.int32)
    return (state.ptr - 1 - slots) % state.capacity_per_env


def written_mask(state: ReplayState) -> jax.Array:
    """``[C]`` bool: slots that hold data (same for all envs)."""
    return slot_ages(state) < state.size
