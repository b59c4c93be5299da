"""VectorEnv (auto-reset, seeds, episode statistics, restore, subprocesses) and frame stacking."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.envs import VectorEnv, frame_stack, make, seed_for


def _toy(task="reach", episode_frames=4, **kw):
    return functools.partial(make, f"toy/{task}", episode_frames=episode_frames, **kw)


def _actions(spec, n, rng):
    if spec.action.discrete:
        return rng.integers(spec.action.num_actions, size=n).astype(np.int32)
    return rng.uniform(-1, 1, (n, *spec.action.shape)).astype(np.float32)


def _assert_timesteps_equal(a, b):
    for field in ("obs", "reward", "discount", "is_first", "is_last", "is_terminal"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.info.keys() == b.info.keys()
    for key in a.info:
        np.testing.assert_array_equal(a.info[key], b.info[key], err_msg=key)


def test_auto_reset_and_episode_statistics():
    env = VectorEnv(_toy(episode_frames=3), num_envs=2, seed=0)
    ts = env.reset()
    assert ts.obs.shape == (2, 32, 32, 3) and ts.obs.dtype == np.uint8
    assert ts.is_first.all() and not ts.is_last.any() and (ts.reward == 0).all()
    assert ts.reward.dtype == np.float32 and ts.discount.dtype == np.float32
    assert np.isnan(ts.info["episode_return"]).all() and ts.info["success"].dtype == bool
    rng = np.random.default_rng(0)
    rewards = []
    for t in range(3):
        ts = env.step(_actions(env.spec, 2, rng))
        rewards.append(ts.reward)
        assert not ts.is_first.any() and ts.is_last.all() == (t == 2)
    assert not ts.is_terminal.any() and (ts.discount == 1).all()  # truncation
    np.testing.assert_allclose(ts.info["episode_return"], np.sum(rewards, axis=0), rtol=1e-6)
    np.testing.assert_array_equal(ts.info["episode_length"], [3, 3])
    assert set(np.unique(ts.info["episode_success"])) <= {0.0, 1.0}
    ts = env.step(np.full((2, 2), 5.0, np.float32))  # ignored: this step starts new episodes
    assert ts.is_first.all() and (ts.reward == 0).all() and (ts.discount == 1).all()
    assert np.isnan(ts.info["episode_return"]).all()
    np.testing.assert_array_equal(env.episode_index, [1, 1])
    single = make("toy/reach")
    for i in range(2):
        np.testing.assert_array_equal(ts.obs[i], single.reset(seed_for(0, i, 1))[0])
    env.close()


def test_same_seed_same_run_and_reset_restarts_the_schedule():
    runs = []
    for seed in (3, 3, 4):
        env = VectorEnv(_toy("reach_discrete"), num_envs=2, seed=seed)
        rng = np.random.default_rng(0)
        obs = [env.reset().obs] + [env.step(_actions(env.spec, 2, rng)).obs for _ in range(6)]
        np.testing.assert_array_equal(env.reset().obs, obs[0])
        runs.append(np.stack(obs))
        env.close()
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert not np.array_equal(runs[0][:, 0], runs[0][:, 1])  # envs get different seeds


def test_bad_actions_are_rejected():
    env = VectorEnv(_toy("reach_discrete"), num_envs=2, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.int32))
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        env.step(np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="integers"):
        env.step(np.zeros(2, np.float32))


def _run_with_loop_style_log(env, steps, rng):
    """Steps like rl.loop does: logs each env's actions since its episode's first step."""
    ts = env.reset()
    logs = [[] for _ in range(env.num_envs)]
    for _ in range(steps):
        actions = _actions(env.spec, env.num_envs, rng)
        ts = env.step(actions)
        for i in range(env.num_envs):
            if ts.is_first[i]:
                logs[i] = []
            else:
                logs[i].append(actions[i])
    return ts, logs


@pytest.mark.parametrize("steps", [9, 10, 11])  # ends mid-episode, on is_last, on is_first
def test_restore_by_replaying_actions(steps):
    make_fn = _toy(episode_frames=5)
    env = VectorEnv(make_fn, num_envs=3, seed=7)
    ts, logs = _run_with_loop_style_log(env, steps, np.random.default_rng(1))
    fresh = VectorEnv(make_fn, num_envs=3, seed=7)
    restored = fresh.restore(env.episode_index, [np.asarray(log) for log in logs])
    _assert_timesteps_equal(restored, ts)
    np.testing.assert_array_equal(fresh.episode_index, env.episode_index)
    rng = np.random.default_rng(2)
    for _ in range(6):  # and both continue identically (auto-resets included)
        actions = _actions(env.spec, 3, rng)
        ts = env.step(actions)
        _assert_timesteps_equal(fresh.step(actions), ts)
    again = VectorEnv(make_fn, num_envs=3, seed=7)  # resume_state() holds the same information
    _assert_timesteps_equal(again.restore(**env.resume_state()), ts)


def test_restore_rejects_actions_that_do_not_fit_the_episode():
    env = VectorEnv(_toy(episode_frames=3), num_envs=1, seed=0)
    with pytest.raises(ValueError, match="expected"):
        env.restore(np.array([2]), [np.zeros((4, 2), np.float32)])  # 4 steps reach episode 1


def test_restore_dmc_gives_the_same_pixels():
    pytest.importorskip("dm_control")
    make_fn = functools.partial(make, "dmc/cartpole_swingup", size=64)
    env = VectorEnv(make_fn, num_envs=1, seed=0)
    ts, logs = _run_with_loop_style_log(env, 3, np.random.default_rng(0))
    fresh = VectorEnv(make_fn, num_envs=1, seed=0)
    _assert_timesteps_equal(fresh.restore(env.episode_index, [np.asarray(logs[0])]), ts)
    action = np.full((1, 1), 0.5, np.float32)
    _assert_timesteps_equal(fresh.step(action), env.step(action))
    env.close(), fresh.close()


def test_restore_atari_across_life_loss_soft_resets():
    pytest.importorskip("ale_py")
    make_fn = functools.partial(make, "atari/Breakout", terminal_on_life_loss=True)
    env = VectorEnv(make_fn, num_envs=1, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    lost = 0
    while lost < 2:  # two lives lost: three "episodes" of one game
        ts = env.step(_actions(env.spec, 1, rng))
        lost += int(ts.info["life_loss"][0])
        assert ts.is_terminal[0] == ts.info["life_loss"][0]
    for _ in range(3):
        ts = env.step(_actions(env.spec, 1, rng))
    assert env.episode_index[0] == 2 and env.chain_start[0] == 0
    fresh = VectorEnv(make_fn, num_envs=1, seed=0)
    _assert_timesteps_equal(fresh.restore(**env.resume_state()), ts)
    actions = _actions(env.spec, 1, rng)
    _assert_timesteps_equal(fresh.step(actions), env.step(actions))
    env.close(), fresh.close()


def test_subprocesses_match_in_process_and_propagate_errors():
    make_fn = _toy("reach_discrete", episode_frames=3)
    serial = VectorEnv(make_fn, num_envs=2, seed=5)
    # an env that raises ends its episode (tests/test_reliability.py); here the first fault raises
    parallel = VectorEnv(make_fn, num_envs=2, seed=5, parallel=True, max_consecutive_faults=1)
    assert parallel.spec == serial.spec and parallel.info_keys == serial.info_keys
    _assert_timesteps_equal(parallel.reset(), serial.reset())
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = _actions(serial.spec, 2, rng)
        parallel.step_async(actions)
        _assert_timesteps_equal(parallel.step_wait(), serial.step(actions))
    raised = r"env 1 faulted 1 time\(s\) in a row(.|\n)*ValueError(.|\n)*integer"
    with pytest.raises(RuntimeError, match=raised):
        parallel.step(np.array([0, 9], np.int32))  # action 9 is out of range: raised in env 1
    procs = parallel._pool.procs
    parallel.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(RuntimeError, match=r"env 0 \(worker 0\) raised:(.|\n)*toy task=.nope"):
        VectorEnv(functools.partial(make, "toy/nope"), num_envs=2, seed=0, parallel=True)


def test_workers_host_blocks_of_envs_and_match_in_process():
    make_fn = _toy("reach_discrete", episode_frames=3)
    serial = VectorEnv(make_fn, num_envs=5, seed=5)
    parallel = VectorEnv(make_fn, num_envs=5, seed=5, parallel=True, workers=2,
                         max_consecutive_faults=1)
    assert len(parallel._pool.procs) == 2 and parallel._pool.blocks == [range(0, 3), range(3, 5)]
    _assert_timesteps_equal(parallel.reset(), serial.reset())
    rng = np.random.default_rng(0)
    for t in range(9):  # three episodes of 3 steps, with auto-resets
        actions = _actions(serial.spec, 5, rng)
        parallel.step_async(actions)
        ts = serial.step(actions)
        _assert_timesteps_equal(parallel.step_wait(), ts)
        assert ts.is_first.all() == (t in (3, 7)) and ts.is_last.all() == (t in (2, 6))
    # later rounds of restore send commands to some envs only (env 4 replays across a reset)
    state = {"episode_index": np.array([2, 1, 0, 1, 3]), "chain_start": np.array([2, 1, 0, 1, 2]),
             "actions_per_env": [np.array(a, np.int32)
                                 for a in ([1, 2], [3], [], [4], [1, 2, 3, 4])]}
    _assert_timesteps_equal(parallel.restore(**state), serial.restore(**state))
    np.testing.assert_array_equal(parallel.episode_index, serial.episode_index)
    _assert_timesteps_equal(parallel.step(np.arange(5, dtype=np.int32)),
                            serial.step(np.arange(5, dtype=np.int32)))
    with pytest.raises(RuntimeError, match=r"env 3 faulted(.|\n)*ValueError"):
        parallel.step(np.array([0, 1, 2, 9, 4], np.int32))  # action 9 is out of range: env 3
    procs = parallel._pool.procs
    parallel.close()
    assert not any(p.is_alive() for p in procs)
    serial.close()


@pytest.mark.parametrize("parallel", [False, True])
def test_inactive_envs_pause_and_resume_where_they_were(parallel):
    make_fn = _toy("reach_discrete", episode_frames=3)
    paused = VectorEnv(make_fn, num_envs=3, seed=2, parallel=parallel, workers=2)
    alone = VectorEnv(make_fn, num_envs=3, seed=2)   # reference: env 1 never paused
    first = paused.reset()
    alone.reset()
    rng = np.random.default_rng(1)
    env1_actions = [_actions(alone.spec, 3, rng) for _ in range(5)]
    held = paused.step(env1_actions[0])
    reference = alone.step(env1_actions[0])
    for _ in range(2):   # env 1 paused for two vector steps
        ts = paused.step(env1_actions[1], active=np.array([True, False, True]))
        np.testing.assert_array_equal(ts.obs[1], held.obs[1])
        assert ts.reward[1] == 0 and not (ts.is_first[1] or ts.is_last[1] or ts.is_terminal[1])
        assert ts.discount[1] == 1 and np.isnan(ts.info["episode_return"][1])
    assert paused.episode_index[1] == 0 and len(paused.resume_state()["actions_per_env"][1]) == 1
    for t in range(1, 5):   # env 1 goes on exactly as if it had never paused, resets included
        ts = paused.step(env1_actions[t])
        reference = alone.step(env1_actions[t])
        np.testing.assert_array_equal(ts.obs[1], reference.obs[1])
        assert (ts.reward[1], ts.is_first[1], ts.is_last[1]) == (
            reference.reward[1], reference.is_first[1], reference.is_last[1])
    with pytest.raises(ValueError, match=r"active must be a bool array of shape \(3,\), got int64"):
        paused.step(env1_actions[0], active=np.array([1, 0, 1]))
    assert first.is_first.all()
    paused.close()
    alone.close()


@pytest.mark.parametrize("workers", [0, -1, True, 2.5])
def test_bad_worker_counts_are_refused(workers):
    with pytest.raises(ValueError, match=f"workers must be a positive integer, got {workers!r}"):
        VectorEnv(_toy(), num_envs=2, seed=0, parallel=True, workers=workers)


# ----------------------------------------------------------------------------- frame stack
def test_frame_stack_semantics():
    stack = frame_stack.init(2, (2, 2, 1), 3)
    assert stack.shape == (2, 2, 2, 3) and stack.dtype == jnp.uint8
    push = jax.jit(frame_stack.push)

    def frame(values):
        return jnp.broadcast_to(jnp.asarray(values, jnp.uint8).reshape(2, 1, 1, 1), (2, 2, 2, 1))

    stack = push(stack, frame([1, 5]), jnp.array([True, True]))
    np.testing.assert_array_equal(stack[:, 0, 0], [[1, 1, 1], [5, 5, 5]])  # filled with copies
    stack = push(stack, frame([2, 6]), jnp.array([False, False]))
    stack = push(stack, frame([3, 7]), jnp.array([False, True]))
    np.testing.assert_array_equal(stack[:, 0, 0], [[1, 2, 3], [7, 7, 7]])  # oldest first
    stack = push(stack, frame([4, 8]), jnp.array([False, False]))
    np.testing.assert_array_equal(frame_stack.stacked(stack)[:, 1, 1], [[2, 3, 4], [7, 7, 8]])


def test_frame_stack_keeps_rgb_channels_together():
    stack = frame_stack.init(1, (1, 1, 3), 2)
    rgb = jnp.array([10, 20, 30], jnp.uint8).reshape(1, 1, 1, 3)
    stack = frame_stack.push(stack, rgb, jnp.array([True]))
    stack = frame_stack.push(stack, rgb + 1, jnp.array([False]))
    np.testing.assert_array_equal(stack[0, 0, 0], [10, 20, 30, 11, 21, 31])
    with pytest.raises(ValueError, match="does not hold"):
        frame_stack.push(stack, jnp.zeros((1, 1, 1, 4), jnp.uint8), jnp.array([False]))
