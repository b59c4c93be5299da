"""DrQ-v2: distributions, schedules, losses by hand, and the jitted update end to end."""
import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rl import replay as replay_lib
from rl.core.objective import Needs, ObjectiveBase
from rl import modules as modules_lib
from rl.core import objective as objective_lib
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config, TargetInputs, min_q_target
from rl.agents.drqv2.losses import actor_loss, critic_loss
from rl.modules import ModuleBase, perturb
from rl.core.schedules import parse_schedule
from rl.core.distributions import truncated_normal_sample
from rl.core.types import ActionSpec, EnvSpec
from rl.core.nets import is_dense_param

SPEC = EnvSpec("tiny", (32, 32, 3), ActionSpec.box(2))
CFG = DrQV2Config.tiny(num_expl_steps=100)
STEP = 1000   # agent step for schedules: linear(1.0, 0.1, 500000) gives 0.9982


def make_batch(seed, cfg=CFG, spec=SPEC) -> replay_lib.Transitions:
    """A random batch shaped like ``sample``'s (numpy: eager jax.random would compile per op)."""
    rng = np.random.default_rng(seed)
    b, (h, w, c), s = cfg.batch_size, spec.obs_shape, cfg.frame_stack
    return replay_lib.Transitions(
        obs=rng.integers(0, 256, (b, h, w, c * s), dtype=np.uint8),
        action=rng.uniform(-1, 1, (b, spec.action.shape[0])).astype(np.float32),
        reward=rng.normal(size=b).astype(np.float32),
        discount=np.full((b,), 0.99 ** 3, np.float32),
        next_obs=rng.integers(0, 256, (b, h, w, c * s), dtype=np.uint8),
        env_index=np.zeros((b,), np.int32), slot=np.arange(b, dtype=np.int32),
        prob=np.ones((b,), np.float32))


def finite(tree) -> bool:
    return all(np.isfinite(x).all() for x in map(np.asarray, jax.tree.leaves(tree))
               if np.issubdtype(x.dtype, np.floating))


@pytest.fixture(scope="module")
def plain():
    agent = DrQV2Agent(CFG, SPEC)
    state0 = agent.init(jax.random.PRNGKey(0))
    batch = make_batch(1)
    update = jax.jit(agent.update)
    state1, metrics = update(state0, batch, jax.random.PRNGKey(2), jnp.asarray(STEP))
    return agent, state0, state1, metrics, batch, update


# ---------------------------------------------------------------- distribution and schedule
def test_truncated_normal_clip_clamp_and_straight_through():
    mean = jnp.array([[0.0, 0.9999995, -0.5, 0.2]] * 500)
    sample = jax.jit(truncated_normal_sample, static_argnames="clip")
    x = sample(jax.random.PRNGKey(0), mean, 10.0, clip=0.3)
    assert float(jnp.max(jnp.abs(x))) <= 1 - 1e-6
    free = jnp.array([0, 2, 3])   # columns far enough from the bounds that only the clip acts
    np.testing.assert_array_less(jnp.abs(x[:, free] - mean[:, free]), 0.3 + 1e-6)
    np.testing.assert_allclose(jnp.max(jnp.abs(x[:, free] - mean[:, free])), 0.3, atol=1e-6)
    unclipped = sample(jax.random.PRNGKey(0), mean, 10.0, clip=None)
    assert float(jnp.max(jnp.abs(unclipped))) == pytest.approx(1 - 1e-6)   # clamped only
    assert float(jnp.mean(jnp.abs(unclipped[:, 0]) > 0.3)) > 0.9           # noise not clipped
    grad = jax.jit(jax.grad(
        lambda m: truncated_normal_sample(jax.random.PRNGKey(0), m, 10.0, 0.3).sum()))(mean)
    assert float(jnp.mean(x[:, 1] == 1 - 1e-6)) > 0.3          # many samples are clamped ...
    np.testing.assert_array_equal(grad, jnp.ones_like(mean))   # ... yet the gradient is 1


def test_schedule_values_and_errors():
    linear = jax.jit(parse_schedule("linear(1.0,0.1,500000)"))
    for step, value in [(0, 1.0), (250000, 0.55), (500000, 0.1), (10**7, 0.1)]:
        assert float(linear(step)) == pytest.approx(value, abs=1e-6)
    step_linear = parse_schedule("step_linear(1.0, 0.5, 100, 0.1, 200)")
    for step, value in [(0, 1.0), (50, 0.75), (100, 0.5), (200, 0.3), (300, 0.1), (999, 0.1)]:
        assert float(step_linear(jnp.asarray(step))) == pytest.approx(value, abs=1e-6)
    assert float(parse_schedule("0.2")(7)) == pytest.approx(0.2)
    assert float(parse_schedule(0.3)(7)) == pytest.approx(0.3)
    for bad in ["lin(1,0.1,5)", "linear(1,0.1)", "linear(1,0.1,5", "linear(1,a,5)",
                "linear(1,0.1,0)", "linear(1,0.1,2,3,4)", "", True, None]:
        with pytest.raises(ValueError, match="schedule"):
            parse_schedule(bad)
    with pytest.raises(ValueError, match="schedule"):
        DrQV2Config(stddev_schedule="linear(1.0,0.1)")


# ---------------------------------------------------------------- losses by hand
def test_min_q_target_and_critic_loss_by_hand():
    inputs = TargetInputs(reward=jnp.array([1.0, 0.5]), discount=jnp.array([0.9, 0.0]),
                          next_q1=jnp.array([2.0, 7.0]), next_q2=jnp.array([3.0, -1.0]),
                          next_features=jnp.zeros((2, 3)), next_action=jnp.zeros((2, 1)),
                          step=jnp.asarray(0))
    target = min_q_target(inputs)
    np.testing.assert_allclose(target, [1.0 + 0.9 * 2.0, 0.5])
    loss, metrics = critic_loss(jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0]), jnp.array([1.0, 1.0]))
    assert float(loss) == pytest.approx((0 + 1) / 2 + (1 + 9) / 2)
    assert float(metrics["target_q_mean"]) == pytest.approx(1.0)
    grad = jax.grad(lambda y: critic_loss(jnp.ones(2), jnp.ones(2), y)[0])(jnp.zeros(2))
    np.testing.assert_array_equal(grad, 0.0)   # the target is held fixed


class FixedQ(nn.Module):
    """Q1 = sum(a), Q2 = 2 sum(a): min is Q1 when sum(a) > 0."""

    @nn.compact
    def __call__(self, features, action):
        return action.sum(-1), 2.0 * action.sum(-1)


def test_actor_loss_value_and_direction(plain):
    agent, state0 = plain[0], plain[1]
    nets = agent.nets._replace(critic=FixedQ())
    features = jax.random.normal(jax.random.PRNGKey(3), (16, agent.repr_dim))
    key, std = jax.random.PRNGKey(4), jnp.asarray(0.2)

    @jax.jit
    def run(params):
        (loss, _), grad = jax.value_and_grad(actor_loss, argnums=1, has_aux=True)(
            nets, params, {}, features, key, std, 0.3)
        action = truncated_normal_sample(key, nets.actor.apply(params, features), std, 0.3)
        stepped = jax.tree.map(lambda p, g: p - 1e-2 * g, params, grad)
        mean_sums = [nets.actor.apply(p, features).sum() for p in (params, stepped)]
        return loss, action.sum(-1), mean_sums

    loss, s, (before, after) = run(state0.nets["actor"])
    assert float(loss) == pytest.approx(float(-jnp.mean(jnp.minimum(s, 2 * s))), rel=1e-6)
    assert float(after) > float(before)   # a descent step on the loss raises Q


def test_encoder_gets_no_gradient_from_actor_loss(plain):
    agent, state0, batch = plain[0], plain[1], plain[4]
    params = state0.nets

    def loss(encoder, actor):
        features = agent.nets.encoder.apply(encoder, batch.obs)
        return actor_loss(agent.nets, actor, params["critic"], features, jax.random.PRNGKey(0),
                          jnp.asarray(0.5), 0.3)[0]

    g_encoder, g_actor = jax.jit(jax.grad(loss, argnums=(0, 1)))(params["encoder"],
                                                                 params["actor"])
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(g_encoder))
    assert optax.global_norm(g_actor) > 0


def test_perturb_by_hand(plain):
    agent = plain[0]
    old, new = agent.init_params(jax.random.PRNGKey(5)), agent.init_params(jax.random.PRNGKey(6))
    # Make LayerNorm params differ so that "kept" is checkable.
    new = {**new, "actor": jax.tree.map(lambda x: x + 1.0, new["actor"])}
    mixed = perturb(old, new, 0.25, where=is_dense_param)
    a_old, a_new, a_mix = (p["actor"]["params"]["trunk"] for p in (old, new, mixed))
    np.testing.assert_allclose(a_mix["dense"]["kernel"],
                               0.25 * a_old["dense"]["kernel"] + 0.75 * a_new["dense"]["kernel"],
                               rtol=1e-6)
    np.testing.assert_allclose(a_mix["dense"]["bias"], 0.75 * a_new["dense"]["bias"])
    np.testing.assert_array_equal(a_mix["norm"]["scale"], a_old["norm"]["scale"])
    chex.assert_trees_all_equal(mixed["encoder"], old["encoder"])   # convs are not dense
    everything = perturb(old, new, 0.25)
    np.testing.assert_allclose(everything["actor"]["params"]["trunk"]["norm"]["scale"],
                               0.25 * 1.0 + 0.75 * 2.0)


# ---------------------------------------------------------------- the update end to end
def test_update_shapes_finite_and_target_ema(plain):
    agent, state0, state1, metrics = plain[:4]
    chex.assert_trees_all_equal_shapes_and_dtypes(state0, state1)
    assert finite(state1)
    assert int(state1.update_count) == 1
    for name in ("encoder", "actor", "critic"):
        before, after = state0.nets[name], state1.nets[name]
        assert any((np.asarray(a) != np.asarray(b)).any()
                   for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before))), name
    expected = jax.tree.map(lambda o, t: 0.01 * np.asarray(o) + 0.99 * np.asarray(t),
                            state1.nets["critic"], state0.nets["critic_target"])
    chex.assert_trees_all_close(state1.nets["critic_target"], expected, rtol=1e-6, atol=1e-7)
    for name in ("critic_loss", "actor_loss", "q_mean", "target_q_mean", "actor_std",
                 "batch_reward", "encoder_grad_norm", "actor_grad_norm", "critic_grad_norm"):
        chex.assert_shape(metrics[name], ())
        chex.assert_type(metrics[name], jnp.float32)
        assert np.isfinite(float(metrics[name])), name
    assert float(metrics["actor_std"]) == pytest.approx(1.0 - 0.9 * STEP / 500000, abs=1e-6)


def test_state_has_no_shared_buffers(plain):
    """The loop donates the state; XLA refuses to donate one buffer twice."""
    for state in plain[1:3]:   # after init and after an update
        pointers = [leaf.unsafe_buffer_pointer() for leaf in jax.tree.leaves(state)]
        assert len(set(pointers)) == len(pointers)
    chex.assert_trees_all_equal(plain[1].nets["critic_target"], plain[1].nets["critic"])


def test_sample_from_replay_feeds_update(plain):
    agent, state1, update = plain[0], plain[2], plain[5]
    replay = replay_lib.init(SPEC, capacity=64, num_envs=2)
    rng = np.random.default_rng(0)
    add = jax.jit(replay_lib.add)
    for t in range(12):
        replay = add(replay, rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
                     rng.uniform(-1, 1, (2, 2)).astype(np.float32), np.ones(2, np.float32),
                     np.ones(2, np.float32), np.full(2, t == 0), np.zeros(2, bool),
                     np.zeros(2, bool))
    batch = jax.jit(agent.sample)(replay, jax.random.PRNGKey(0))
    chex.assert_shape([batch.obs, batch.next_obs], (CFG.batch_size, 32, 32, 9))
    chex.assert_type([batch.obs, batch.action], [jnp.uint8, jnp.float32])
    state2, metrics = update(state1, batch, jax.random.PRNGKey(1), jnp.asarray(STEP))
    assert finite(state2) and int(state2.update_count) == 2
    assert float(metrics["batch_reward"]) == pytest.approx(1 + 0.99 + 0.99 ** 2, rel=1e-5)


def test_act_modes(plain):
    agent, state = plain[0], plain[1]
    act = jax.jit(agent.act, static_argnames=("explore",))
    n = 256
    obs = jax.random.randint(jax.random.PRNGKey(0), (n, 32, 32, 3), 0, 256).astype(jnp.uint8)
    first = jnp.ones((n,), bool)
    carry = agent.initial_carry(n)
    greedy, carry1 = act(state, carry, obs, first, jax.random.PRNGKey(1), jnp.asarray(0), False)
    chex.assert_shape(greedy, (n, 2))
    chex.assert_type(greedy, jnp.float32)
    again, _ = act(state, carry, obs, first, jax.random.PRNGKey(2), jnp.asarray(0), False)
    np.testing.assert_array_equal(greedy, again)
    assert float(jnp.max(jnp.abs(greedy))) < 1
    uniform, _ = act(state, carry, obs, first, jax.random.PRNGKey(1), jnp.asarray(5), True)
    assert float(jnp.std(uniform)) == pytest.approx(1 / np.sqrt(3), abs=0.06)   # U(-1, 1)
    noisy, _ = act(state, carry, obs, first, jax.random.PRNGKey(1), jnp.asarray(STEP), True)
    assert float(jnp.max(jnp.abs(noisy))) <= 1 - 1e-6
    assert float(jnp.std(noisy - greedy)) > 0.5   # std ~1 noise, unclipped when acting


def test_bad_specs_raise():
    with pytest.raises(ValueError, match="continuous"):
        DrQV2Agent(CFG, EnvSpec("atari", (32, 32, 1), ActionSpec.categorical(4)))
    with pytest.raises(ValueError, match="bounds"):
        DrQV2Agent(CFG, EnvSpec("box", (32, 32, 3), ActionSpec.box(2, -2.0, 2.0)))
    with pytest.raises(ValueError, match="feature_dim"):
        DrQV2Config(feature_dim=0)
    with pytest.raises(ValueError, match=r"encoder_dtype='float16'; valid: \['float32', 'bfloat16'\]"):
        DrQV2Config(encoder_dtype="float16")


def test_bfloat16_encoder_keeps_float32_params_and_close_features(plain):
    agent, state0, _, _, batch, _ = plain
    bf16 = DrQV2Agent(dataclasses.replace(CFG, encoder_dtype="bfloat16"), SPEC)
    params = state0.nets["encoder"]     # same float32 parameters for both
    chex.assert_trees_all_equal_shapes_and_dtypes(
        params, bf16.init(jax.random.PRNGKey(0)).nets["encoder"])
    full = agent.encode(state0.nets, batch.obs)
    half = bf16.encode(state0.nets, batch.obs)
    chex.assert_type(half, jnp.float32)
    chex.assert_equal_shape([full, half])
    # bfloat16 keeps ~3 significant digits: close, but not equal
    assert 0 < float(jnp.max(jnp.abs(full - half))) < 0.05 * float(jnp.max(jnp.abs(full)))


# ---------------------------------------------------------------- objectives and modules
@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    name: str = "probe"
    offset: float = -1.0       # loss = mean((features @ w + offset)^2)
    separate: bool = False


class ProbeObjective(ObjectiveBase):
    """A linear probe on the features: joint (with the critic) or with its own step."""

    loss_keys = ("probe",)

    def __init__(self, cfg, host):
        self.cfg, self.name, self.loss_scales = cfg, cfg.name, {"probe": 1.0}
        self.needs = Needs(separate_step=cfg.separate)

    def init(self, key, example):
        return {"w": jnp.full((example.features.shape[-1],), 1e-3)}, {}

    def loss(self, params, state, inputs, key):
        return ({"probe": jnp.square(inputs.features @ params["w"] + self.cfg.offset)},
                {"probe_metric": jnp.ones(())})


@dataclasses.dataclass(frozen=True)
class WiredConfig:
    name: str = "wired"


@dataclasses.dataclass(frozen=True, eq=False)
class WiredModule(ModuleBase):
    """A zero value target, a constant std and an activation observer that counts its calls."""

    requires = frozenset({"value_target", "noise_std", "activations"})

    def init(self, key, host):
        return {"act": jnp.zeros(()), "count": jnp.zeros((), jnp.int32)}

    def observe_activations(self, state, activations, step):
        value = jnp.abs(activations["actor"]["policy"]["hidden_0"][0]).mean()
        return {"act": value, "count": state["count"] + 1}, {"act": value}

    def noise_std(self, state, step, default):
        return jnp.asarray(0.5)

    def value_target(self, state, inputs, default_target):
        return jnp.zeros_like(inputs.reward), {"hooked": jnp.ones(())}


def test_objectives_and_modules_are_wired_in_order(monkeypatch):
    """pad 0 makes the update deterministic given params, so every call site is checked by
    hand: a zero value target, a constant std, the activation observer, a joint objective (one
    step with the critic) and a separate one (its own step on the updated encoder)."""
    for name in ("probe", "sep"):   # registered for this test only
        monkeypatch.setitem(objective_lib._VARIANTS.setdefault("drqv2", {}), name, ProbeObjective)
    monkeypatch.setitem(modules_lib.base.REGISTRY._entries, "wired", WiredModule)
    cfg = DrQV2Config.tiny(shift_pad=0, objectives={
        "probe": ProbeConfig(), "sep": ProbeConfig("sep", offset=0.5, separate=True)},
        modules={"wired": WiredConfig()})
    nets = DrQV2Agent(DrQV2Config.tiny(shift_pad=0), SPEC).nets
    probe = lambda features, w, offset: jnp.mean(jnp.square(features @ w + offset))
    agent = DrQV2Agent(cfg, SPEC)
    state0 = agent.init(jax.random.PRNGKey(0))
    batch = make_batch(1, cfg)
    state1, metrics = jax.jit(agent.update)(state0, batch, jax.random.PRNGKey(2), jnp.asarray(7))

    @jax.jit
    def by_hand(state0, batch):
        p0 = state0.nets
        features = agent.encode(p0, batch.obs)
        hidden = agent.actor_intermediates(p0, features)["policy"]["hidden_0"][0]
        q1, q2 = nets.critic.apply(p0["critic"], features, batch.action)
        probe_loss = probe(features, state0.objectives.params["probe"]["w"], -1.0)

        # The encoder: one Adam step on critic + probe loss (nothing from the actor), then the
        # separate step of "sep" on the updated encoder with its own Adam state.
        def joint_loss(encoder):
            f = nets.encoder.apply(encoder, batch.obs)
            a, b = nets.critic.apply(p0["critic"], f, batch.action)
            return (jnp.mean(a ** 2) + jnp.mean(b ** 2)
                    + jnp.mean(jnp.square(f @ state0.objectives.params["probe"]["w"] - 1.0)))

        upd, _ = optax.adam(cfg.lr).update(jax.grad(joint_loss)(p0["encoder"]),
                                           state0.opt_states["encoder"], p0["encoder"])
        opt_params = {"encoder": optax.apply_updates(p0["encoder"], upd),
                      "aux": state0.objectives.params["sep"]}

        def sep_loss(opt_params):
            f = nets.encoder.apply(opt_params["encoder"], batch.obs)
            return probe(f, opt_params["aux"]["w"], 0.5)

        upd, _ = optax.adam(cfg.lr).update(jax.grad(sep_loss)(opt_params),
                                           state0.objectives.opt_states["sep"], opt_params)
        return (jnp.abs(hidden).mean(), jnp.mean(q1 ** 2) + jnp.mean(q2 ** 2), probe_loss,
                optax.apply_updates(opt_params, upd))

    act_mean, critic_loss_value, probe_loss, expected = by_hand(state0, batch)
    assert float(state1.modules["wired"]["act"]) == pytest.approx(float(act_mean), rel=1e-5)
    assert int(state1.modules["wired"]["count"]) == 1
    assert float(metrics["actor_std"]) == 0.5 and float(metrics["wired/hooked"]) == 1.0
    assert float(metrics["target_q_mean"]) == 0.0
    assert float(metrics["critic_loss"]) == pytest.approx(float(critic_loss_value), rel=1e-5)
    assert float(metrics["probe/loss"]) == pytest.approx(float(probe_loss), rel=1e-5)
    assert "probe/probe_metric" in metrics and "sep/loss" in metrics
    chex.assert_trees_all_close(state1.nets["encoder"], expected["encoder"], rtol=1e-5,
                                atol=1e-6)
    chex.assert_trees_all_close(state1.objectives.params["sep"], expected["aux"], rtol=1e-5,
                                atol=1e-6)
    assert not np.allclose(state1.objectives.params["probe"]["w"],
                           state0.objectives.params["probe"]["w"])
    assert finite(state1)
