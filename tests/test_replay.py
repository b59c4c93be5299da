"""Tests for rl/replay: ring writes, episode-safe n-step transitions, frame stacks, sequences,
samplers, jit / host-fallback equivalence, checkpoint round trip.

Frames encode (episode id, step in episode, global time) in their three channels, so every sampled
frame can be traced back to where it came from and checked against the episode table.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl import replay
from rl.core.types import ActionSpec, EnvSpec, TimeStep

SPEC = EnvSpec("codes", obs_shape=(2, 2, 3), action=ActionSpec.box(1))
NUM_ENVS, PER_ENV = 2, 16
GAMMA, N_STEP, STACK, LENGTH, BATCH = 0.5, 3, 3, 5, 512

# (length, ends in a true terminal) per episode; an episode of length L fills L+1 slots (k = 0..L).
EPISODES = {0: [(5, True), (3, False), (1, True), (7, False), (2, True)] * 3,
            1: [(2, False), (6, True), (1, False), (4, True)] * 4}


def episode_id(env: int, index: int) -> int:
    return env * 100 + index


def reward_of(ep: int, k: int) -> float:
    return float(k) + 0.25 * (ep % 7)


def action_of(ep: int, k: int) -> float:
    return float(ep * 10 + k)


def episode_table() -> dict[int, tuple[int, bool]]:
    return {episode_id(e, i): ep for e, eps in EPISODES.items() for i, ep in enumerate(eps)}


def make_stream(num_steps: int) -> list[list[tuple[int, int]]]:
    """stream[e][t] = (episode id, step k) of env e at global time t."""
    stream = []
    for env, episodes in EPISODES.items():
        steps = [(episode_id(env, i), k) for i, (length, _) in enumerate(episodes)
                 for k in range(length + 1)]
        assert len(steps) >= num_steps
        stream.append(steps[:num_steps])
    return stream


def timestep_at(stream, t: int) -> tuple[TimeStep, np.ndarray]:
    table = episode_table()
    obs, reward, discount, first, last, terminal, action = [], [], [], [], [], [], []
    for env_stream in stream:
        ep, k = env_stream[t]
        length, is_terminal = table[ep]
        obs.append(np.broadcast_to(np.array([ep, k, t], np.uint8), (2, 2, 3)))
        first.append(k == 0)
        last.append(k == length)
        terminal.append(k == length and is_terminal)
        discount.append(0.0 if terminal[-1] else 1.0)
        reward.append(99.0 if k == 0 else reward_of(ep, k))      # add() must zero it on is_first
        action.append([-7.0 if k == 0 else action_of(ep, k)])   # ditto
    ts = TimeStep(np.stack(obs), np.array(reward, np.float32), np.array(discount, np.float32),
                  np.array(first), np.array(last), np.array(terminal), {})
    return ts, np.array(action, np.float32)


def build(num_steps: int, device=None, per_env: int = PER_ENV) -> replay.ReplayState:
    stream = make_stream(num_steps)
    state = replay.init(SPEC, per_env * NUM_ENVS, NUM_ENVS, device=device)
    for t in range(num_steps):
        state = replay.add_timestep(state, *timestep_at(stream, t))
    return state


sample_transitions = jax.jit(replay.sample_transitions,
                             static_argnames=("batch_size", "n_step", "frame_stack", "sampler"))
sample_sequences = jax.jit(replay.sample_sequences, static_argnames=("batch_size", "length", "sampler"))


def transitions(state, key=0, sampler=replay.uniform):
    return jax.device_get(sample_transitions(state, jax.random.key(key), BATCH, N_STEP, GAMMA, STACK,
                                             sampler=sampler))


@pytest.fixture(scope="module")
def wrapped():
    """40 steps through 16-slot rings: wrapped more than twice."""
    return build(40)


@pytest.fixture(scope="module")
def partial():
    return build(11)


# ---------------------------------------------------------------------------------------------
# init / add


def test_init_shapes_and_dtypes():
    state = replay.init(SPEC, 33, NUM_ENVS)   # 33 // 2 = 16 slots per env
    chex.assert_shape(state.obs, (2, 16, 2, 2, 3))
    chex.assert_type(state.obs, jnp.uint8)
    chex.assert_shape(state.action, (2, 16, 1))
    chex.assert_type(state.action, jnp.float32)
    chex.assert_shape([state.reward, state.discount, state.priority], (2, 16))
    chex.assert_type([state.is_first, state.is_last, state.is_terminal], bool)
    chex.assert_type([state.ptr, state.size], jnp.int32)
    discrete = replay.init(EnvSpec("d", (2, 2, 3), ActionSpec.categorical(4)), 8, 2)
    chex.assert_shape(discrete.action, (2, 4))
    chex.assert_type(discrete.action, jnp.int32)
    assert replay.projected_bytes(SPEC, 33, NUM_ENVS) == 2 * 16 * (12 + 4 + 4 * 3 + 3)
    assert "32 transitions" in replay.describe(SPEC, 33, NUM_ENVS)


def test_bad_sizes_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="capacity=3"):
        replay.init(SPEC, 3, 2)
    with pytest.raises(ValueError, match="num_envs"):
        replay.init(SPEC, 8, 0)
    state = replay.init(SPEC, 8, 2)
    ts, action = timestep_at(make_stream(1), 0)
    with pytest.raises(ValueError, match="uint8"):
        replay.add(state, ts.obs.astype(np.float32), action, ts.reward, ts.discount,
                   ts.is_first, ts.is_last, ts.is_terminal)
    with pytest.raises(ValueError, match="action has shape"):
        replay.add(state, ts.obs, action[:, 0], ts.reward, ts.discount,
                   ts.is_first, ts.is_last, ts.is_terminal)
    with pytest.raises(ValueError, match="n_step"):
        replay.sample_transitions(state, jax.random.key(0), 4, 4, 0.9, 1)
    with pytest.raises(ValueError, match="frame_stack"):
        replay.gather_stack(state, jnp.zeros(2, jnp.int32), jnp.zeros(2, jnp.int32), 0)
    with pytest.raises(ValueError, match="alpha"):
        replay.prioritized(-1.0)


def test_add_wraps_around_and_zeroes_first_action_and_reward():
    state = build(6, per_env=4)
    assert int(state.ptr) == 2 and int(state.size) == 4
    np.testing.assert_array_equal(replay.slot_ages(state), [1, 0, 3, 2])
    times = np.asarray(state.obs[:, :, 0, 0, 2])
    np.testing.assert_array_equal(times, [[4, 5, 2, 3]] * 2)    # slot 0,1 overwritten by t=4,5
    stream = make_stream(6)
    for env in range(2):
        for slot, t in enumerate([4, 5, 2, 3]):
            ep, k = stream[env][t]
            assert bool(state.is_first[env, slot]) == (k == 0)
            expected_reward = 0.0 if k == 0 else reward_of(ep, k)
            expected_action = 0.0 if k == 0 else action_of(ep, k)
            assert float(state.reward[env, slot]) == pytest.approx(expected_reward)
            assert float(state.action[env, slot, 0]) == pytest.approx(expected_action)


# ---------------------------------------------------------------------------------------------
# transitions


def expected_stack(ep_k_t_newest, oldest_time):
    """(k, t) of each frame in a stack ending at (k, t), oldest first."""
    _, k, t = ep_k_t_newest
    furthest = min(k, t - oldest_time)
    return [(k - min(j, furthest), t - min(j, furthest)) for j in reversed(range(STACK))]


def check_transitions(state, batch, num_steps):
    table = episode_table()
    size = int(state.size)
    oldest = num_steps - size
    codes = batch.obs[:, 0, 0].reshape(BATCH, STACK, 3).astype(int)
    next_codes = batch.next_obs[:, 0, 0].reshape(BATCH, STACK, 3).astype(int)
    num_valid = 0
    stream = make_stream(num_steps)
    for env in range(NUM_ENVS):
        for t in range(oldest, num_steps - N_STEP):
            ep, k = stream[env][t]
            num_valid += k < table[ep][0]
    for i in range(BATCH):
        ep, k, t = codes[i, -1]
        length, terminal = table[ep]
        assert k < length, "started on an episode's last step"
        assert oldest <= t <= num_steps - 1 - N_STEP
        assert (codes[i, :, 0] == ep).all() and (next_codes[i, :, 0] == ep).all(), "crossed an episode"
        assert [tuple(c) for c in codes[i, :, 1:]] == expected_stack((ep, k, t), oldest)
        m = min(N_STEP, length - k)
        assert tuple(next_codes[i, -1]) == (ep, k + m, t + m)
        assert [tuple(c) for c in next_codes[i, :, 1:]] == expected_stack((ep, k + m, t + m), oldest)
        expected_return = sum(GAMMA ** (j - 1) * reward_of(ep, k + j) for j in range(1, m + 1))
        ends_terminal = terminal and k + m == length
        assert batch.reward[i] == pytest.approx(expected_return, rel=1e-6)
        assert batch.discount[i] == pytest.approx(0.0 if ends_terminal else GAMMA ** m)
        assert batch.action[i, 0] == pytest.approx(action_of(ep, k + 1))
        assert int(state.obs[batch.env_index[i], batch.slot[i], 0, 0, 2]) == t
    np.testing.assert_allclose(batch.prob, 1.0 / num_valid, rtol=1e-6)


def test_transitions_shapes_and_dtypes(wrapped):
    batch = transitions(wrapped)
    chex.assert_shape([batch.obs, batch.next_obs], (BATCH, 2, 2, 3 * STACK))
    chex.assert_type([batch.obs, batch.next_obs], jnp.uint8)
    chex.assert_shape(batch.action, (BATCH, 1))
    chex.assert_shape([batch.reward, batch.discount, batch.prob, batch.env_index, batch.slot], (BATCH,))
    chex.assert_type([batch.reward, batch.discount, batch.prob], jnp.float32)
    chex.assert_type([batch.env_index, batch.slot], jnp.int32)


def test_transitions_stay_in_episode_with_hand_checked_targets(wrapped, partial):
    for state, num_steps in ((wrapped, 40), (partial, 11)):
        batch = transitions(state)
        check_transitions(state, batch, num_steps)
    # the sample covers the interesting cases, so the checks above exercised them
    codes = transitions(wrapped).obs[:, 0, 0].reshape(BATCH, STACK, 3)
    table = episode_table()
    ms = [min(N_STEP, table[ep][0] - k) for ep, k, _ in codes[:, -1]]
    assert min(ms) == 1 and max(ms) == N_STEP
    assert (transitions(wrapped).discount == 0).any()                        # terminal inside the window
    assert any(m < N_STEP and not table[ep][1] for m, (ep, _, _) in zip(ms, codes[:, -1]))  # truncation


def test_n_step_return_hand_cases():
    reward = jnp.array([[1.0, 2.0, 4.0]] * 4)
    discount = jnp.array([[1.0, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 1]])
    is_last = jnp.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    is_first = jnp.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]], bool)
    ret, boot, m = replay.n_step_return(reward, discount, is_first, is_last, 0.5)
    # full window; terminal at k=2; truncation at k=1; a new episode at k=2 with no is_last before it
    np.testing.assert_allclose(ret, [1 + 1 + 1, 1 + 1, 1, 1])
    np.testing.assert_allclose(boot, [0.125, 0.0, 0.5, 0.5])
    np.testing.assert_array_equal(m, [3, 2, 1, 1])


def test_valid_transition_starts_hand_case():
    # one env, 7 slots, 6 written (slot 6 empty): flags set by hand, including an is_last not
    # followed by is_first (slot 1) and an is_first not preceded by is_last (slot 4)
    state = replay.init(SPEC, 7, 1)
    for first, last in ((True, False), (False, True), (False, False), (False, False),
                        (True, False), (False, False)):
        state = replay.add(state, jnp.zeros((1, 2, 2, 3), jnp.uint8), jnp.zeros((1, 1)), jnp.zeros(1),
                           jnp.ones(1), jnp.array([first]), jnp.array([last]), jnp.array([False]))
    valid = np.asarray(replay.valid_transition_starts(state, 2))[0]
    # slots 4, 5 lack two written successors; slot 1 is an episode's last step; slot 3 runs into
    # a new episode; slot 6 is not written
    np.testing.assert_array_equal(valid, [True, False, True, False, False, False, False])
    np.testing.assert_array_equal(replay.valid_sequence_starts(state, 3)[0],
                                  [True, True, True, True, False, False, False])


def test_frame_stack_at_episode_start_and_oldest_edge():
    # one env, 4 slots; episodes A = a0 a1 a2 and B = b0 b1 b2: after 6 writes the ring holds
    # a2 b0 b1 b2 (a2 is the oldest data, its episode's start is overwritten)
    state = replay.init(SPEC, 4, 1)
    for value, first in ((10, True), (11, False), (12, False), (20, True), (21, False), (22, False)):
        state = replay.add(state, jnp.full((1, 2, 2, 3), value, jnp.uint8), jnp.zeros((1, 1)),
                           jnp.zeros(1), jnp.ones(1), jnp.array([first]), jnp.array([False]),
                           jnp.array([False]))
    slots = (jnp.arange(4, dtype=jnp.int32) + state.ptr) % 4        # oldest .. newest
    stacks = replay.gather_stack(state, jnp.zeros(4, jnp.int32), slots, 3)[:, 0, 0, ::3]
    np.testing.assert_array_equal(stacks, [[12, 12, 12], [20, 20, 20], [20, 20, 21], [20, 21, 22]])
    single = replay.gather_stack(state, jnp.zeros(4, jnp.int32), slots, 1)
    np.testing.assert_array_equal(single[:, 0, 0, 0], [12, 20, 21, 22])


# ---------------------------------------------------------------------------------------------
# sequences


def test_sequences_stay_inside_written_data(wrapped, partial):
    for state, num_steps in ((wrapped, 40), (partial, 11)):
        seq = jax.device_get(sample_sequences(state, jax.random.key(1), BATCH, LENGTH))
        chex.assert_shape(seq.obs, (BATCH, LENGTH, 2, 2, 3))
        chex.assert_shape(seq.action, (BATCH, LENGTH, 1))
        chex.assert_shape([seq.reward, seq.discount, seq.is_first, seq.is_last, seq.is_terminal],
                          (BATCH, LENGTH))
        times = seq.obs[:, :, 0, 0, 2].astype(int)
        np.testing.assert_array_equal(np.diff(times, axis=1), 1)    # consecutive, no wrap splice
        assert times.min() == num_steps - int(state.size) and times.max() == num_steps - 1
        # stored fields travel with their frames
        stream = make_stream(num_steps)
        for i in range(0, BATCH, 7):
            for j in range(LENGTH):
                ep, k = stream[seq.env_index[i]][times[i, j]]
                assert seq.is_first[i, j] == (k == 0)
                assert seq.reward[i, j] == pytest.approx(0.0 if k == 0 else reward_of(ep, k))
        np.testing.assert_array_equal(times[:, 0], np.asarray(
            state.obs[seq.env_index, seq.slot, 0, 0, 2]))
    assert seq.is_first[:, 1:].any(), "windows may cross episode boundaries"


# ---------------------------------------------------------------------------------------------
# samplers


def test_prioritized_sampler_respects_weights(wrapped):
    valid = np.asarray(replay.valid_transition_starts(wrapped, N_STEP))
    envs, slots = np.nonzero(valid)
    zero, heavy = (envs[0], slots[0]), (envs[1], slots[1])
    state = replay.update_priorities(wrapped, jnp.array([zero[0], heavy[0]]),
                                     jnp.array([zero[1], heavy[1]]), jnp.array([0.0, 9.0]))
    assert state.max_priority.tolist() == [9.0]   # one priority group (one agent)
    sampler = replay.prioritized(0.5)
    drawn = []
    for key in range(8):
        batch = transitions(state, key=100 + key, sampler=sampler)
        drawn.append(np.stack([batch.env_index, batch.slot, batch.prob], 1))
    drawn = np.concatenate(drawn)
    pairs = [tuple(p) for p in drawn[:, :2].astype(int)]
    total = valid.sum() - 2 + 0.0 + 3.0                          # 9 ** 0.5 = 3
    assert zero not in pairs
    heavy_rate = np.mean([p == heavy for p in pairs])
    assert abs(heavy_rate - 3.0 / total) < 4 * np.sqrt(3.0 / total / len(pairs))
    heavy_prob = drawn[[p == heavy for p in pairs], 2]
    np.testing.assert_allclose(heavy_prob, 3.0 / total, rtol=1e-6)
    # new entries get the running max priority
    ts, action = timestep_at(make_stream(41), 40)
    added = replay.add(state, ts.obs, action, ts.reward, ts.discount, ts.is_first, ts.is_last,
                       ts.is_terminal)
    np.testing.assert_array_equal(added.priority[:, int(state.ptr)], [9.0, 9.0])


def test_recency_mixed_weights(wrapped):
    valid = replay.valid_sequence_starts(wrapped, 1)
    weights = np.asarray(replay.recency_mixed(0.75, recent_window=4)(wrapped, valid))
    ages = np.asarray(replay.slot_ages(wrapped))
    recent = np.broadcast_to(ages < 4, weights.shape)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[recent].sum() == pytest.approx(0.75 + 0.25 * recent.sum() / valid.size)
    nothing_recent = valid & (replay.slot_ages(wrapped) >= 4)[None]
    fallback = np.asarray(replay.recency_mixed(0.75, recent_window=4)(wrapped, nothing_recent))
    np.testing.assert_allclose(fallback, np.asarray(nothing_recent) / np.sum(nothing_recent))


def test_episode_recency_weights():
    # one env, 6 slots, written in order: e0 e0 e1 e1 e1 e2 (e2 newest)
    state = replay.init(SPEC, 6, 1)
    for first in (True, False, True, False, False, True):
        state = replay.add(state, jnp.zeros((1, 2, 2, 3), jnp.uint8), jnp.zeros((1, 1)), jnp.zeros(1),
                           jnp.ones(1), jnp.array([first]), jnp.array([False]), jnp.array([False]))
    np.testing.assert_array_equal(replay.episodes_back(state), [[2, 2, 1, 1, 1, 0]])
    valid = jnp.ones((1, 6), bool)
    weights = np.asarray(replay.EpisodeRecency(decay=2.0, uniform_fraction=0.5)(state, valid))[0]
    recency = np.array([0.25, 0.25, 0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(weights, 0.5 * recency / recency.sum() + 0.5 / 6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# jit, host fallback, checkpoint


def test_jit_and_host_fallback_give_identical_samples(wrapped):
    cpu = jax.devices("cpu")[0]
    assert replay.choose_device(SPEC, 32, budget_bytes=0, num_envs=2) == cpu
    assert replay.choose_device(SPEC, 32, budget_bytes=10**12, num_envs=2) == jax.devices()[0]
    on_host = build(40, device=cpu)
    assert on_host.obs.devices() == {cpu}
    jitted = transitions(on_host, key=3)
    eager = jax.device_get(replay.sample_transitions(wrapped, jax.random.key(3), BATCH, N_STEP, GAMMA, STACK))
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
        np.testing.assert_array_equal(a, b)


def test_state_round_trips_as_plain_arrays(wrapped):
    host = jax.tree.map(np.asarray, wrapped)
    fresh = replay.init(SPEC, PER_ENV * NUM_ENVS, NUM_ENVS)
    assert jax.tree.structure(host) == jax.tree.structure(fresh)
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(fresh)):
        assert a.shape == b.shape and a.dtype == b.dtype
    restored = jax.tree.map(jnp.asarray, host)
    for a, b in zip(jax.tree.leaves(transitions(restored, key=5)), jax.tree.leaves(transitions(wrapped, key=5))):
        np.testing.assert_array_equal(a, b)
