"""rl.modules: the composition by hand, the host checks, and the toy module switched on from the
config (``module=[toy]``) at every call site of DrQ-v2, Rainbow and the imagination agent."""
import dataclasses
import functools
import pathlib

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from experiments import config as config_lib
from rl import modules as modules_lib
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
from rl.agents.rainbow import RainbowAgent, RainbowConfig
from rl.core.distributions import truncated_normal_sample
from rl.loop import learn_step
from rl.modules import ModuleBase, Modules, ToyConfig, WeightInputs

import test_drqv2
import test_rainbow

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()


def _modules_from_cli(*overrides) -> dict:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return config_lib.agent_config(cfg).modules


# ---------------------------------------------------------------- composition by hand
@dataclasses.dataclass(frozen=True)
class FakeConfig:
    name: str
    scale: float = 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class Fake(ModuleBase):
    """Weights ``scale`` on ``critic``; std -> std * scale + 1; target -> target * scale."""

    requires = frozenset({"sample_weights:critic", "noise_std", "value_target", "after_update"})

    def init(self, key, host):
        return {"calls": jnp.zeros((), jnp.int32)}

    def sample_weights(self, state, inputs):
        return jnp.full(inputs.features.shape[:1], self.cfg.scale)

    def noise_std(self, state, step, default):
        return default * self.cfg.scale + 1.0

    def value_target(self, state, inputs, default_target):
        return default_target * self.cfg.scale, {"scale": jnp.asarray(self.cfg.scale)}

    def after_update(self, agent_state, module_state, key, step):
        # records the order: calls = 10 * (calls of every module so far) + scale
        total = sum(s["calls"] for s in agent_state.modules.values())
        return self.put(agent_state, {"calls": 10 * total + int(self.cfg.scale)})


@flax.struct.dataclass
class FakeState:
    modules: dict


class FakeHost:
    name, provides = "fake", frozenset({"sample_weights:critic", "noise_std", "value_target",
                                        "after_update"})


@pytest.fixture
def fake_registered(monkeypatch):
    monkeypatch.setitem(modules_lib.base.REGISTRY._entries, "a", Fake)
    monkeypatch.setitem(modules_lib.base.REGISTRY._entries, "b", Fake)


def test_composition_multiplies_chains_and_runs_in_order(fake_registered):
    mods = Modules.build({"a": FakeConfig("a", 2.0), "b": FakeConfig("b", 3.0)}, FakeHost())
    states = mods.init(jax.random.PRNGKey(0), FakeHost())
    inputs = WeightInputs("critic", None, jnp.zeros((4, 2)))
    np.testing.assert_allclose(mods.sample_weights(states, inputs), [6.0] * 4)     # 2 * 3
    assert mods.sample_weights(states, WeightInputs("actor", None, jnp.zeros((4, 2)))) is None
    # list order: (0.5 * 2 + 1) * 3 + 1 = 7; targets 1 * 2 * 3
    assert float(mods.noise_std(states, 0, jnp.asarray(0.5))) == 7.0
    target, metrics = mods.value_target(states, None, jnp.ones(3))
    np.testing.assert_allclose(target, 6.0)
    assert set(metrics) == {"a/scale", "b/scale"}
    state = mods.after_update(FakeState(modules=states), jax.random.PRNGKey(1), 0)
    assert int(state.modules["a"]["calls"]) == 2 and int(state.modules["b"]["calls"]) == 23
    assert Modules().intrinsic_reward({}, None) is None and not Modules().uses("noise_std")


def test_build_errors_name_the_module_and_what_is_missing(fake_registered):
    with pytest.raises(ValueError, match=r"unknown module 'nope'; valid: \[.*'toy'"):
        Modules.build({"nope": FakeConfig("nope")}, FakeHost())
    with pytest.raises(ValueError, match=r"modules\['a'\] has name 'b'"):
        Modules.build({"a": FakeConfig("b")}, FakeHost())
    with pytest.raises(ValueError, match=r"unknown call sites \['dream'\]"):
        modules_lib.declare_host("bad", frozenset({"dream"}))
    # Rainbow has no activations and no noise std; DrQ-v2 has both
    with pytest.raises(ValueError, match=r"module 'toy' needs \['activations', 'noise_std'\], "
                                         r"which agent=rainbow does not provide.*"
                                         r"'activations': \[[^\]]*'drqv2'"):
        RainbowAgent(RainbowConfig.tiny(modules={"toy": ToyConfig(observe=True, noise_std=0.1)}),
                     test_rainbow.SPEC)
    with pytest.raises(ValueError, match=r"needs \['sample_weights:c51'\], which agent=drqv2"):
        DrQV2Agent(DrQV2Config.tiny(modules={"toy": ToyConfig(weigh=("c51",))}),
                   test_drqv2.SPEC)
    with pytest.raises(ValueError, match="keep_fraction must be in"):
        ToyConfig(keep_fraction=2.0)


# ---------------------------------------------------------------- DrQ-v2, from the CLI
def _drqv2(*overrides):
    modules = _modules_from_cli("agent=drqv2", "module=[toy]", *overrides)
    assert isinstance(modules["toy"], ToyConfig)
    cfg = DrQV2Config.tiny(modules=modules)
    agent = DrQV2Agent(cfg, test_drqv2.SPEC)
    state0 = agent.init(jax.random.PRNGKey(0))
    batch = test_drqv2.make_batch(1, cfg)
    update = jax.jit(agent.update)
    state1, metrics = update(state0, batch, jax.random.PRNGKey(2), jnp.asarray(1000))
    state2, _ = update(state1, batch, jax.random.PRNGKey(3), jnp.asarray(1001))
    return agent, state0, state1, state2, metrics, batch


def test_toy_on_drqv2_zero_weights_stop_the_critic_and_actor():
    agent, state0, state1, state2, metrics, _ = _drqv2(
        "agent.modules.toy.weigh=[critic,actor]", "agent.modules.toy.keep_fraction=0")
    assert agent.modules.uses("sample_weights:critic")
    assert float(metrics["critic_grad_norm"]) == 0.0 and float(metrics["actor_grad_norm"]) == 0.0
    assert float(metrics["critic_loss"]) == 0.0
    for name in ("critic", "encoder", "actor"):
        chex.assert_trees_all_equal(state1.nets[name], state0.nets[name])
    assert int(state2.modules["toy"]["updates"]) == 2                # after_update once each


def test_toy_on_drqv2_half_weights_by_hand():
    """keep_fraction 0.5 on the critic: the loss is the plain squared errors of the first half
    of the batch, summed over the heads and divided by the whole batch size."""
    agent, state0, _, _, metrics, batch = _drqv2("agent.modules.toy.weigh=[critic]")
    plain = DrQV2Agent(DrQV2Config.tiny(), test_drqv2.SPEC)
    _, plain_metrics = jax.jit(plain.update)(state0.replace(modules={}), batch,
                                             jax.random.PRNGKey(2), jnp.asarray(1000))
    # same target, so the weighted loss is below the plain one and above zero
    assert float(metrics["target_q_mean"]) == pytest.approx(float(plain_metrics["target_q_mean"]))
    assert 0.0 < float(metrics["critic_loss"]) < float(plain_metrics["critic_loss"])
    from rl.agents.drqv2.losses import critic_loss
    q1, q2, y = jnp.array([1., 2., 3., 4.]), jnp.array([0., 0., 0., 0.]), jnp.zeros(4)
    loss, _ = critic_loss(q1, q2, y, jnp.array([1., 1., 0., 0.]))
    assert float(loss) == pytest.approx((1 + 4) / 4)


def test_toy_on_drqv2_noise_override_and_activations():
    agent, state0, state1, _, metrics, batch = _drqv2("agent.modules.toy.noise_std=0.05",
                                                      "agent.modules.toy.observe=true")
    assert float(metrics["actor_std"]) == pytest.approx(0.05)
    # acting uses the override: the same draw as truncated_normal_sample with std 0.05
    obs = jnp.asarray(batch.obs[:2, ..., :3])
    carry = agent.initial_carry(2)
    act = jax.jit(agent.act, static_argnums=6)
    key, step = jax.random.PRNGKey(7), jnp.asarray(10 ** 6)
    action, carry1 = act(state1, carry, obs, jnp.ones(2, bool), key, step, True)
    mean, _ = act(state1, carry, obs, jnp.ones(2, bool), key, step, False)
    expected = truncated_normal_sample(jax.random.split(key)[0], mean, 0.05, clip=None)
    np.testing.assert_allclose(action, expected, rtol=1e-6)
    plain = DrQV2Agent(DrQV2Config.tiny(), test_drqv2.SPEC)
    default, _ = jax.jit(plain.act, static_argnums=6)(state1, carry, obs, jnp.ones(2, bool), key,
                                                      step, True)
    assert not np.allclose(default, action)
    # the observer saw the actor's sown activations of the augmented obs
    assert float(state1.modules["toy"]["activation_mean"]) > 0.0
    assert "toy/activation_mean" in metrics


# ---------------------------------------------------------------- Rainbow, from the CLI
def _rainbow(*overrides):
    modules = _modules_from_cli("env=toy/reach_discrete", "agent=rainbow", "module=[toy]",
                                *overrides)
    agent = RainbowAgent(dataclasses.replace(test_rainbow.PLAIN, modules=modules),
                         test_rainbow.SPEC)
    state0 = agent.init(jax.random.PRNGKey(0))
    learn = jax.jit(functools.partial(learn_step, agent))
    replay = test_rainbow.make_replay()
    state1, replay, metrics = learn(state0, replay, jax.random.PRNGKey(1), jnp.asarray(0))
    state2, _, _ = learn(state1, replay, jax.random.PRNGKey(2), jnp.asarray(1))
    return agent, state0, state1, state2, metrics


def test_toy_on_rainbow_zero_weights_stop_the_c51_gradient_and_counts_updates():
    agent, state0, state1, state2, metrics = _rainbow("agent.modules.toy.weigh=[c51]",
                                                      "agent.modules.toy.keep_fraction=0")
    assert float(metrics["loss"]) == 0.0 and float(metrics["grad_norm"]) == 0.0
    assert float(metrics["cross_entropy"]) > 0.0      # the map is there, its weights are 0
    chex.assert_trees_all_equal(state1.nets["online"], state0.nets["online"])
    assert int(state2.modules["toy"]["updates"]) == 2
    _, s0, s1, _, half = _rainbow("agent.modules.toy.weigh=[c51]")
    assert 0.0 < float(half["loss"]) and float(half["grad_norm"]) > 0.0


# ---------------------------------------------------------------- the imagination agent
def _imagination(*overrides):
    """The debug imagination agent with the toy module from the CLI: two jitted updates on one
    fixed batch; returns the agent, the states and both updates' metrics."""
    import test_imagination
    from rl.agents.imagination import ImaginationAgent
    from rl.agents.imagination.config import preset

    modules = _modules_from_cli("agent=imagination", "module=[toy]", *overrides)
    cfg = dataclasses.replace(preset("debug"), modules=modules)
    agent = ImaginationAgent(cfg, test_imagination.SPEC)
    batch = test_imagination._fixed_batch(cfg.batch_size, cfg.length, discrete=False)
    state0 = jax.jit(agent.init)(jax.random.PRNGKey(0))
    update = jax.jit(agent.update)
    state1, m1 = update(state0, batch, jax.random.PRNGKey(1), jnp.int32(0))
    state2, m2 = update(state1, batch, jax.random.PRNGKey(2), jnp.int32(1))
    return agent, state0, state2, m1, m2


def test_toy_on_imagination_intrinsic_reward_noise_and_after_update():
    agent, state0, state2, m1, _ = _imagination("agent.modules.toy.intrinsic=0.5",
                                                "agent.modules.toy.noise_std=2.0")
    assert int(state2.modules["toy"]["updates"]) == 2          # after_update once per update
    np.testing.assert_allclose(m1["actor/imag_intrinsic"], 0.5)
    # the bonus enters the imagined reward, nothing else changes: same params, same keys
    _, _, _, plain, _ = _imagination("agent.modules.toy.count_updates=false")
    assert "actor/imag_intrinsic" not in plain
    np.testing.assert_allclose(m1["actor/imag_reward"] - plain["actor/imag_reward"], 0.5,
                               rtol=1e-5)
    np.testing.assert_allclose(m1["wm/loss"], plain["wm/loss"])
    # the noise override: std 2 around the actor's action, clipped to the box, so far from it
    carry = agent.initial_carry(64)
    obs = jnp.zeros((64, 32, 32, 3), jnp.uint8)
    first = jnp.ones((64,), bool)
    act = jax.jit(agent.act, static_argnames=("explore",))
    noisy, _ = act(state0, carry, obs, first, jax.random.PRNGKey(3), jnp.int32(0), explore=True)
    mode, _ = act(state0, carry, obs, first, jax.random.PRNGKey(3), jnp.int32(0), explore=False)
    assert float(jnp.mean(jnp.abs(noisy - mode))) > 0.5      # expl_noise 0.3 would give ~0.25


def test_imagination_rejects_a_module_it_cannot_host():
    with pytest.raises(ValueError, match=r"module 'toy' needs \['sample_weights:c51'\].*rainbow"):
        _imagination("agent.modules.toy.weigh=[c51]")
