"""TACO on DrQ-v2 (``objective=taco``): the critic on phi(a), K-step windows, the separate TACO
step over encoder + phi + heads, and config errors."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from representations.taco import TacoConfig
from rl import replay as replay_lib
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
from rl.core.types import ActionSpec, EnvSpec

from test_drqv2 import SPEC, finite, make_batch

K = 3
TACO = TacoConfig(horizon=K, feature_dim=6, hidden_dim=16)
CFG = DrQV2Config.tiny(objectives={"taco": TACO})


def make_windows(seed, cfg=CFG, spec=SPEC) -> replay_lib.TransitionWindows:
    rng = np.random.default_rng(seed + 100)
    tr = make_batch(seed, cfg, spec)
    b, (h, w, c) = cfg.batch_size, spec.obs_shape
    return replay_lib.TransitionWindows(
        transition=tr,
        actions=rng.uniform(-1, 1, (b, K, spec.action.shape[0])).astype(np.float32),
        future_obs=rng.integers(0, 256, (b, K, h, w, c * cfg.frame_stack), dtype=np.uint8),
        future_valid=np.ones((b, K), bool))


@pytest.fixture(scope="module")
def taco():
    agent = DrQV2Agent(CFG, SPEC)
    state0 = agent.init(jax.random.PRNGKey(0))
    batch = make_windows(1)
    state1, metrics = jax.jit(agent.update)(state0, batch, jax.random.PRNGKey(2), jnp.asarray(1000))
    return agent, state0, state1, metrics, batch


def changed(a, b) -> bool:
    return any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_critic_consumes_the_latent_action(taco):
    agent, state0, *_ = taco
    latent_dim = int(1.25 * 2) + 1
    phi_out = state0.nets["action_encoder"]["params"]["out"]["kernel"]
    chex.assert_shape(phi_out, (64, latent_dim))
    q1_in = state0.nets["critic"]["params"]["q1"]["dense_0"]["kernel"]
    chex.assert_shape(q1_in, (CFG.feature_dim + latent_dim, CFG.hidden_dim))
    assert agent.min_replay_steps == max(CFG.n_step, K) + 1
    # plain DrQ-v2 keeps raw actions and no phi
    plain = DrQV2Agent(DrQV2Config.tiny(), SPEC).init(jax.random.PRNGKey(0))
    assert "action_encoder" not in plain.nets and "action_encoder" not in plain.opt_states
    chex.assert_shape(plain.nets["critic"]["params"]["q1"]["dense_0"]["kernel"],
                      (CFG.feature_dim + 2, CFG.hidden_dim))


def test_update_steps_everything_taco_trains(taco):
    _, state0, state1, metrics, _ = taco
    assert finite(state1) and all(np.isfinite(np.asarray(v)) for v in metrics.values())
    for name in ("encoder", "critic", "actor", "action_encoder"):
        assert changed(state0.nets[name], state1.nets[name]), name
    assert changed(state0.objectives.params["taco"], state1.objectives.params["taco"])
    for key in ("taco/loss", "taco/loss/taco", "taco/loss/curl", "taco/loss/reward",
                "taco/taco_accuracy", "taco/curl_accuracy"):
        assert key in metrics, key
    # InfoNCE over a batch of 8 starts near log(8)
    assert float(metrics["taco/loss/taco"]) == pytest.approx(np.log(CFG.batch_size), rel=0.5)


def test_phi_takes_both_the_critic_and_the_taco_step(taco):
    """With TACO's losses scaled to 0 its Adam step is zero, so phi moves by the critic alone;
    with the default scales the TACO step moves it further (two optimisers on phi, as official)."""
    agent, state0, state1, _, batch = taco
    quiet = DrQV2Agent(DrQV2Config.tiny(objectives={"taco": TacoConfig(
        horizon=K, feature_dim=6, hidden_dim=16,
        loss_scales={"taco": 0.0, "curl": 0.0, "reward": 0.0})}), SPEC)
    s0 = quiet.init(jax.random.PRNGKey(0))
    s1, _ = jax.jit(quiet.update)(s0, batch, jax.random.PRNGKey(2), jnp.asarray(1000))
    assert changed(s0.nets["action_encoder"], s1.nets["action_encoder"])   # critic step
    chex.assert_trees_all_close(s1.objectives.params["taco"], s0.objectives.params["taco"])   # no TACO step
    assert changed(s1.nets["action_encoder"], state1.nets["action_encoder"])


def test_sample_draws_whole_windows():
    agent = DrQV2Agent(CFG, SPEC)
    spec = SPEC
    buf = replay_lib.init(spec, 64, 1)
    rng = np.random.default_rng(0)
    for t in range(40):
        first = t % 20 == 0
        buf = replay_lib.add(buf, jnp.asarray(rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)),
                             jnp.asarray(rng.uniform(-1, 1, (1, 2)), jnp.float32),
                             jnp.ones(1), jnp.ones(1), jnp.array([first]),
                             jnp.array([t % 20 == 19]), jnp.array([False]))
    batch = jax.jit(agent.sample)(buf, jax.random.PRNGKey(0))
    assert isinstance(batch, replay_lib.TransitionWindows)
    chex.assert_shape(batch.actions, (CFG.batch_size, K, 2))
    assert bool(batch.future_valid.all())


def test_objective_config_errors():
    with pytest.raises(ValueError, match="TacoConfig.horizon must be an int >= 1, got 0"):
        TacoConfig(horizon=0)
    with pytest.raises(ValueError, match="TacoConfig.reward_gamma must be in \\[0, 1\\], got 1.5"):
        TacoConfig(reward_gamma=1.5)
    with pytest.raises(ValueError, match="TacoConfig.hidden_dim must be an int >= 1, got 0"):
        TacoConfig(hidden_dim=0)
    with pytest.raises(ValueError, match=r"missing \['reward'\]"):
        TacoConfig(loss_scales={"taco": 1.0, "curl": 1.0})

    class Other:
        name = "reconstruction"
    with pytest.raises(ValueError, match="objective 'reconstruction' is not available for "
                                         r"agent=drqv2; valid: \['latent_l2', 'taco'\]"):
        DrQV2Agent(DrQV2Config.tiny(objectives={"reconstruction": Other()}), SPEC)
