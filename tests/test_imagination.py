"""rl/imagination.py (rollout, λ-returns, return normaliser) and the imagination agent."""
import dataclasses
import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.agents.imagination import ImaginationAgent
from rl.agents.imagination.config import ImaginationConfig, preset, with_size
from rl.core.types import ActionSpec, EnvSpec
from rl.core.rollout import rollout
from rl.imagination import ReturnNormalizer, lambda_returns, percentile


# ---- rollout ---------------------------------------------------------------------------------
def _step(state, action, key):
    return {"x": 0.9 * state["x"] + action + 0.1 * jax.random.normal(key, state["x"].shape),
            "big": state["big"] + 1.0}


def _readout(state):
    return jnp.tanh(state["x"])


def _policy(feat, key):
    action = feat + jax.random.uniform(key, feat.shape)
    return action, {"logp": -jnp.square(action).sum(-1)}


def test_rollout_stacks_readouts_only_and_equals_python_loop():
    # "big" stands for a large carry: it is stepped but never stacked
    start = {"x": jnp.arange(6.0).reshape(3, 2), "big": jnp.zeros((3, 50))}
    horizon, key = 4, jax.random.PRNGKey(0)
    out = jax.jit(lambda s, k: rollout(_step, _policy, s, horizon, k, unroll=2,
                                       readout=_readout))(start, key)
    state, feats, actions, logps = start, [_readout(start)], [], []
    for step_key in jax.random.split(key, horizon):
        policy_key, model_key = jax.random.split(step_key)
        action, aux = _policy(_readout(state), policy_key)
        state = _step(state, action, model_key)
        feats.append(_readout(state)), actions.append(action), logps.append(aux["logp"])
    chex.assert_shape(out.feats, (3, horizon + 1, 2))     # the readout, not the carry
    chex.assert_shape(out.actions, (3, horizon, 2))
    np.testing.assert_allclose(out.feats, jnp.stack(feats, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.actions, jnp.stack(actions, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.aux["logp"], jnp.stack(logps, 1), rtol=1e-5, atol=1e-6)
    # open loop under given actions: the same model noise, the actions taken as given
    given = jnp.stack(actions, 1)
    replay = rollout(_step, None, start, horizon, key, readout=_readout, actions=given)
    np.testing.assert_allclose(replay.feats, out.feats, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(replay.actions, given)
    assert replay.aux is None
    with pytest.raises(ValueError, match="exactly one action source"):
        rollout(_step, _policy, start, horizon, key, actions=given)
    with pytest.raises(ValueError, match=r"horizon=3"):
        rollout(_step, None, start, 3, key, actions=given)


# ---- λ-returns -------------------------------------------------------------------------------
def test_lambda_returns_hand_computed_h3():
    r = jnp.array([1.0, 2.0, 3.0])
    v = jnp.array([10.0, 20.0, 30.0, 40.0])
    c = jnp.array([0.9, 0.5, 0.8])
    lam = 0.5
    # next-state bootstrap: G_t = r_t + c_t ((1 - λ) V_{t+1} + λ G_{t+1}), G_3 = V_3 = 40
    g2 = 3.0 + 0.8 * (0.5 * 40.0 + 0.5 * 40.0)     # 35
    g1 = 2.0 + 0.5 * (0.5 * 30.0 + 0.5 * g2)       # 18.25
    g0 = 1.0 + 0.9 * (0.5 * 20.0 + 0.5 * g1)       # 17.2125
    np.testing.assert_allclose(lambda_returns(r, v, c, lam), [g0, g1, g2], rtol=1e-6)
    # STORM's same-index bootstrap: V_t instead of V_{t+1}
    s2 = 3.0 + 0.8 * (0.5 * 30.0 + 0.5 * 40.0)     # 31
    s1 = 2.0 + 0.5 * (0.5 * 20.0 + 0.5 * s2)       # 14.75
    s0 = 1.0 + 0.9 * (0.5 * 10.0 + 0.5 * s1)       # 12.1375
    np.testing.assert_allclose(lambda_returns(r, v, c, lam, "same"), [s0, s1, s2], rtol=1e-6)


def test_lambda_returns_limits_and_batch_axes():
    key = jax.random.PRNGKey(0)
    r = jax.random.normal(key, (2, 3, 5))
    v = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 6))
    c = jnp.full((2, 3, 5), 0.9)
    # λ = 0: one-step TD targets
    np.testing.assert_allclose(lambda_returns(r, v, c, 0.0), r + c * v[..., 1:], rtol=1e-5,
                               atol=1e-6)
    # λ = 1: discounted sum of rewards plus the discounted bootstrap
    mc = v[..., -1]
    expected = []
    for t in reversed(range(5)):
        mc = r[..., t] + 0.9 * mc
        expected.append(mc)
    np.testing.assert_allclose(lambda_returns(r, v, c, 1.0), jnp.stack(expected[::-1], -1),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="H\\+1"):
        lambda_returns(r, v[..., :5], c, 0.9)
    with pytest.raises(ValueError, match="bootstrap"):
        lambda_returns(r, v, c, 0.9, "previous")


# ---- return normaliser -----------------------------------------------------------------------
def test_return_normalizer_hand_computed():
    returns = jnp.arange(100.0)
    norm = ReturnNormalizer.create()
    np.testing.assert_allclose(norm.scale, 1.0)
    norm = jax.jit(ReturnNormalizer.update)(norm, returns)
    # linear percentiles of 0..99: 4.95 and 94.05; EMA from 0 without bias correction
    np.testing.assert_allclose([norm.low, norm.high], [0.01 * 4.95, 0.01 * 94.05], rtol=1e-5)
    np.testing.assert_allclose(norm.scale, 1.0)                      # max(1, 0.891)
    fast = ReturnNormalizer.create(decay=0.0).update(returns)
    np.testing.assert_allclose(fast.scale, 94.05 - 4.95, rtol=1e-5)
    # STORM's k-th value: k = int(0.05 * 100) = 5 -> 4.0; k = 95 -> 94.0
    np.testing.assert_allclose(percentile(returns, 5.0, "kth"), 4.0)
    np.testing.assert_allclose(percentile(returns, 95.0, "kth"), 94.0)
    kth = ReturnNormalizer.create(decay=0.0, method="kth").update(returns)
    np.testing.assert_allclose(kth.scale, 90.0)
    with pytest.raises(ValueError, match="percentile method"):
        ReturnNormalizer.create(method="nearest")


# ---- the agent -------------------------------------------------------------------------------
class Sequences(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    is_first: jax.Array
    is_last: jax.Array
    is_terminal: jax.Array


def _fixed_batch(batch_size, length, discrete, num_actions=2):
    """Moving bright squares on a dark background; reward = the square's column / 10."""
    rng = np.random.default_rng(0)
    obs = np.full((batch_size, length, 32, 32, 3), 20, np.uint8)
    reward = np.zeros((batch_size, length), np.float32)
    for b in range(batch_size):
        row, col = rng.integers(0, 24, 2)
        for t in range(length):
            c = (col + 2 * t) % 24
            obs[b, t, row:row + 8, c:c + 8] = (220, 180, 60)
            reward[b, t] = c / 10.0
    if discrete:
        action = rng.integers(0, num_actions, (batch_size, length)).astype(np.int32)
    else:
        action = rng.uniform(-1, 1, (batch_size, length, num_actions)).astype(np.float32)
    is_first = np.zeros((batch_size, length), bool)
    is_first[:, 0] = True
    is_first[0, length // 2] = True      # an episode boundary inside a window
    action[is_first] = 0
    terminal = np.zeros((batch_size, length), bool)
    return Sequences(jnp.asarray(obs), jnp.asarray(action), jnp.asarray(reward),
                     jnp.asarray(1.0 - terminal, jnp.float32), jnp.asarray(is_first),
                     jnp.asarray(np.roll(is_first, -1, 1)), jnp.asarray(terminal))


SPEC = EnvSpec("squares", (32, 32, 3), ActionSpec.box(2))


@pytest.fixture(scope="module")
def trained():
    """The debug agent after 30 jitted updates on one fixed batch (compiled once)."""
    cfg = dataclasses.replace(preset("debug"), model_lr=3e-3)
    agent = ImaginationAgent(cfg, SPEC)
    batch = _fixed_batch(cfg.batch_size, cfg.length, discrete=False)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    update = jax.jit(agent.update, donate_argnums=0)
    history = []
    for i in range(30):
        state, metrics = update(state, batch, jax.random.PRNGKey(i), jnp.int32(i))
        history.append(jax.device_get(metrics))
    return agent, state, batch, history


def test_update_learns_the_world_model_on_a_fixed_batch(trained):
    agent, state, _, history = trained
    chex.assert_tree_all_finite(state)
    for metrics in history:
        assert all(np.isfinite(v) for v in metrics.values()), metrics
    losses = np.array([m["wm/loss"] for m in history])
    image = np.array([m["wm/loss/image"] for m in history])
    # the image NLL carries the constant 0.5 log(2 pi) per pixel; compare the learnable part
    constant = 0.5 * np.log(2 * np.pi) * 32 * 32 * 3
    assert losses[-5:].mean() < losses[:3].mean()
    assert (image[-5:].mean() - constant) < 0.5 * (image[:3].mean() - constant)
    reward = np.array([m["wm/loss/reward"] for m in history])
    assert reward[-5:].mean() < reward[:3].mean()
    for key in ("actor/loss", "critic/loss", "wm/loss/kl", "wm/loss/reward", "wm/kl",
                "actor/actor_entropy", "critic/value_mean", "wm/grad_norm"):
        assert key in history[-1], key
    # the slow critic trails the critic
    lag = jax.tree.map(lambda s, c: jnp.abs(s - c).max(), state.nets["slow_critic"],
                       state.nets["critic"])
    assert max(jax.tree.leaves(lag)) > 0.0


def test_slow_critic_is_an_ema_of_the_critic():
    cfg = preset("debug")
    agent = ImaginationAgent(cfg, SPEC)
    batch = _fixed_batch(cfg.batch_size, cfg.length, discrete=False)
    state0 = agent.init(jax.random.PRNGKey(0))
    state0 = state0.replace(nets={**state0.nets, "slow_critic": jax.tree.map(
        lambda x: x + 1.0, state0.nets["slow_critic"])})   # make slow and fast critic differ
    state1, _ = jax.jit(agent.update)(state0, batch, jax.random.PRNGKey(1), jnp.int32(0))
    decay = cfg.actor_critic.slow_critic_decay
    expected = jax.tree.map(lambda fast, slow: (1 - decay) * fast + decay * slow,
                            state1.nets["critic"], state0.nets["slow_critic"])
    chex.assert_trees_all_close(state1.nets["slow_critic"], expected, rtol=1e-5, atol=1e-6)


def test_act_and_report(trained):
    agent, state, batch, _ = trained
    act = jax.jit(agent.act, static_argnums=6)
    carry = agent.initial_carry(3)
    obs = batch.obs[:3, 0]
    is_first = jnp.ones((3,), bool)
    action, carry = act(state, carry, obs, is_first, jax.random.PRNGKey(0), jnp.int32(0), True)
    chex.assert_shape(action, (3, 2))
    chex.assert_type(action, jnp.float32)
    assert bool(jnp.all(jnp.abs(action) <= 1.0))
    chex.assert_shape(carry.latent.deter, (3, agent.cfg.world_model.deter))
    np.testing.assert_allclose(carry.prev_action, action)     # box is [-1, 1]: same vector
    mode, _ = act(state, carry, obs, jnp.zeros((3,), bool), jax.random.PRNGKey(1),
                  jnp.int32(1), False)
    chex.assert_shape(mode, (3, 2))
    videos = jax.jit(agent.report)(state, batch, jax.random.PRNGKey(0))
    chex.assert_shape(videos["openloop"], (agent.cfg.length, 32, 3 * 32, 3))
    chex.assert_type(videos["openloop"], jnp.uint8)
    np.testing.assert_array_equal(videos["openloop"][:, :, :32], batch.obs[0])   # truth panel


def test_agent_config_errors():
    discrete = EnvSpec("d", (32, 32, 3), ActionSpec.categorical(3))
    with pytest.raises(ValueError, match="return_indexing='v3'"):
        ImaginationAgent(preset("debug"), discrete)
    with pytest.raises(ValueError, match="loss_scales"):
        cfg = preset("debug")
        wm = dataclasses.replace(cfg.world_model, continue_head=True)
        ImaginationAgent(dataclasses.replace(cfg, world_model=wm), SPEC)
    with pytest.raises(ValueError, match="unknown objective"):
        obj = dataclasses.replace(preset("debug").objectives["reconstruction"], name="nope")
        ImaginationAgent(dataclasses.replace(preset("debug"), objectives={"x": obj}), SPEC)
    with pytest.raises(ValueError, match="return_indexing"):
        ImaginationConfig(return_indexing="v2")
    with pytest.raises(ValueError, match="unknown imagination preset"):
        preset("dreamer_v4")


def test_dreamerv3_like_discrete_agent_traces():
    """The categorical-latent / two-hot / continue-head / REINFORCE path, traced without
    compiling (jax.eval_shape): shapes and dtypes of the new state, metrics and actions."""
    cfg = dataclasses.replace(with_size(preset("dreamerv3_like"), "debug"),
                              batch_size=4, length=8, horizon=5)
    spec = EnvSpec("discrete", (32, 32, 3), ActionSpec.categorical(3))
    agent = ImaginationAgent(cfg, spec)
    batch = _fixed_batch(4, 8, discrete=True, num_actions=3)
    state = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    wm = cfg.world_model
    world_model = state.nets["world_model"]
    assert world_model["rssm"]["prior_stats"]["kernel"].shape[-1] == wm.stoch * wm.classes
    assert "continue" in world_model
    new_state, metrics = jax.eval_shape(agent.update, state, batch, jax.random.PRNGKey(1),
                                        jnp.int32(0))
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
    assert all(m.shape == () for m in metrics.values())
    for key in ("wm/loss/continue", "actor/advantage_mean", "actor/return_scale"):
        assert key in metrics, key
    action, carry = jax.eval_shape(
        functools.partial(agent.act, explore=True), state, agent.initial_carry(2),
        batch.obs[:2, 0], jnp.ones((2,), bool), jax.random.PRNGKey(0), jnp.int32(0))
    assert action.shape == (2,) and action.dtype == jnp.int32
    assert carry.prev_action.shape == (2, 3)
    assert set(jax.eval_shape(agent.report, state, batch, jax.random.PRNGKey(0))) == {"openloop"}
