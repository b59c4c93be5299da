"""Tests for rl/replay/windows.py: n-step transitions with the next K actions and stacks (TACO,
SPR), on test_replay's traced frames (each frame encodes episode id, step, global time)."""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl import replay
from test_replay import (BATCH, GAMMA, N_STEP, STACK, action_of, build, check_transitions,
                               episode_table, expected_stack)

HORIZON = 4
sample = jax.jit(replay.sample_transition_windows,
                 static_argnames=("batch_size", "n_step", "frame_stack", "horizon", "full_window",
                                  "sampler"))


@pytest.fixture(scope="module")
def wrapped():
    return build(40)


def windows(state, full_window, key=0):
    return jax.device_get(sample(state, jax.random.key(key), BATCH, N_STEP, GAMMA, STACK,
                                 HORIZON, full_window=full_window))


@pytest.mark.parametrize("full_window", [True, False])
def test_windows_follow_the_episode_with_hand_checked_actions_and_stacks(wrapped, full_window):
    batch = windows(wrapped, full_window)
    chex.assert_shape(batch.actions, (BATCH, HORIZON, 1))
    chex.assert_shape(batch.future_obs, (BATCH, HORIZON, 2, 2, 3 * STACK))
    chex.assert_type(batch.future_obs, jnp.uint8)
    chex.assert_shape(batch.future_valid, (BATCH, HORIZON))
    table, oldest = episode_table(), 40 - int(wrapped.size)
    codes = batch.transition.obs[:, 0, 0].reshape(BATCH, STACK, 3).astype(int)
    seen_partial = False
    for i in range(BATCH):
        ep, k, t = codes[i, -1]
        length = table[ep][0]
        steps_left = min(length - k, 39 - t)   # in-episode steps after t that were written
        expected_valid = [j <= steps_left for j in range(1, HORIZON + 1)]
        np.testing.assert_array_equal(batch.future_valid[i], expected_valid)
        if full_window:
            assert all(expected_valid), "a full window ran past the episode"
        seen_partial |= not all(expected_valid)
        for j in range(1, HORIZON + 1):
            future = batch.future_obs[i, j - 1, 0, 0].reshape(STACK, 3).astype(int)
            j_used = min(j, steps_left)     # past the end, the last in-episode stack repeats
            assert tuple(future[-1]) == (ep, k + j_used, t + j_used)
            assert [tuple(c) for c in future[:, 1:]] == expected_stack((ep, k + j_used, t + j_used), oldest)
            want = action_of(ep, k + j) if j <= steps_left else 0.0
            assert batch.actions[i, j - 1, 0] == pytest.approx(want)
    assert seen_partial == (not full_window)
    # the transition part is exactly what sample_transitions gives at those starts
    if not full_window:
        check_transitions(wrapped, batch.transition, 40)


def test_full_windows_are_a_subset_of_transition_starts(wrapped):
    steps_ok = np.asarray(replay.window_steps_in_episode(wrapped, HORIZON))
    starts = np.asarray(replay.valid_transition_starts(wrapped, N_STEP))
    # step-wise validity only ever turns off along the window
    assert (steps_ok[..., 1:] <= steps_ok[..., :-1]).all()
    assert steps_ok[..., -1].sum() < starts.sum()
    assert (steps_ok[..., 0] | ~starts).all()   # a valid start always has its first step


def test_bad_horizon_is_refused(wrapped):
    with pytest.raises(ValueError, match="horizon must be an int"):
        replay.sample_transition_windows(wrapped, jax.random.key(0), 4, N_STEP, GAMMA, STACK, 0)
