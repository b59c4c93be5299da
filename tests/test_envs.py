"""Single-env suites and the registry: specs, stepping, seeding, action repeat, errors."""
import subprocess
import sys

import numpy as np
import pytest

from rl.envs import list_envs, make
from rl.envs import dmc as dmc_lib
from rl.envs.toy import REWARD_SCALE


def _random_action(spec, rng):
    if spec.action.discrete:
        return np.int32(rng.integers(spec.action.num_actions))
    return rng.uniform(-1, 1, spec.action.shape).astype(np.float32)


def _check_obs(env, obs):
    assert obs.shape == env.spec.obs_shape and obs.dtype == np.uint8


# ----------------------------------------------------------------------------- registry
def test_import_is_light():
    code = ("import sys, rl.envs; heavy = [m for m in ('dm_control', 'mujoco', 'ale_py', "
            "'gymnasium_robotics', 'jax') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_list_envs_names():
    names = list_envs()
    assert "dmc/cheetah_run" in names and "dmc/ball_in_cup_catch" in names
    assert "atari/Pong" in names and "adroit/door" in names and "toy/reach" in names
    assert len(list_envs("dmc")) == len(dmc_lib.DMC_TASKS)
    assert len(list_envs("atari")) == 26


@pytest.mark.parametrize("name, expected", [
    ("cheetah_run", "suite one of"),
    ("mujoco/cheetah_run", "valid suites"),
    ("dmc/cheetah_walk", "cheetah_run"),
    ("adroit/drawer", "door"),
    ("toy/reach3d", "reach_discrete"),
])
def test_unknown_names_list_valid_choices(name, expected):
    with pytest.raises(ValueError, match=expected):
        make(name)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match=r"size=72.*\[64, 84\]"):
        make("dmc/cheetah_run", size=72)
    with pytest.raises(ValueError, match="convention='dreamerv3'"):
        make("dmc/cheetah_run", convention="dreamerv3")
    with pytest.raises(ValueError, match="not used by the 'toy'"):
        make("toy/reach", convention="planet")


def test_dmc_action_repeat_conventions():
    ar = dmc_lib.default_action_repeat
    assert {ar(d, t, "drqv2") for d, t in dmc_lib.DMC_TASKS} == {2}
    assert {ar(d, t, "dreamer") for d, t in dmc_lib.DMC_TASKS} == {2}   # the Dreamer paper
    assert ar("cartpole", "swingup", "planet") == 8
    assert ar("cartpole", "balance", "planet") == 8
    assert ar("finger", "spin", "planet") == 2
    assert ar("finger", "turn_easy", "planet") == 4
    assert ar("walker", "run", "planet") == 2
    assert ar("cheetah", "run", "planet") == 4
    assert ar("ball_in_cup", "catch", "planet") == 4
    assert dmc_lib.resolve_task("cup_catch") == ("ball_in_cup", "catch")
    assert dmc_lib.resolve_task("point_mass_easy") == ("point_mass", "easy")


# ----------------------------------------------------------------------------- toy
@pytest.mark.parametrize("task", ["reach", "reach_discrete"])
def test_toy_spec_and_step(task):
    env = make(f"toy/{task}")
    assert env.spec.obs_shape == (32, 32, 3)
    assert env.spec.action.discrete == (task == "reach_discrete")
    obs, info = env.reset(0)
    _check_obs(env, obs)
    colours = {tuple(c) for c in obs.reshape(-1, 3)}
    assert (240, 60, 60) in colours and (60, 220, 60) in colours  # agent and goal
    rng = np.random.default_rng(0)
    for t in range(50):
        obs, reward, terminated, truncated, info = env.step(_random_action(env.spec, rng))
        _check_obs(env, obs)
        assert 0.0 < reward <= 1.0 and not terminated and isinstance(info["success"], bool)
        assert truncated == (t == 49)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(_random_action(env.spec, rng))


def test_toy_reward_is_distance_shaped():
    env = make("toy/reach")
    env.reset(1)
    _, reward, *_ = env.step(np.zeros(2, np.float32))
    distance = np.linalg.norm(env._agent - env.goal_centre)
    np.testing.assert_allclose(reward, np.exp(-distance / REWARD_SCALE), rtol=1e-6)


@pytest.mark.parametrize("agent_size,goal_size", [(3, 4), (6, 8), (5, 5)])
def test_toy_sprite_sizes(agent_size, goal_size):
    env = make("toy/reach", agent_size=agent_size, goal_size=goal_size)
    from rl.envs.toy import AGENT_COLOUR, GOAL_COLOUR
    for seed in range(20):   # sprites stay whole inside the image wherever they start
        obs, _ = env.reset(seed)
        for _ in range(10):
            obs, *_ = env.step(np.array([1.0, -1.0]) if seed % 2 else np.array([-1.0, 1.0]))
        agent = np.all(obs == AGENT_COLOUR, axis=-1)
        goal_visible = np.all(obs == GOAL_COLOUR, axis=-1).sum()
        assert agent.sum() == agent_size ** 2
        rows, cols = np.nonzero(agent)
        assert np.ptp(rows) == np.ptp(cols) == agent_size - 1
        assert goal_size ** 2 - agent_size ** 2 <= goal_visible <= goal_size ** 2
    env.reset(0)
    env._agent = env.goal_centre.copy()     # on the goal's centre: success, reward 1
    _, reward, *_, info = env.step(np.zeros(2))
    assert info["success"] and reward == pytest.approx(1.0)


def test_toy_rejects_sprites_larger_than_half_the_image():
    with pytest.raises(ValueError, match="agent_size=20 .* size // 2 = 16"):
        make("toy/reach", agent_size=20)
    with pytest.raises(ValueError, match="fixed_goal must be true or false, got 'no'"):
        make("toy/reach", fixed_goal="no")


def test_toy_same_seed_same_episode():
    a, b = make("toy/reach"), make("toy/reach")
    np.testing.assert_array_equal(a.reset(5)[0], b.reset(5)[0])
    assert not np.array_equal(a.reset(5)[0], b.reset(6)[0])


def test_toy_action_repeat_sums_rewards():
    once, twice = make("toy/reach"), make("toy/reach", action_repeat=2)
    assert twice.spec.action_repeat == 2
    once.reset(3), twice.reset(3)
    action = np.array([0.7, -0.4], np.float32)
    r1 = once.step(action)[1] + once.step(action)[1]
    obs2, r2, *_ = twice.step(action)
    np.testing.assert_allclose(r2, r1, rtol=1e-12)
    np.testing.assert_array_equal(obs2, once.render())
    steps, truncated = 1, False
    while not truncated:
        truncated = twice.step(action)[3]
        steps += 1
    assert steps == 25  # 50 frames / repeat 2


def test_toy_random_policy_scores_clearly_below_oracle():
    env = make("toy/reach_discrete")
    rng = np.random.default_rng(0)
    returns = {"random": [], "oracle": []}
    for policy in returns:
        for seed in range(20):
            env.reset(seed)
            total, done = 0.0, False
            while not done:
                action = (env.oracle_action() if policy == "oracle"
                          else _random_action(env.spec, rng))
                _, reward, terminated, truncated, _ = env.step(action)
                total, done = total + reward, terminated or truncated
            returns[policy].append(total)
    assert np.mean(returns["random"]) < 20 and np.mean(returns["oracle"]) > 35


def test_toy_rejects_bad_actions():
    env = make("toy/reach_discrete")
    env.reset(0)
    with pytest.raises(ValueError, match="integer"):
        env.step(np.int32(5))
    env = make("toy/reach")
    env.reset(0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))


# ----------------------------------------------------------------------------- dmc
@pytest.fixture(scope="module")
def dm_suite():
    return pytest.importorskip("dm_control.suite")


def test_dmc_task_table_matches_installed_suite(dm_suite):
    assert dmc_lib.DMC_TASKS == tuple(dm_suite.ALL_TASKS)


@pytest.mark.parametrize("size", [64, 84])
def test_dmc_spec_and_step(dm_suite, size):
    env = make("dmc/cartpole_swingup", size=size)
    assert env.spec.obs_shape == (size, size, 3) and env.spec.action_repeat == 2
    assert env.spec.action.shape == (1,) and env.spec.max_episode_frames == 1000
    obs, _ = env.reset(0)
    _check_obs(env, obs)
    obs, reward, terminated, truncated, info = env.step(np.array([0.5], np.float32))
    _check_obs(env, obs)
    assert isinstance(reward, float) and not terminated and not truncated and info == {}
    env.close()


def test_dmc_renderer_matches_physics_render(dm_suite):
    for name, size, camera in [("dmc/cartpole_swingup", 84, 0), ("dmc/quadruped_walk", 64, 2)]:
        env = make(name, size=size)
        assert env.camera == camera
        env.reset(0)
        rng = np.random.default_rng(0)
        for _ in range(2):
            ours = env.step(_random_action(env.spec, rng))[0]
            reference = env.physics.render(size, size, camera_id=camera)
            np.testing.assert_array_equal(ours, reference)
        env.close()  # frees dm_control's contexts too (see DMCEnv.close)


def test_dmc_same_seed_same_initial_state(dm_suite):
    env = make("dmc/reacher_easy", size=64)
    obs_a, _ = env.reset(7)
    state_a = env.physics.get_state().copy()
    env.step(np.ones(2, np.float32))
    obs_b, _ = env.reset(7)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(state_a, env.physics.get_state())
    obs_c, _ = env.reset(8)
    assert not np.array_equal(obs_a, obs_c)
    env.close()


def test_dmc_action_repeat_sums_rewards_and_truncates(dm_suite):
    once = make("dmc/cartpole_balance", size=64, action_repeat=1, episode_frames=6)
    thrice = make("dmc/cartpole_balance", size=64, action_repeat=3, episode_frames=6)
    once.reset(0), thrice.reset(0)
    action = np.array([0.3], np.float32)
    rewards = [once.step(action)[1] for _ in range(3)]
    obs3, r3, terminated, truncated, _ = thrice.step(action)
    assert r3 == pytest.approx(sum(rewards), rel=1e-12) and r3 > 0
    np.testing.assert_array_equal(obs3, once.render())
    assert not terminated and not truncated
    *_, terminated, truncated, _ = thrice.step(action)
    assert truncated and not terminated  # 6 frames: the time limit truncates (discount 1)
    once.close(), thrice.close()


def test_dmc_actions_map_onto_task_bounds(dm_suite):
    env = make("dmc/quadruped_run", size=64)
    bounds = env._env.action_spec()
    np.testing.assert_allclose(env._scaled(np.ones(12)), bounds.maximum, rtol=1e-6)
    np.testing.assert_allclose(env._scaled(-np.ones(12)), bounds.minimum, rtol=1e-6)
    np.testing.assert_allclose(env._scaled(3 * np.ones(12)), bounds.maximum, rtol=1e-6)  # clip
    env.close()


# ----------------------------------------------------------------------------- atari
@pytest.fixture(scope="module")
def ale():
    pytest.importorskip("cv2")
    return pytest.importorskip("ale_py")


@pytest.mark.parametrize("convention, shape", [("spr", (84, 84, 1)), ("storm", (64, 64, 3))])
def test_atari_spec_and_step(ale, convention, shape):
    env = make("atari/Pong", convention=convention)
    assert env.spec.obs_shape == shape and env.spec.action_repeat == 4
    assert env.spec.action.num_actions == 6 and env.spec.max_episode_frames == 108_000
    obs, info = env.reset(0)
    _check_obs(env, obs)
    assert set(env.info_keys) <= set(info)
    for a in range(3):
        obs, reward, terminated, truncated, info = env.step(np.int32(a))
        _check_obs(env, obs)
        assert set(env.info_keys) <= set(info) and not terminated and not truncated
    env.close()


def test_atari_unknown_game_lists_games(ale):
    with pytest.raises(ValueError, match="MsPacman"):
        make("atari/PacMan")
    with pytest.raises(ValueError, match="valid options"):
        make("atari/Pong", sticky=0.1)


def test_atari_max_pool_and_resize_match_the_protocol(ale):
    import ale_py
    import cv2
    import gymnasium

    env = make("atari/Breakout", noop_max=0)
    gymnasium.register_envs(ale_py)
    raw = gymnasium.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0,
                         full_action_space=False, obs_type="grayscale")
    env.reset(11)
    raw.reset(seed=11)
    for action in [1, 2, 3]:  # FIRE, RIGHT, LEFT
        frames = [raw.step(action)[0] for _ in range(4)]
        expected = cv2.resize(np.maximum(frames[2], frames[3]), (84, 84),
                              interpolation=cv2.INTER_AREA)[..., None]
        np.testing.assert_array_equal(env.step(np.int32(action))[0], expected)
    env.close(), raw.close()


def test_atari_same_seed_same_obs(ale):
    env = make("atari/MsPacman")
    rng = np.random.default_rng(0)
    actions = rng.integers(env.spec.action.num_actions, size=10).astype(np.int32)
    runs = []
    for _ in range(2):
        env.reset(3)
        runs.append([env.step(a)[0] for a in actions])
    np.testing.assert_array_equal(np.stack(runs[0]), np.stack(runs[1]))
    env.close()


def _play_until_life_loss(env, rng, max_steps=3000):
    for _ in range(max_steps):
        step = env.step(np.int32(rng.integers(env.spec.action.num_actions)))
        if step[4]["life_loss"]:
            return step
    raise AssertionError("no life lost")


def test_atari_life_loss_is_terminal_and_the_game_goes_on(ale):
    env = make("atari/Breakout", terminal_on_life_loss=True, life_loss_reset="soft")
    rng = np.random.default_rng(0)
    env.reset(0)
    lives = env._ale.lives()
    obs, _, terminated, truncated, info = _play_until_life_loss(env, rng)
    assert terminated and not truncated and not info["game_over"]
    assert np.isnan(info["game_return"])
    obs2, info2 = env.reset(123)  # soft reset: same game, same frame
    assert info2["soft_reset"] and env._ale.lives() == lives - 1
    np.testing.assert_array_equal(obs, obs2)
    env.step(np.int32(1))
    eval_env = make("atari/Breakout", terminal_on_life_loss=False)
    eval_env.reset(0)
    *_, terminated, _, info = _play_until_life_loss(eval_env, np.random.default_rng(0))
    assert info["life_loss"] and not terminated
    env.close(), eval_env.close()


def test_atari_life_loss_reset_plays_one_noop_frame_by_default(ale):
    """SPR's rlpyt env leaves the lost-life state with one NOOP frame (``_life_reset``); the
    "soft" switch continues from the very frame of the life loss."""
    frames = {}
    for mode in ("noop", "soft"):
        env = make("atari/Breakout", terminal_on_life_loss=True, life_loss_reset=mode)
        env.reset(0)
        obs, *_ = _play_until_life_loss(env, np.random.default_rng(0))
        before = env._ale.getEpisodeFrameNumber()
        obs2, info = env.reset(5)
        frames[mode] = env._ale.getEpisodeFrameNumber() - before
        assert info["soft_reset"] and env.config.life_loss_reset == mode
        env.close()
    assert frames == {"noop": 1, "soft": 0}
    from rl.envs.atari import AtariConfig
    assert AtariConfig().life_loss_reset == "noop"
    with pytest.raises(ValueError, match="life_loss_reset='reset'"):
        AtariConfig(life_loss_reset="reset")


# ----------------------------------------------------------------------------- adroit
@pytest.mark.parametrize("task, size", [("door", 84), ("pen", 64)])
def test_adroit_spec_step_and_success(task, size):
    pytest.importorskip("gymnasium_robotics")
    env = make(f"adroit/{task}", size=size)
    assert env.spec.obs_shape == (size, size, 3) and env.spec.action_repeat == 2
    assert env.spec.max_episode_frames == 200 and not env.spec.action.discrete
    obs, info = env.reset(0)
    _check_obs(env, obs)
    assert info == {"success": False, "success_frames": 0}
    rng = np.random.default_rng(0)
    obs, reward, terminated, truncated, info = env.step(_random_action(env.spec, rng))
    _check_obs(env, obs)
    assert isinstance(info["success"], bool) and 0 <= info["success_frames"] <= 2
    assert not terminated and not truncated and np.isfinite(reward)
    first = obs
    np.testing.assert_array_equal(env.reset(0)[0], env.reset(0)[0])
    assert not np.array_equal(env.reset(0)[0], first)  # the step moved the scene
    env.close()
