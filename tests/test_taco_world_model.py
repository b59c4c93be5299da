"""TACO on a world model (objective=taco, agent=imagination): windows over the sequence batch,
episode masking, composition with other objectives in a list, gradients, and one jitted agent
update."""
import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import representations
from representations.reconstruction import ReconstructionConfig
from representations.repo import RePoConfig
from representations.taco import TacoConfig
from rl.core.types import ActionSpec, EnvSpec
from rl.agents import composition
from world_models import RSSMWorldModel

from test_reconstruction import TINY, Batch

B, T, K = 2, 6, 2
SPEC = EnvSpec("t", (32, 32, 3), ActionSpec.box(2))
WM_CFG = dataclasses.replace(TINY, continue_head=False, reward_head="gaussian",
                             loss_scales={"reward": 1.0, "kl": 1.0})
CFG = TacoConfig(horizon=K, feature_dim=4, hidden_dim=8,
                 loss_scales={"taco": 1.0, "curl": 0.0, "reward": 0.5})


def _batch():
    rng = np.random.default_rng(0)
    is_first = np.zeros((B, T), bool)
    is_first[:, 0] = True
    is_first[1, 3] = True            # a new episode inside sequence 1
    return Batch(jnp.asarray(rng.integers(0, 255, (B, T, 32, 32, 3)), jnp.uint8),
                 jnp.asarray(rng.uniform(-1, 1, (B, T, 2)), jnp.float32),
                 jnp.asarray(rng.normal(size=(B, T)), jnp.float32), jnp.ones((B, T)),
                 jnp.asarray(is_first), jnp.zeros((B, T), bool), jnp.zeros((B, T), bool))


@pytest.fixture(scope="module")
def setup():
    wm = RSSMWorldModel(WM_CFG, SPEC)
    objective = representations.get("taco")(CFG, wm)
    params, state = objective.init(jax.random.PRNGKey(0))
    wm_params = jax.jit(wm.init)(jax.random.PRNGKey(1))
    return wm, objective, params, state, wm_params


def _loss(wm, objective, params, state, wm_params, batch):
    _, out = wm.observe(wm_params, wm.initial(B), batch, jax.random.PRNGKey(2))
    inputs = representations.ObjectiveInputs(batch, out.feats, model=wm, model_out=out)
    return objective.loss(params, state, inputs, jax.random.PRNGKey(3))


def test_keys_scales_and_masked_windows(setup):
    wm, objective, params, state, wm_params = setup
    assert objective.loss_keys == ("taco", "taco_reward")
    assert objective.loss_scales == {"taco": 1.0, "taco_reward": 0.5}
    losses, metrics = _loss(wm, objective, params, state, wm_params, _batch())
    chex.assert_shape(list(losses.values()), (B, T))
    taco = np.asarray(losses["taco"])
    # windows t = 0..T-K-1; in sequence 1 the episode restarts at 3, so starts 1 and 2 are cut
    valid = np.array([[1, 1, 1, 1, 0, 0], [1, 0, 0, 1, 0, 0]], bool)
    assert (taco[~valid] == 0).all() and (taco[valid] > 0).all()
    # each valid entry is its window's InfoNCE times B*T / #valid, so the plain [B, T] mean is
    # the mean over valid windows; InfoNCE over N = B*(T-K) = 8 rows starts near log 8
    raw = taco[valid] * valid.sum() / (B * T)
    np.testing.assert_allclose(taco.mean(), raw.mean(), rtol=1e-6)
    assert np.log(8) / 3 < raw.mean() < 3 * np.log(8)
    assert set(metrics) == {"taco_accuracy"}
    total, _ = representations.weigh(losses, objective.loss_scales)
    assert np.isfinite(float(total))


def test_gradients_reach_the_world_model_and_phi(setup):
    wm, objective, params, state, wm_params = setup
    batch = _batch()

    def taco(wm_params, params):
        losses, _ = _loss(wm, objective, params, state, wm_params, batch)
        return jnp.mean(losses["taco"])

    g_wm, g_obj = jax.grad(taco, argnums=(0, 1))(wm_params, params)
    import optax
    assert float(optax.global_norm(g_wm["encoder"])) > 0
    assert float(optax.global_norm(g_obj["phi"])) > 0
    assert float(optax.global_norm(g_obj["heads"])) > 0


def test_composes_with_repo_in_a_list_and_errors():
    wm = RSSMWorldModel(WM_CFG, SPEC)
    objectives = composition.build({"repo": RePoConfig(), "taco": CFG}, wm)
    # RePo replaces the model's kl; the model keeps its reward; TACO adds its two maps
    assert composition.replaced_keys(objectives, wm.loss_keys) == ("kl",)
    assert composition.loss_scales(objectives, wm.loss_keys, wm.loss_scales) == {
        "reward": 1.0, "kl": 1.0, "image": 1.0, "taco": 1.0, "taco_reward": 0.5}
    _, states = composition.init(objectives, jax.random.PRNGKey(0), None)
    moved = composition.update_states(objectives, states,
                                      {"repo": {"kl_balanced": jnp.asarray(10.0)}, "taco": {}})
    assert float(moved["repo"]["log_beta"]) > float(states["repo"]["log_beta"])   # RePo's dual
    with pytest.raises(ValueError, match="set agent.objectives.taco.loss_scales.curl=0"):
        representations.get("taco")(TacoConfig(), wm)


def test_imagination_agent_updates_with_taco():
    from rl.agents.imagination import ImaginationAgent
    from rl.agents.imagination.config import preset
    cfg = dataclasses.replace(preset("debug"), objectives={"reconstruction": ReconstructionConfig(),
                                                           "taco": CFG})
    agent = ImaginationAgent(cfg, SPEC)
    state = agent.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    L = cfg.length
    from rl.replay import Sequences
    obs = jnp.asarray(rng.integers(0, 255, (cfg.batch_size, L, 32, 32, 3)), jnp.uint8)
    seq = Sequences(obs=obs, action=jnp.asarray(rng.uniform(-1, 1, (cfg.batch_size, L, 2)),
                                                         jnp.float32),
                    reward=jnp.ones((cfg.batch_size, L)), discount=jnp.ones((cfg.batch_size, L)),
                    is_first=jnp.zeros((cfg.batch_size, L), bool).at[:, 0].set(True),
                    is_last=jnp.zeros((cfg.batch_size, L), bool),
                    is_terminal=jnp.zeros((cfg.batch_size, L), bool),
                    env_index=jnp.zeros(cfg.batch_size, jnp.int32),
                    slot=jnp.zeros(cfg.batch_size, jnp.int32), prob=jnp.ones(cfg.batch_size))
    new, metrics = jax.jit(agent.update)(state, seq, jax.random.PRNGKey(2), jnp.asarray(0))
    for key in ("wm/loss/taco", "wm/loss/taco_reward", "wm/loss/image"):
        assert np.isfinite(float(metrics[key])), key
    before = jax.tree.leaves(state.objective_params["taco"]["phi"])
    after = jax.tree.leaves(new.objective_params["taco"]["phi"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
