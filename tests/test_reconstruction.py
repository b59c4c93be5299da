"""Representation protocol (weigh, registry), KL balancing / free nats, the RSSM world model's
own losses and the Dreamer (reconstruction) objective."""
import dataclasses
import math
import re
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

import pytest

import representations
from representations.reconstruction import ReconstructionConfig, gaussian_image_nll
from rl.core import kl as kl_lib
from rl.core.types import ActionSpec, EnvSpec
from world_models import RSSMWorldModel, WorldModelConfig
from world_models.rssm import LatentState, RSSM


def test_weigh_checks_keys_and_sums():
    losses = {"image": jnp.ones((2, 3)), "kl": jnp.full((2, 3), 2.0)}
    total, metrics = representations.weigh(losses, {"image": 1.0, "kl": 0.5})
    np.testing.assert_allclose(total, 2.0)
    np.testing.assert_allclose(metrics["loss/kl"], 2.0)
    with pytest.raises(ValueError, match=r"missing \['kl'\], unknown \['reward'\]"):
        representations.weigh(losses, {"image": 1.0, "reward": 1.0})
    with pytest.raises(ValueError, match=r"missing \[\], unknown \['extra'\]"):
        representations.weigh(losses, {"image": 1.0, "kl": 1.0, "extra": 1.0})
    with pytest.raises(ValueError, match="share one"):
        representations.weigh({"a": jnp.ones((2, 3)), "b": jnp.ones((3, 2))}, {"a": 1, "b": 1})


def test_registry():
    assert representations.get("reconstruction") is representations.ReconstructionObjective
    names = representations.names()
    assert {"infopower", "latent_l2", "reconstruction", "repo", "spr", "taco"} <= set(names)
    with pytest.raises(ValueError, match=re.escape(f"unknown objective 'repoo'; valid: {names}")):
        representations.get("repoo")


def _gaussian_state(mean, std):
    mean, std = jnp.atleast_1d(mean), jnp.atleast_1d(std)
    return LatentState(deter=jnp.zeros(1), stoch=mean, stats={"mean": mean, "std": std})


def test_kl_balance_value_and_gradient_split():
    rssm = RSSM(WorldModelConfig(stoch=1), action_dim=1, embed_size=1)

    def balanced(mq, mp, alpha):
        return kl_lib.balanced_kl(rssm.kl, _gaussian_state(mq, 1.0), _gaussian_state(mp, 1.0),
                                  alpha)

    # KL(N(1,1) || N(0,1)) = 0.5; dKL/dmq = (mq - mp) / sp^2 = 1, dKL/dmp = -1
    for alpha in (None, 0.8, 5 / 6):
        np.testing.assert_allclose(balanced(1.0, 0.0, alpha), 0.5, rtol=1e-6)
    d_post, d_prior = jax.grad(balanced, argnums=(0, 1))(1.0, 0.0, 0.8)
    np.testing.assert_allclose([d_post, d_prior], [0.2, -0.8], rtol=1e-6)
    d_post, d_prior = jax.grad(balanced, argnums=(0, 1))(1.0, 0.0, None)
    np.testing.assert_allclose([d_post, d_prior], [1.0, -1.0], rtol=1e-6)
    # the std side too: KL(N(0,2) || N(0,1)) = log(1/2) + 4/2 - 1/2; dKL/dsq = -1/sq + sq/sp^2
    value = kl_lib.balanced_kl(rssm.kl, _gaussian_state(0.0, 2.0), _gaussian_state(0.0, 1.0), 0.75)
    np.testing.assert_allclose(value, math.log(0.5) + 1.5, rtol=1e-6)
    d_sq = jax.grad(lambda s: kl_lib.balanced_kl(rssm.kl, _gaussian_state(0.0, s),
                                                 _gaussian_state(0.0, 1.0), 0.75))(2.0)
    np.testing.assert_allclose(d_sq, 0.25 * (-0.5 + 2.0), rtol=1e-6)
    with pytest.raises(ValueError, match="kl_balance"):
        balanced(1.0, 0.0, 1.5)


def test_free_nats_per_step_and_on_the_batch_mean():
    kl = jnp.array([[0.5, 4.0]])
    np.testing.assert_allclose(kl_lib.free_nats(kl, 3.0, "step"), [[3.0, 4.0]])
    grad = jax.grad(lambda k: kl_lib.free_nats(k, 3.0, "step").sum())(kl)
    np.testing.assert_allclose(grad, [[0.0, 1.0]])
    # batch mean 2.25 < 3: the whole map is the constant 3 (zero gradient)
    np.testing.assert_allclose(kl_lib.free_nats(kl, 3.0, "batch"), [[3.0, 3.0]])
    grad = jax.grad(lambda k: kl_lib.free_nats(k, 3.0, "batch").mean())(kl)
    np.testing.assert_allclose(grad, 0.0)
    # batch mean 3.5 >= 3: the map itself, full gradient; its mean is max(mean, free)
    kl = jnp.array([[2.0, 5.0]])
    np.testing.assert_allclose(kl_lib.free_nats(kl, 3.0, "batch").mean(), 3.5)
    grad = jax.grad(lambda k: kl_lib.free_nats(k, 3.0, "batch").mean())(kl)
    np.testing.assert_allclose(grad, [[0.5, 0.5]])
    np.testing.assert_allclose(kl_lib.free_nats(kl, 0.0, "step"), kl)
    with pytest.raises(ValueError, match="free_nats_mode"):
        kl_lib.free_nats(kl, 1.0, "sample")


def test_gaussian_image_nll_hand_case():
    mean = jnp.zeros((1, 1, 2, 2, 1))
    target = jnp.ones((1, 1, 2, 2, 1))
    np.testing.assert_allclose(gaussian_image_nll(mean, target),
                               [[0.5 * 4 + 0.5 * 4 * math.log(2 * math.pi)]], rtol=1e-6)


class Batch(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    is_first: jax.Array
    is_last: jax.Array
    is_terminal: jax.Array


TINY = WorldModelConfig(deter=8, stoch=3, hidden=8, cnn_depth=2, encoder_kernels=(4, 4, 4),
                        decoder_kernels=(5, 5, 8), head_units=8, reward_layers=1,
                        continue_layers=1, continue_head=True, reward_head="twohot",
                        num_bins=11,
                        loss_scales={"reward": 1.0, "continue": 1.0, "kl": 1.0})


def test_model_losses_and_reconstruction_return_bt_maps():
    B, T = 2, 3
    spec = EnvSpec("t", (32, 32, 3), ActionSpec.categorical(4))
    wm_cfg = dataclasses.replace(TINY, free_nats=1.0, free_nats_mode="step", kl_balance=0.8)
    wm = RSSMWorldModel(wm_cfg, spec)
    assert wm.loss_keys == ("reward", "kl", "continue") and wm.has_decoder
    cfg = ReconstructionConfig()
    objective = representations.get(cfg.name)(cfg, wm)
    assert objective.loss_keys == ("image",) and objective.replaces == ()
    rng = np.random.default_rng(0)
    batch = Batch(jnp.asarray(rng.integers(0, 255, (B, T, 32, 32, 3)), jnp.uint8),
                  jnp.asarray(rng.integers(0, 4, (B, T)), jnp.int32),
                  jnp.asarray(rng.normal(size=(B, T)), jnp.float32), jnp.ones((B, T)),
                  jnp.zeros((B, T), bool).at[:, 0].set(True), jnp.zeros((B, T), bool),
                  jnp.zeros((B, T), bool).at[1, 2].set(True))
    obj_params, obj_state = objective.init(jax.random.PRNGKey(0))

    @jax.jit
    def run(params, key):
        last, out = wm.observe(params, wm.initial(B), batch, key)
        inputs = representations.ObjectiveInputs(batch, out.feats, model=wm, model_out=out)
        losses, metrics = objective.loss(obj_params, obj_state, inputs, key)
        return last, out, losses, metrics

    params = jax.jit(wm.init)(jax.random.PRNGKey(0))
    last, out, losses, metrics = run(params, jax.random.PRNGKey(1))
    chex.assert_shape(list(out.losses.values()) + list(losses.values()), (B, T))
    chex.assert_shape(out.feats, (B, T, wm.feat_size))
    chex.assert_tree_all_finite((out, losses, metrics))
    assert set(out.losses) == set(wm.loss_keys)
    assert float(out.losses["kl"].min()) >= 1.0                    # free nats per step
    np.testing.assert_allclose(out.metrics["kl"], np.mean(wm.kl(out.posts, out.priors)),
                               rtol=1e-6)
    # the continue BCE against 1 - is_terminal, from the posterior features
    logits = wm.continue_head.apply({"params": params["continue"]}, out.feats)
    target = 1.0 - np.asarray(batch.is_terminal, np.float32)
    bce = -(target * jax.nn.log_sigmoid(logits) + (1 - target) * jax.nn.log_sigmoid(-logits))
    np.testing.assert_allclose(out.losses["continue"], bce, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(last, jax.tree.map(lambda x: x[:, -1], out.posts))
    assert float(losses["image"].min()) > 0.5 * math.log(2 * math.pi) * 32 * 32 * 3
    for key in ("kl", "post_entropy", "prior_entropy"):
        assert key in out.metrics
    chex.assert_shape(jax.tree.leaves(wm.starts(out)), (B * T,) + (None,))
    # the model's loss_scales must name its losses (checked by the agent's composition)
    from rl.agents import composition
    with pytest.raises(ValueError, match=r"missing \['continue'\]"):
        composition.loss_scales({}, wm.loss_keys, {"reward": 1.0, "kl": 1.0})
    with pytest.raises(ValueError, match="needs a world model with a decoder"):
        representations.get("reconstruction")(
            cfg, RSSMWorldModel(dataclasses.replace(TINY, decoder=False), spec))
    with pytest.raises(ValueError, match="free_nats_mode"):
        WorldModelConfig(free_nats_mode="mean")
