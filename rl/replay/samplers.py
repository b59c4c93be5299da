"""Samplers: how much weight each valid start slot gets, and the inverse-CDF draw.

A sampler is a hashable callable ``(state, valid [E, C] bool) -> weights [E, C] float32`` (zero
where invalid), so it can be a static argument of ``jax.jit``. Weights need not be normalised.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import jax
import jax.numpy as jnp

from rl.replay.state import ReplayState, slot_ages


class Sampler(Protocol):
    def __call__(self, state: ReplayState, valid: jax.Array) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Every valid start equally likely."""

    def __call__(self, state: ReplayState, valid: jax.Array) -> jax.Array:
        return valid.astype(jnp.float32)


uniform = Uniform()


@dataclasses.dataclass(frozen=True)
class Prioritized:
    """``priority ** alpha`` on valid starts (proportional PER; SPR/BBF use alpha 0.5)."""

    alpha: float = 0.5

    def __post_init__(self):
        if not self.alpha >= 0:
            raise ValueError(f"Prioritized: alpha must be >= 0, got {self.alpha!r}")

    def __call__(self, state: ReplayState, valid: jax.Array) -> jax.Array:
        return jnp.where(valid, state.priority ** self.alpha, 0.0)


def prioritized(alpha: float = 0.5) -> Prioritized:
    return Prioritized(alpha)


def _normalised(weights: jax.Array) -> jax.Array:
    return weights / jnp.maximum(jnp.sum(weights), 1e-30)


@dataclasses.dataclass(frozen=True)
class RecencyMixed:
    """With probability ``fraction_recent`` a start among the ``recent_window`` newest slots of
    each env, else a uniform start (all uniform while no recent start is valid)."""

    fraction_recent: float = 0.5
    recent_window: int = 10_000

    def __post_init__(self):
        if not 0.0 <= self.fraction_recent <= 1.0:
            raise ValueError(f"RecencyMixed: fraction_recent must be in [0, 1], got {self.fraction_recent!r}")
        if self.recent_window < 1:
            raise ValueError(f"RecencyMixed: recent_window must be >= 1, got {self.recent_window!r}")

    def __call__(self, state: ReplayState, valid: jax.Array) -> jax.Array:
        recent = valid & (slot_ages(state) < self.recent_window)[None]
        fraction = jnp.where(jnp.any(recent), self.fraction_recent, 0.0)
        return ((1.0 - fraction) * _normalised(valid.astype(jnp.float32))
                + fraction * _normalised(recent.astype(jnp.float32)))


def recency_mixed(fraction_recent: float = 0.5, recent_window: int = 10_000) -> RecencyMixed:
    return RecencyMixed(fraction_recent, recent_window)


def episodes_back(state: ReplayState) -> jax.Array:
    """``[E, C]`` int32: how many episodes of the same env started after this slot's episode
    (0 for the newest episode)."""
    ages = slot_ages(state)                       # also the slot holding each age
    first_by_age = state.is_first[:, ages].astype(jnp.int32)
    newer_starts = jnp.cumsum(first_by_age, axis=1) - first_by_age
    return newer_starts[:, ages]


@dataclasses.dataclass(frozen=True)
class EpisodeRecency:
    """OC-STORM's sampler: ``p = (1-u) softmax(-episodes_back * ln decay) + u / N_valid``.

    Episodes are counted per env (with one env this is OC-STORM's episode index).
    """

    decay: float = 1.25
    uniform_fraction: float = 0.5

    def __post_init__(self):
        if not self.decay >= 1.0:
            raise ValueError(f"EpisodeRecency: decay must be >= 1, got {self.decay!r}")
        if not 0.0 <= self.uniform_fraction <= 1.0:
            raise ValueError(f"EpisodeRecency: uniform_fraction must be in [0, 1], got {self.uniform_fraction!r}")

    def __call__(self, state: ReplayState, valid: jax.Array) -> jax.Array:
        logits = -episodes_back(state).astype(jnp.float32) * jnp.log(self.decay)
        recency = jnp.where(valid, jnp.exp(logits), 0.0)   # the newest episode has weight 1: no overflow
        return ((1.0 - self.uniform_fraction) * _normalised(recency)
                + self.uniform_fraction * _normalised(valid.astype(jnp.float32)))


def sample_starts(state: ReplayState, key: jax.Array, batch_size: int, valid: jax.Array,
                  sampler: Sampler = uniform,
                  search_method: str = "scan_unrolled") -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw ``batch_size`` start slots with probability proportional to ``sampler`` weights.

    Inverse CDF over all ``E*C`` slots: O(E*C + B log(E*C)). Returns ``(env_index [B] int32,
    slot [B] int32, prob [B] float32)``, ``prob`` being each draw's probability (for importance
    weights). The caller must make sure some start is valid (e.g. enough steps were added).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    capacity = state.capacity_per_env
    weights = sampler(state, valid).astype(jnp.float32).reshape(-1)
    cdf = jnp.cumsum(weights)
    total = cdf[-1]
    targets = jax.random.uniform(key, (batch_size,), jnp.float32) * total
    index = jnp.searchsorted(cdf, targets, side="right", method=search_method)
    index = jnp.minimum(index, weights.shape[0] - 1).astype(jnp.int32)
    # Rounding in a parallel float32 cumsum can leave a sliver of mass on a zero-weight slot (or
    # round a target up to ``total``); send such rare draws to the heaviest slot, which is valid.
    index = jnp.where(weights[index] > 0, index, jnp.argmax(weights).astype(jnp.int32))
    prob = weights[index] / total
    return index // capacity, index % capacity, prob
