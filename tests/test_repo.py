"""RePo's objective: the Lagrangian by hand, the dual update of log beta, and the probe decoder's
gradient isolation."""
import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import representations
from representations.repo import RePoConfig, dual_step
from rl.core.types import ActionSpec, EnvSpec
from world_models import RSSMWorldModel

from test_reconstruction import TINY, Batch

B, T = 2, 3
SPEC = EnvSpec("t", (32, 32, 3), ActionSpec.categorical(4))
WM_CFG = dataclasses.replace(TINY, continue_head=False, reward_head="gaussian",
                             loss_scales={"reward": 1.0, "kl": 1.0})


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return Batch(jnp.asarray(rng.integers(0, 255, (B, T, 32, 32, 3)), jnp.uint8),
                 jnp.asarray(rng.integers(0, 4, (B, T)), jnp.int32),
                 jnp.asarray(rng.normal(size=(B, T)), jnp.float32), jnp.ones((B, T)),
                 jnp.zeros((B, T), bool).at[:, 0].set(True), jnp.zeros((B, T), bool),
                 jnp.zeros((B, T), bool))


def test_dual_update_by_hand():
    """Adam's first step is lr * sign(grad); grad of -log_beta * (KL - eps) is -(KL - eps)."""
    opt = optax.adam(1e-4)
    log_beta = jnp.asarray(math.log(1e-5))
    up, _ = dual_step(opt, log_beta, opt.init(log_beta), jnp.asarray(2.0))     # KL above budget
    down, _ = dual_step(opt, log_beta, opt.init(log_beta), jnp.asarray(-0.5))  # KL under budget
    np.testing.assert_allclose(up, math.log(1e-5) + 1e-4, rtol=1e-6)
    np.testing.assert_allclose(down, math.log(1e-5) - 1e-4, rtol=1e-6)
    # repeated steps with KL above the budget keep raising beta by ~lr per step
    state, value = opt.init(log_beta), log_beta
    for _ in range(10):
        value, state = dual_step(opt, value, state, jnp.asarray(1.0))
    np.testing.assert_allclose(value, math.log(1e-5) + 10 * 1e-4, rtol=1e-5)


@pytest.fixture(scope="module")
def repo():
    wm = RSSMWorldModel(WM_CFG, SPEC)
    cfg = RePoConfig()
    objective = representations.get("repo")(cfg, wm)
    params = jax.jit(wm.init)(jax.random.PRNGKey(0))
    return wm, cfg, objective, params


def _losses(wm, objective, params, obj_state, batch):
    _, out = wm.observe(params, wm.initial(B), batch, jax.random.PRNGKey(1))
    inputs = representations.ObjectiveInputs(batch, out.feats, model=wm, model_out=out)
    return objective.loss({}, obj_state, inputs, jax.random.PRNGKey(2)), out


def test_lagrangian_maps_by_hand(repo):
    wm, cfg, objective, params = repo
    assert set(objective.loss_keys) == {"kl", "image"} and objective.replaces == ("kl",)
    _, state = objective.init(jax.random.PRNGKey(0))
    state = {**state, "log_beta": jnp.asarray(math.log(0.5))}
    batch = _batch()
    (losses, metrics), out = _losses(wm, objective, params, state, batch)
    chex.assert_shape(list(losses.values()), (B, T))
    kl = np.asarray(wm.kl(out.posts, out.priors))          # balancing does not change the value
    np.testing.assert_allclose(losses["kl"], 0.5 * (kl - 3.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["kl_balanced"], kl.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["beta"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(metrics["kl_excess"], kl.mean() - objective.cfg.target_kl,
                               rtol=1e-5, atol=1e-6)
    # the reward NLL is the world model's own loss
    reward_nll = 0.5 * (np.asarray(wm.reward(params, out.feats)) - np.asarray(batch.reward)) ** 2 \
        + 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(out.losses["reward"], reward_nll, rtol=1e-4, atol=1e-5)


def test_beta_rises_over_budget_and_falls_under(repo):
    wm, cfg, objective, _ = repo
    _, state = objective.init(jax.random.PRNGKey(0))
    np.testing.assert_allclose(state["log_beta"], math.log(1e-5), rtol=1e-6)
    high = objective.update_state(state, {"kl_balanced": jnp.asarray(cfg.target_kl + 1.0)})
    low = objective.update_state(state, {"kl_balanced": jnp.asarray(cfg.target_kl - 1.0)})
    assert float(high["log_beta"]) > float(state["log_beta"]) > float(low["log_beta"])


def test_probe_decoder_gradient_reaches_only_the_decoder(repo):
    wm, cfg, objective, params = repo
    _, state = objective.init(jax.random.PRNGKey(0))
    batch = _batch(1)

    def term(p, key):
        (losses, _), _ = _losses(wm, objective, p, state, batch)
        return jnp.mean(losses[key])

    image_grads = jax.grad(term)(params, "image")
    for name, sub in image_grads.items():
        norm = float(optax.global_norm(sub))
        if name == "decoder":
            assert norm > 0.0
        else:
            assert norm == 0.0, f"probe-decoder gradient reached {name}"
    # the KL term (and the model's reward NLL) do train the encoder and the RSSM
    grads = jax.grad(term)(params, "kl")
    assert float(optax.global_norm(grads["encoder"])) > 0.0
    assert float(optax.global_norm(grads["decoder"])) == 0.0
    grads = jax.grad(lambda p: jnp.mean(_losses(wm, objective, p, state, batch)[1]
                                        .losses["reward"]))(params)
    assert float(optax.global_norm(grads["encoder"])) > 0.0
    assert float(optax.global_norm(grads["decoder"])) == 0.0


def test_config_errors():
    with pytest.raises(ValueError, match="target_kl=-1.0; must be >= 0"):
        RePoConfig(target_kl=-1.0)
    with pytest.raises(ValueError, match="init_beta=0.0; must be > 0"):
        RePoConfig(init_beta=0.0)
    wm = RSSMWorldModel(dataclasses.replace(WM_CFG, decoder=False), SPEC)
    with pytest.raises(ValueError, match=r"unknown \['image'\]"):
        representations.get("repo")(RePoConfig(), wm)
    ok = representations.get("repo")(RePoConfig(loss_scales={"kl": 1.0}), wm)
    assert set(ok.loss_keys) == {"kl"}

    class NoLatents:   # a deterministic world model has no KL to budget
        has_decoder = False
    with pytest.raises(ValueError, match="needs a world model with latent distributions"):
        representations.get("repo")(RePoConfig(loss_scales={"kl": 1.0}), NoLatents())
