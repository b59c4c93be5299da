"""InfoPower: the NWJ and InfoNCE bounds on hand-computed scores, the inverse-dynamics
log-likelihood (continuous and discrete) by hand, the dual update's direction, the composition
from the config (objective=[infopower] instead of reconstruction; C-Dreamer is one switch), and
the empowerment bonus in imagination only when its module is on."""
import dataclasses
import math
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import representations
from experiments import config as config_lib
from representations import contrastive
from representations.infopower import (InfoPowerConfig, categorical_log_prob, dual_step,
                                       gaussian_log_prob)
from rl.core.types import ActionSpec, EnvSpec

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()


def _agent_cfg(*overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["agent=imagination", *overrides])
    return config_lib.agent_config(cfg)


# ---------------------------------------------------------------- bounds by hand
def test_nwj_by_hand():
    s = jnp.array([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [0.0, 1.0, 3.0]])
    loss = contrastive.nwj(s)
    e = math.exp(-1.0)
    want = [-(1.0 - e * (math.exp(0.0) + math.exp(2.0)) / 2),
            -(-1.0 - e * (math.exp(0.5) + math.exp(0.0)) / 2),
            -(3.0 - e * (math.exp(0.0) + math.exp(1.0)) / 2)]
    chex.assert_shape(loss, (3,))
    chex.assert_type(loss, jnp.float32)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    # the clip acts inside the exponential only
    clipped = contrastive.nwj(s, clip=1.0)
    np.testing.assert_allclose(clipped[0], -(1.0 - e * (1.0 + math.exp(1.0)) / 2), rtol=1e-6)
    np.testing.assert_allclose(clipped[2], -(3.0 - e * (1.0 + math.exp(1.0)) / 2), rtol=1e-6)
    with pytest.raises(ValueError, match="square"):
        contrastive.nwj(jnp.ones((2, 3)))


def test_infonce_by_hand_and_nwj_is_not_shift_invariant():
    s = jnp.array([[2.0, 0.0], [1.0, 1.0]])
    loss = contrastive.info_nce(s)
    want = [-(2.0 - math.log(math.exp(2.0) + 1.0)), math.log(2.0)]
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_allclose(contrastive.info_nce(s + 5.0), want, rtol=1e-5)
    assert not np.allclose(contrastive.nwj(s + 1.0), contrastive.nwj(s))


# ---------------------------------------------------------------- inverse dynamics by hand
def test_inverse_log_likelihoods_by_hand():
    mean, std, x = jnp.array([[0.0, 0.5]]), jnp.array([[1.0, 0.5]]), jnp.array([[1.0, 0.5]])
    want = (-0.5 - 0.5 * math.log(2 * math.pi)) + (-math.log(0.5) - 0.5 * math.log(2 * math.pi))
    lp = gaussian_log_prob(mean, std, x)
    chex.assert_shape(lp, (1,))
    np.testing.assert_allclose(lp, [want], rtol=1e-6)
    logits = jnp.array([[0.0, math.log(3.0)]])
    np.testing.assert_allclose(categorical_log_prob(logits, jnp.array([[0.0, 1.0]])),
                               [math.log(0.75)], rtol=1e-6)
    np.testing.assert_allclose(categorical_log_prob(logits, jnp.array([[1.0, 0.0]])),
                               [math.log(0.25)], rtol=1e-6)


def _objective(spec, **changes):
    from world_models import RSSMWorldModel
    from test_reconstruction import TINY
    wm = RSSMWorldModel(TINY, spec)
    cls = representations.get("infopower")
    return wm, cls(InfoPowerConfig(**changes), wm)


@pytest.mark.parametrize("discrete", [False, True])
def test_inverse_head_reads_only_the_stochastic_part(discrete):
    spec = EnvSpec("t", (32, 32, 3), ActionSpec.categorical(3) if discrete else ActionSpec.box(2))
    wm, obj = _objective(spec)
    params, state = obj.init(jax.random.PRNGKey(0))
    np.testing.assert_allclose(state["lagrange"], 1.0)
    f = wm.feat_size
    prev = jax.random.normal(jax.random.PRNGKey(1), (4, 5, f))
    nxt = jax.random.normal(jax.random.PRNGKey(2), (4, 5, f))
    action = (jax.nn.one_hot(jnp.arange(20).reshape(4, 5) % 3, 3) if discrete
              else jnp.tanh(jax.random.normal(jax.random.PRNGKey(3), (4, 5, 2))))
    lp = obj.inverse_log_prob(params, prev, nxt, action)
    chex.assert_shape(lp, (4, 5))
    chex.assert_type(lp, jnp.float32)
    # the deterministic part h (first `deter` features) does not matter
    moved = obj.inverse_log_prob(params, prev.at[..., :obj.deter].add(3.0),
                                 nxt.at[..., :obj.deter].add(-2.0), action)
    np.testing.assert_allclose(moved, lp, rtol=1e-6)
    # by hand from the head's raw output
    out = obj.inverse.apply(params["inverse"], prev[..., obj.deter:], nxt[..., obj.deter:])
    if discrete:
        want = np.sum(jax.nn.log_softmax(out) * action, -1)
    else:
        mu, raw = np.split(np.asarray(out), 2, -1)
        sd = np.log1p(np.exp(raw)) + 0.1
        want = np.sum(-0.5 * ((action - np.tanh(mu)) / sd) ** 2 - np.log(sd)
                      - 0.5 * math.log(2 * math.pi), -1)
        # a density bounded by its narrowest std (min_std 0.1) in each of the 2 dims
        assert np.all(np.asarray(lp) <= 2 * (-math.log(0.1) - 0.5 * math.log(2 * math.pi)))
    np.testing.assert_allclose(lp, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- the dual update
def test_dual_update_direction_and_floor():
    lam = jnp.asarray(0.5)
    up = dual_step(lam, jnp.asarray(-12.0), target=-10.0, lr=0.1)     # C < c_0: violated
    down = dual_step(lam, jnp.asarray(-9.0), target=-10.0, lr=0.1)    # C > c_0: satisfied
    np.testing.assert_allclose(up, 0.5 + 0.1 * 2.0, rtol=1e-6)
    np.testing.assert_allclose(down, 0.5 - 0.1 * 1.0, rtol=1e-6)
    np.testing.assert_allclose(dual_step(lam, jnp.asarray(100.0), -10.0, 0.1), 0.0)  # floor


def test_losses_and_state_update_on_a_batch():
    from test_repo import _batch, SPEC
    wm, obj = _objective(SPEC)
    params = wm.init(jax.random.PRNGKey(0))
    obj_params, state = obj.init(jax.random.PRNGKey(1))
    batch = _batch()
    _, out = wm.observe(params, wm.initial(2), batch, jax.random.PRNGKey(2))
    inputs = representations.ObjectiveInputs(batch, out.feats, model=wm, model_out=out)
    state = {"lagrange": jnp.asarray(2.0)}
    losses, metrics = obj.loss(obj_params, state, inputs, jax.random.PRNGKey(3))
    assert set(losses) == set(obj.loss_keys) and obj.replaces == ("kl", "reward")
    chex.assert_shape(list(losses.values()), (2, 3))
    kl = np.asarray(wm.kl(out.posts, out.priors))
    reward_ll = -np.asarray(out.losses["reward"])
    inv = obj.inverse_map(obj_params, out.feats, batch)
    np.testing.assert_allclose(inv[:, 0], 0.0)            # t = 0 has no a_{t-1}
    constraint = -kl + reward_ll + np.asarray(inv)
    np.testing.assert_allclose(losses["constraint"], 2.0 * (-10.0 - constraint), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(metrics["constraint"], constraint.mean(), rtol=1e-4)
    new = obj.update_state(state, metrics)
    np.testing.assert_allclose(new["lagrange"],
                               max(0.0, 2.0 - 1e-3 * (constraint.mean() + 10.0)), rtol=1e-5)
    # C-Dreamer: no inverse head, no inverse term
    _, c_dreamer = _objective(SPEC, empowerment=False)
    p2, _ = c_dreamer.init(jax.random.PRNGKey(1))
    assert "inverse" not in p2
    l2, m2 = c_dreamer.loss(p2, state, inputs, jax.random.PRNGKey(3))
    np.testing.assert_allclose(m2["constraint"], (-kl + reward_ll).mean(), rtol=1e-4)
    # InfoNCE bound option
    _, nce = _objective(SPEC, bound="infonce")
    l3, m3 = nce.loss(obj_params, state, inputs, jax.random.PRNGKey(3))
    assert np.all(np.asarray(l3["contrastive"]) >= 0.0)   # a cross-entropy


# ---------------------------------------------------------------- composition
def test_composes_instead_of_reconstruction_and_c_dreamer_is_one_switch():
    cfg = _agent_cfg("objective=[infopower]", "agent.objectives.infopower.bound=infonce")
    assert list(cfg.objectives) == ["infopower"]
    assert cfg.objectives["infopower"].bound == "infonce"
    assert cfg.objectives["infopower"].empowerment is True
    off = _agent_cfg("objective=[infopower]", "agent.objectives.infopower.empowerment=false")
    assert off.objectives["infopower"].empowerment is False
    with_module = _agent_cfg("objective=[infopower]", "module=[empowerment]",
                             "agent.modules.empowerment.weight=0.5")
    assert with_module.modules["empowerment"].weight == 0.5


def test_preset_infopower_distracted_dmc_composes():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=infopower_distracted_dmc"])
    agent = config_lib.agent_config(cfg)
    assert list(agent.objectives) == ["infopower"] and agent.objectives["infopower"].bound == "nwj"
    assert agent.modules["empowerment"].weight == 1.0
    assert cfg.env.kwargs.distractor == "train" and cfg.env.name.endswith("walker_stand")
    assert cfg.env.convention == "drqv2" and cfg.loop.frames == 1_000_000


def _imagination(*overrides, updates=1):
    import test_imagination
    from rl.agents.imagination import ImaginationAgent
    from rl.agents.imagination.config import preset
    composed = _agent_cfg("objective=[infopower]", *overrides)
    cfg = dataclasses.replace(preset("debug"), objectives=composed.objectives,
                              modules=composed.modules)
    agent = ImaginationAgent(cfg, test_imagination.SPEC)
    batch = test_imagination._fixed_batch(cfg.batch_size, cfg.length, discrete=False)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    update = jax.jit(agent.update)
    metrics = []
    for i in range(updates):
        state, m = update(state, batch, jax.random.PRNGKey(1 + i), jnp.int32(i))
        metrics.append(m)
    return agent, state, metrics


def test_imagination_update_with_infopower_and_the_bonus_only_when_on():
    agent, state, (plain,) = _imagination()
    for key in ("wm/loss", "wm/loss/contrastive", "wm/loss/constraint", "actor/loss",
                "critic/loss", "wm/lagrange", "wm/inverse_ll", "wm/mi_bound"):
        assert np.isfinite(float(plain[key])), key
    assert "wm/loss/kl" not in plain and "wm/loss/reward" not in plain   # replaced
    assert "actor/imag_intrinsic" not in plain
    assert float(state.objective_state["infopower"]["lagrange"]) != 1.0   # the dual moved
    _, _, (on,) = _imagination("module=[empowerment]", "agent.modules.empowerment.weight=0.5")
    assert np.isfinite(float(on["actor/imag_intrinsic"]))
    np.testing.assert_allclose(on["actor/imag_reward"] - plain["actor/imag_reward"],
                               on["actor/imag_intrinsic"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(on["wm/loss"], plain["wm/loss"])     # the model step is the same
    assert float(on["actor/loss"]) != float(plain["actor/loss"])
    # weight 0: the module adds nothing (no call site)
    _, _, (zero,) = _imagination("module=[empowerment]", "agent.modules.empowerment.weight=0")
    assert "actor/imag_intrinsic" not in zero
    np.testing.assert_allclose(zero["actor/loss"], plain["actor/loss"])


def test_empowerment_module_refuses_a_host_without_the_head():
    with pytest.raises(ValueError, match="empowerment=true"):
        _imagination("module=[empowerment]", "agent.objectives.infopower.empowerment=false")


def test_infopower_learns_its_bound_and_inverse_model_on_the_tiny_pixel_batch():
    """30 updates of the debug agent on one fixed batch of moving squares (actions random):
    the MI bound and the inverse-dynamics log-likelihood rise, the losses stay finite. (A test
    that the pieces learn, ~27 s on CPU; not a return test: the squares ignore the actions.)"""
    _, state, metrics = _imagination("module=[empowerment]", updates=30)
    first, last = metrics[0], metrics[-1]
    assert all(np.isfinite(float(m["wm/loss"])) for m in metrics)
    assert float(last["wm/mi_bound"]) > float(first["wm/mi_bound"]) + 0.1
    assert float(last["wm/inverse_ll"]) > float(first["wm/inverse_ll"])
    # the dual: the constraint holds here (C ~ -4 > c_0 = -10), so lambda falls from 1
    assert float(last["wm/constraint"]) > -10.0 and float(last["wm/lagrange"]) < 1.0


def test_without_a_decoder_there_is_no_probe_image_loss():
    from world_models import RSSMWorldModel
    from test_reconstruction import TINY
    from test_repo import _batch, SPEC
    wm = RSSMWorldModel(dataclasses.replace(TINY, decoder=False), SPEC)
    obj = representations.get("infopower")(InfoPowerConfig(), wm)
    assert obj.loss_keys == ("contrastive", "constraint")
    assert obj.loss_scales == {"contrastive": 1.0, "constraint": 1.0}
    params = wm.init(jax.random.PRNGKey(0))
    obj_params, state = obj.init(jax.random.PRNGKey(1))
    batch = _batch()
    _, out = wm.observe(params, wm.initial(2), batch, jax.random.PRNGKey(2))
    losses, _ = obj.loss(obj_params, state, representations.ObjectiveInputs(
        batch, out.feats, model=wm, model_out=out), jax.random.PRNGKey(3))
    assert set(losses) == {"contrastive", "constraint"}
    # the contrastive and constraint maps send gradient into the encoder
    def total(p):
        _, o = wm.observe(p, wm.initial(2), batch, jax.random.PRNGKey(2))
        m, _ = obj.loss(obj_params, state, representations.ObjectiveInputs(
            batch, o.feats, model=wm, model_out=o), jax.random.PRNGKey(3))
        return jnp.mean(m["contrastive"])
    grads = jax.grad(total)(params)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads["encoder"])) > 0.0
    with pytest.raises(ValueError, match="unknown"):
        representations.get("infopower")(
            InfoPowerConfig(loss_scales={"contrastive": 1.0, "constraint": 1.0, "imag": 1.0}), wm)
