"""DrM (rl/modules/drm.py): the formulas by hand, the perturbation exactly at the period on a
tiny DrQ-v2, the module from the CLI, and the refusals."""
import dataclasses
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from experiments import config as config_lib
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
from rl.modules import DrMConfig
from rl.modules import drm

import test_drqv2

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()


def _modules_from_cli(*overrides) -> dict:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return config_lib.agent_config(cfg).modules


# ---------------------------------------------------------------- formulas by hand
def test_dormant_ratio_hand_made_activations_strict_threshold():
    # layer a: unit means |h| = [1, 1, 1, 0.001] -> layer mean 0.75025, threshold 0.0187...:
    # one dormant unit. layer b: means [0.025, 1.975] -> layer mean 1, threshold exactly 0.025:
    # 0.025 is NOT dormant (strict <). layer c: means [0, 2, 2] -> one dormant.
    a = jnp.array([[1.0, -1.0, 1.0, 0.001], [-1.0, 1.0, -1.0, -0.001]])
    b = jnp.array([[0.025, 1.975], [-0.025, -1.975]])
    c = jnp.array([[0.0, 2.0, -2.0], [0.0, -2.0, 2.0]])
    acts = {"actor": {"trunk": {"linear": (a,)}, "policy": {"hidden_0": (b,), "output": (c,)}}}
    beta = drm.dormant_ratio(acts["actor"])
    chex.assert_shape(beta, ())
    chex.assert_type(beta, jnp.float32)
    assert float(beta) == pytest.approx(2 / 9)
    assert int(drm.layer_dormant_counts(b, 0.025)[0]) == 0
    assert int(drm.layer_dormant_counts(b, 0.0251)[0]) == 1
    # the module reads the "actor" entry of the call site
    module = drm.DrMModule(DrMConfig(perturb=False, awaken=False, exploit=False), None)
    state, metrics = module.observe_activations(
        {"beta": jnp.ones(()), "awaken_step": jnp.asarray(-1)}, acts, jnp.asarray(5))
    assert float(metrics["dormant_ratio"]) == pytest.approx(2 / 9)
    assert module.requires == frozenset({"activations"})       # the measurement only


def test_perturb_factor_clips():
    f = lambda beta, high=1.0: float(drm.perturb_factor(jnp.asarray(beta), 2.0, 0.2, high))
    assert f(0.0) == pytest.approx(1.0)
    assert f(0.0, 0.9) == pytest.approx(0.9)          # alpha_max
    assert f(0.1, 0.6) == pytest.approx(0.6)
    assert f(0.3) == pytest.approx(0.4)               # 1 - 2 * 0.3
    assert f(0.45) == pytest.approx(0.2)              # 1 - 0.9 = 0.1 -> alpha_min
    assert f(1.0) == pytest.approx(0.2)


def test_awaken_std_formula_and_schedule_after_awakening():
    for beta in (0.0, 0.1, 0.2, 0.5, 1.0):
        expected = 1.0 / (1.0 + np.exp(-10.0 * (beta - 0.2)))
        assert float(drm.dormant_std(jnp.asarray(beta))) == pytest.approx(expected, rel=1e-6)
    assert float(drm.dormant_std(jnp.asarray(0.2))) == pytest.approx(0.5)
    host = DrQV2Agent(DrQV2Config.tiny(num_expl_steps=100,
                                       stddev_schedule="linear(1.0,0.1,1000)"),
                      test_drqv2.SPEC)
    module = drm.DrMModule(DrMConfig(exploit=False), host)
    state = module.init(jax.random.PRNGKey(0), host)
    low = {"actor": {"x": (jnp.ones((4, 3)),)}}                           # beta = 0
    # before num_expl_steps: no awakening; the std is the sigmoid of beta
    state, _ = module.observe_activations(state, low, jnp.asarray(100))
    assert int(state["awaken_step"]) == -1
    sigma0 = 1.0 / (1.0 + np.exp(2.0))
    assert float(module.noise_std(state, jnp.asarray(100), jnp.asarray(0.7))) == \
        pytest.approx(sigma0, rel=1e-6)
    state, m = module.observe_activations(state, low, jnp.asarray(200))
    assert int(state["awaken_step"]) == 200 and float(m["awakened"]) == 1.0
    state, _ = module.observe_activations(state, low, jnp.asarray(300))   # t0 stays
    assert int(state["awaken_step"]) == 200
    # after: max(sigma, linear(1, 0.1, 1000)(step - 200))
    assert float(module.noise_std(state, jnp.asarray(200), 0.0)) == pytest.approx(1.0)
    assert float(module.noise_std(state, jnp.asarray(700), 0.0)) == pytest.approx(0.55)
    assert float(module.noise_std(state, jnp.asarray(5000), 0.0)) == pytest.approx(sigma0,
                                                                                   rel=1e-6)


def test_expectile_loss_by_hand():
    v = jnp.array([1.0, 0.0, 2.0, -1.0])
    q = jnp.array([0.0, 2.0, 2.0, 1.0])
    # u = [1, -2, 0, -2]: above -> 0.1 * 1; below -> 0.9 * 4 twice; zero -> 0
    loss = drm.expectile_loss(v, q, 0.9)
    chex.assert_shape(loss, ())
    chex.assert_type(loss, jnp.float32)
    assert float(loss) == pytest.approx((0.1 * 1 + 0.9 * 4 + 0.0 + 0.9 * 4) / 4)
    grad_q = jax.grad(lambda q: drm.expectile_loss(v, q, 0.9))(q)
    np.testing.assert_array_equal(grad_q, 0.0)           # Q is a fixed regression target


def test_lambda_of_beta():
    lam = lambda beta: float(drm.exploit_lambda(jnp.asarray(beta)))
    assert lam(0.2) == pytest.approx(0.3)
    assert lam(0.0) == pytest.approx(0.6 / (1 + np.exp(-10.0)), rel=1e-6)
    assert lam(1.0) == pytest.approx(0.6 / (1 + np.exp(40.0)), abs=1e-12)
    assert lam(0.21) == pytest.approx(0.6 / (1 + np.exp(0.5)), rel=1e-6)


def test_is_linear_param_skips_layernorm():
    host = DrQV2Agent(DrQV2Config.tiny(), test_drqv2.SPEC)
    params = host.init_params(jax.random.PRNGKey(0))["actor"]
    picked = {jax.tree_util.keystr(p) for p, leaf in
              jax.tree_util.tree_leaves_with_path(params) if drm.is_linear_param(p, leaf)}
    assert picked and not any("norm" in p for p in picked)
    assert len(picked) == 2 * 4            # trunk dense + 2 hidden + output, kernel and bias


# ---------------------------------------------------------------- on DrQ-v2
def _agent(**module_kw):
    cfg = DrQV2Config.tiny(modules={"drm": DrMConfig(**module_kw)})
    agent = DrQV2Agent(cfg, test_drqv2.SPEC)
    return agent, agent.init(jax.random.PRNGKey(0)), test_drqv2.make_batch(1, cfg)


def test_perturbation_exactly_at_the_period():
    period = 10
    agent, state0, batch = _agent(period=period, max_perturb_factor=0.9)
    update = jax.jit(agent.update)
    before, _ = update(state0, batch, jax.random.PRNGKey(1), jnp.asarray(period - 2))
    # N-1: a plain update, no perturbation
    s_prev, m_prev = update(before, batch, jax.random.PRNGKey(2), jnp.asarray(period - 1))
    assert int(s_prev.modules["drm"]["perturbations"]) == 0
    assert int(s_prev.opt_states["actor"][0].count) > 0
    # N: the same update, then shrink and perturb
    s_n, m_n = update(s_prev, batch, jax.random.PRNGKey(3), jnp.asarray(period))
    assert int(s_n.modules["drm"]["perturbations"]) == 1
    alpha = float(drm.perturb_factor(s_n.modules["drm"]["beta"], 2.0, 0.2, 0.9))
    assert float(s_n.modules["drm"]["perturb_alpha"]) == pytest.approx(alpha)
    assert alpha < 1.0
    # the same update at step N without DrM's perturbation (period far away): the difference is
    # exactly alpha * theta + (1 - alpha) * phi on the dense params, LayerNorm untouched
    far = dataclasses.replace(agent.modules.items[0].cfg, period=10 ** 9)
    plain = DrQV2Agent(DrQV2Config.tiny(modules={"drm": far}), test_drqv2.SPEC)
    s_plain, _ = jax.jit(plain.update)(s_prev, batch, jax.random.PRNGKey(3),
                                       jnp.asarray(period))
    k_fresh, k_target, _ = jax.random.split(_module_key(jax.random.PRNGKey(3)), 3)
    fresh = agent.init_params(k_fresh)
    fresh_t = agent.init_params(k_target)
    for name, phi in (("actor", fresh["actor"]), ("critic", fresh["critic"]),
                      ("critic_target", fresh_t["critic"])):
        def check(path, new, old, phi):
            if drm.is_linear_param(path, old):
                np.testing.assert_allclose(new, alpha * old + (1 - alpha) * phi, rtol=1e-5,
                                           atol=1e-6)
            else:
                np.testing.assert_array_equal(new, old)
        jax.tree_util.tree_map_with_path(check, s_n.nets[name], s_plain.nets[name], phi)
    chex.assert_trees_all_equal(s_n.nets["encoder"], s_plain.nets["encoder"])  # no Linear
    # every Adam state reset (count 0, zero moments), the V-network's too
    for name in ("encoder", "actor", "critic"):
        assert int(s_n.opt_states[name][0].count) == 0
        assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(
            s_n.opt_states[name][0].mu))
    assert int(s_n.modules["drm"]["v_opt"][0].count) == 0
    assert int(s_plain.opt_states["actor"][0].count) > 0
    # N+1: no second perturbation in the same period
    s_next, _ = update(s_n, batch, jax.random.PRNGKey(4), jnp.asarray(period + 1))
    assert int(s_next.modules["drm"]["perturbations"]) == 1
    assert "drm/dormant_ratio" in m_n and "drm/lambda" in m_n and "drm/v_loss" in m_n


def _module_key(update_key):
    """The key DrM's after_update gets in DrQ-v2's update (one module: the fold, then the
    Modules split)."""
    return jax.random.split(jax.random.fold_in(update_key, 1), 1)[0]


def test_exploit_target_mixes_v_and_min_q():
    agent, state0, batch = _agent(perturb=False, awaken=False)
    state1, metrics = jax.jit(agent.update)(state0, batch, jax.random.PRNGKey(1),
                                            jnp.asarray(1000))
    ms0, ms1 = state0.modules["drm"], state1.modules["drm"]
    assert int(ms1["v_opt"][0].count) == 1                  # one V step per update
    assert not np.allclose(jax.tree.leaves(ms0["v"])[0], jax.tree.leaves(ms1["v"])[0])
    lam = float(drm.exploit_lambda(ms1["beta"]))
    assert float(metrics["drm/lambda"]) == pytest.approx(lam)
    assert 0.0 <= float(metrics["drm/dormant_ratio"]) <= 1.0
    # the module without exploit changes the critic target
    plain_agent, _, _ = _agent(perturb=False, awaken=False, exploit=False)
    _, plain = jax.jit(plain_agent.update)(state0.replace(modules={"drm": {
        k: v for k, v in ms0.items() if k not in ("v", "v_opt")}}), batch,
        jax.random.PRNGKey(1), jnp.asarray(1000))
    assert "drm/lambda" not in plain
    if lam > 1e-6:
        assert float(plain["target_q_mean"]) != pytest.approx(float(metrics["target_q_mean"]))


def test_drm_from_the_cli_and_hard_dmc_preset():
    modules = _modules_from_cli("agent=drqv2", "module=drm", "agent.modules.drm.exploit=false")
    assert isinstance(modules["drm"], DrMConfig) and modules["drm"].exploit is False
    assert modules["drm"].period == 100000 and modules["drm"].expectile == 0.9
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=drm_dmc_hard"])
    agent_cfg = config_lib.agent_config(cfg)
    assert agent_cfg.stddev_schedule == "linear(1.0,0.1,2000000)" and agent_cfg.lr == 8e-5
    assert isinstance(agent_cfg.modules["drm"], DrMConfig)


# ---------------------------------------------------------------- refusals
def test_refuses_hosts_without_its_call_sites():
    import test_rainbow
    from rl.agents.rainbow import RainbowAgent, RainbowConfig
    with pytest.raises(ValueError, match=r"module 'drm' needs \['activations'.*agent=rainbow"):
        RainbowAgent(RainbowConfig.tiny(modules={"drm": DrMConfig(exploit=False)}),
                     test_rainbow.SPEC)
    from rl.agents.imagination import ImaginationAgent
    from rl.agents.imagination.config import preset
    import test_imagination
    cfg = dataclasses.replace(preset("debug"), modules={"drm": DrMConfig(exploit=True)})
    with pytest.raises(ValueError, match=r"exploit=true needs the value_target call site.*"
                                         r"agent=imagination"):
        ImaginationAgent(cfg, test_imagination.SPEC)
    with pytest.raises(ValueError, match="max_perturb_factor"):
        DrMConfig(min_perturb_factor=0.5, max_perturb_factor=0.4)


# ---------------------------------------------------------------- on the imagination agent
def test_imagination_dormant_ratio_perturbation_and_awaken_noise():
    """exploit=false: the dormant ratio of the actor on the imagined states, the perturbation
    of actor/critic/slow critic at the period and the awaken std in acting."""
    import test_imagination
    from rl.agents.imagination import ImaginationAgent
    from rl.agents.imagination.config import preset

    modules = _modules_from_cli("agent=imagination", "module=drm",
                                "agent.modules.drm.exploit=false", "agent.modules.drm.period=2")
    cfg = dataclasses.replace(preset("debug"), modules=modules)
    agent = ImaginationAgent(cfg, test_imagination.SPEC)
    batch = test_imagination._fixed_batch(cfg.batch_size, cfg.length, discrete=False)
    state0 = jax.jit(agent.init)(jax.random.PRNGKey(0))
    update = jax.jit(agent.update)
    state1, m1 = update(state0, batch, jax.random.PRNGKey(1), jnp.int32(1))
    assert 0.0 <= float(m1["drm/dormant_ratio"]) <= 1.0
    assert "actor_activations" not in m1
    assert int(state1.modules["drm"]["perturbations"]) == 0
    state2, _ = update(state1, batch, jax.random.PRNGKey(2), jnp.int32(2))
    assert int(state2.modules["drm"]["perturbations"]) == 1
    counts = [int(x) for x in jax.tree.leaves(state2.opt_states["actor"])
              if getattr(x, "dtype", None) == jnp.int32]
    assert counts and all(c == 0 for c in counts)                 # actor Adam reset
    assert all(int(x) > 0 for x in jax.tree.leaves(state2.opt_states["world_model"])
               if getattr(x, "dtype", None) == jnp.int32)          # the model's kept
    # the std in acting is sigmoid(10 (beta - 0.2)) (or, awakened, its max with the
    # agent's constant expl_noise)
    beta = state2.modules["drm"]["beta"]
    std = agent.modules.noise_std(state2.modules, jnp.int32(2), jnp.asarray(0.3))
    expected = drm.dormant_std(beta)
    if int(state2.modules["drm"]["awaken_step"]) >= 0:
        expected = jnp.maximum(expected, 0.3)
    assert float(std) == pytest.approx(float(expected), rel=1e-6)


def test_v_network_learns_the_expectile():
    """A short learning check: on one state with returns q ~ N(0, 1) over the batch, repeated
    value_target_step calls drive V to the 0.9-expectile of q (above the mean)."""
    host = DrQV2Agent(DrQV2Config.tiny(), test_drqv2.SPEC)
    module = drm.DrMModule(DrMConfig(perturb=False, awaken=False, lr=3e-3), host)
    state = module.init(jax.random.PRNGKey(0), host)
    q = jax.random.normal(jax.random.PRNGKey(1), (256,))
    features = jnp.ones((256, host.repr_dim))
    inputs = type("Inputs", (), dict(features=features, q1=q, q2=q + 1.0, next_features=features,
                                     next_q1=q, next_q2=q, reward=jnp.zeros(256),
                                     discount=jnp.ones(256)))

    def body(state, _):
        _, state, metrics = module.value_target_step(state, inputs, jnp.zeros(256))
        return state, metrics["v_loss"]

    state, losses = jax.jit(lambda s: jax.lax.scan(body, s, None, length=400))(state)
    v = float(module.vnet.apply(state["v"], features[:1])[0])
    # the sample's 0.9-expectile e solves 0.9 E[(q - e)+] = 0.1 E[(e - q)+] (bisection)
    lo, hi = float(q.min()), float(q.max())
    for _ in range(60):
        e = 0.5 * (lo + hi)
        g = 0.9 * jnp.maximum(q - e, 0).mean() - 0.1 * jnp.maximum(e - q, 0).mean()
        lo, hi = (e, hi) if g > 0 else (lo, e)
    assert e > float(q.mean()) + 0.5
    assert v == pytest.approx(e, abs=0.05)
    assert float(losses[-1]) < float(losses[0])
