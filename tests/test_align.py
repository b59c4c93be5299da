"""RePo's test-time alignment: the losses by hand, shapes, the update (only the encoder moves),
config errors, the paired env, and the whole pipeline on a tiny RePo run of the toy task."""
import dataclasses
import json
import math
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from experiments import align as align_lib
from experiments import config as config_lib
from rl.agents import alignment as aln
from rl.agents.alignment import AlignmentConfig, Aligner
from rl import replay as replay_lib
from rl.envs import make
from rl.core.types import ActionSpec, EnvSpec
from world_models import RSSMWorldModel, WorldModelConfig

CONF = pathlib.Path(__file__).parents[1] / "conf"
B, T = 2, 4
SPEC = EnvSpec("toy/reach", (32, 32, 3), ActionSpec.box(2))
WM_CFG = WorldModelConfig(deter=16, stoch=4, hidden=16, cnn_depth=4, encoder_kernels=(4, 4, 4),
                          decoder_kernels=(5, 5, 8), head_units=16, reward_layers=1)
SMALL = dict(batch_size=B, length=T, critic_units=16, critic_layers=2, critic_latent=4)


# ---- losses by hand -----------------------------------------------------------------------------
def test_chi2_js_and_alignment_losses_by_hand():
    d_s, tau, d_t = jnp.array([1.0, -2.0]), jnp.array([2.0, 0.5]), jnp.array([2.0, -2.0])
    real, fake = aln.chi2_critic_terms(d_s, d_t, tau)
    np.testing.assert_allclose(real, -0.5)          # -mean(2*1, 0.5*-2)
    np.testing.assert_allclose(fake, 1.0)           # mean(2 + 1, -2 + 1)
    np.testing.assert_allclose(aln.alignment_loss(d_t, "support"), -1.0)
    zero = jnp.zeros(3)
    real, fake = aln.js_critic_terms(zero, zero)
    np.testing.assert_allclose([real, fake], [math.log(2)] * 2, rtol=1e-6)
    np.testing.assert_allclose(aln.alignment_loss(zero, "distribution"), math.log(2), rtol=1e-6)
    # BCE(x, 1) = softplus(-x): confident right answers cost ~0, wrong ones ~|x|
    np.testing.assert_allclose(aln.bce_with_logits(jnp.array([20.0]), 1.0), 0.0, atol=1e-6)
    np.testing.assert_allclose(aln.bce_with_logits(jnp.array([20.0]), 0.0), 20.0, rtol=1e-6)
    with pytest.raises(ValueError, match="alignment mode='wasserstein'"):
        aln.alignment_loss(d_t, "wasserstein")


def test_vdb_kl_and_beta_step_by_hand():
    mean = jnp.array([[0.0, 1.0], [0.0, 0.0]])
    logstd = jnp.array([[0.0, math.log(2.0)], [0.0, 0.0]])
    kl = aln.vdb_kl(mean, logstd)
    chex.assert_shape(kl, (2,))
    # dim 1: N(0,1) -> 0; dim 2: -log 2 + (4 + 1)/2 - 1/2 = 2 - log 2
    np.testing.assert_allclose(kl, [2.0 - math.log(2.0), 0.0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(aln.vdb_beta_step(jnp.asarray(0.1), jnp.asarray(0.3), 0.1, 5e-3),
                               0.101, rtol=1e-6)
    np.testing.assert_allclose(aln.vdb_beta_step(jnp.asarray(0.0), jnp.asarray(0.0), 0.1, 5e-3),
                               0.0)                   # clipped at zero


def test_gradient_penalty_by_hand():
    x = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    w = jnp.array([3.0, 4.0])
    np.testing.assert_allclose(aln.gradient_penalty(lambda v: v @ w, x), 25.0)  # ||w||^2
    # fn = sum x^2 per row: grad 2x, penalty mean(4 * (5, 1)) = 12
    np.testing.assert_allclose(aln.gradient_penalty(lambda v: jnp.sum(v ** 2, -1), x), 12.0)


def test_tau_and_u_objectives_by_hand():
    tau, d_s, u = jnp.array([2.0, 0.5]), jnp.array([1.0, -2.0]), jnp.asarray(0.3)
    np.testing.assert_allclose(aln.tau_objective(tau, d_s, u), 0.5 + 0.3 * 0.25, rtol=1e-6)
    # d/dtau = d_s / N + u / N; u is stopped there
    np.testing.assert_allclose(jax.grad(aln.tau_objective)(tau, d_s, u), [0.65, -0.85], rtol=1e-6)
    assert float(jax.grad(aln.tau_objective, argnums=2)(tau, d_s, u)) == 0.0
    # u's gradient is -(E tau - 1) = -0.25: Adam's first step raises u by its lr
    opt = optax.adam(5e-3)
    grad = jax.grad(aln.u_objective)(u, tau)
    np.testing.assert_allclose(grad, -0.25)
    updates, _ = opt.update(grad, opt.init(u), u)
    np.testing.assert_allclose(optax.apply_updates(u, updates), 0.305, rtol=1e-5)


def test_pair_nll_by_hand_and_only_the_target_side_learns():
    src, tgt = jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 0.0]])
    np.testing.assert_allclose(aln.pair_nll(src, tgt), 1.0 + 0.5 * math.log(2 * math.pi),
                               rtol=1e-6)
    g_src, g_tgt = jax.grad(aln.pair_nll, argnums=(0, 1))(src, tgt)
    np.testing.assert_array_equal(g_src, 0.0)
    np.testing.assert_allclose(g_tgt, [[0.0, -1.0]])          # (tgt - src) / N


# ---- networks and shapes -------------------------------------------------------------------------
def test_critic_and_ratio_shapes_and_bottleneck():
    x = jnp.ones((5, 7))
    critic = aln.VDBCritic(units=8, layers=2, latent=3)
    params = critic.init(jax.random.PRNGKey(0), x)
    d, mean, logstd = critic.apply(params, x, jnp.zeros((5, 3)))
    chex.assert_shape(d, (5,))
    chex.assert_shape([mean, logstd], (5, 3))
    np.testing.assert_allclose(d, critic.apply(params, x)[0], rtol=1e-6)  # zero noise = mean
    noisy = critic.apply(params, x, jnp.ones((5, 3)))[0]
    assert not np.allclose(noisy, d)
    ratio = aln.LogDensityRatio(units=8, layers=2)
    chex.assert_shape(ratio.apply(ratio.init(jax.random.PRNGKey(1), x), x), (5,))


def _replay(spec, seed, steps=12):
    rng = np.random.default_rng(seed)
    buf = replay_lib.init(spec, steps, 1)
    for t in range(steps):
        buf = replay_lib.add(
            buf, rng.integers(0, 255, (1, *spec.obs_shape), np.uint8),
            rng.uniform(-1, 1, (1, *spec.action.shape)).astype(np.float32),
            np.zeros(1, np.float32), np.ones(1, np.float32), np.array([t % 6 == 0]),
            np.array([t % 6 == 5]), np.zeros(1, bool))
    return buf


@pytest.fixture(scope="module")
def world():
    wm = RSSMWorldModel(WM_CFG, SPEC)
    params = jax.jit(wm.init)(jax.random.PRNGKey(0))
    pair_spec = dataclasses.replace(SPEC, obs_shape=(32, 32, 6))
    replays = {"source": _replay(SPEC, 0), "target": _replay(SPEC, 1),
               "pair": _replay(pair_spec, 2)}
    return wm, params, replays


@pytest.mark.parametrize("features", ["embed", "posterior"])
def test_sample_and_feature_shapes(world, features):
    wm, params, replays = world
    aligner = Aligner(AlignmentConfig(features=features, **SMALL), wm)
    batch = jax.jit(aligner.sample)(replays, jax.random.PRNGKey(3))
    chex.assert_shape([batch.source.obs, batch.target.obs], (B, T, 32, 32, 3))
    chex.assert_shape(batch.pair.obs, (B, T, 32, 32, 6))
    x = aligner.features(params, batch.source.obs, batch.source, jax.random.PRNGKey(4))
    size = wm.embed_size if features == "embed" else WM_CFG.feat_size
    chex.assert_shape(x, (B * T, size))
    assert aligner.feature_size == size
    src, tgt = aligner.split_pair(batch.pair.obs)
    chex.assert_shape([src, tgt], (B, T, 32, 32, 3))
    with pytest.raises(ValueError, match="need 6 channels"):
        aligner.split_pair(batch.source.obs)


@pytest.mark.parametrize("features,mode", [("embed", "support"), ("posterior", "support"),
                                           ("embed", "distribution")])
def test_update_moves_only_the_encoder(world, features, mode):
    """The RSSM, heads and probe decoder (and so the agent that acts through them) are the
    checkpoint's after an update; the encoder, critic and (support) density ratio moved."""
    wm, params, replays = world
    aligner = Aligner(AlignmentConfig(features=features, mode=mode, **SMALL), wm)
    state0 = aligner.init(jax.random.PRNGKey(5), params)
    update = jax.jit(lambda s, k: aligner.update(s, aligner.sample(replays, k), k))
    state, metrics = update(state0, jax.random.PRNGKey(6))
    for name, sub in params.items():
        for a, b in zip(jax.tree.leaves(sub), jax.tree.leaves(state.source[name])):
            np.testing.assert_array_equal(a, b, err_msg=f"source {name} changed")
    moved = lambda a, b: float(optax.global_norm(jax.tree.map(jnp.subtract, a, b)))
    assert moved(state.encoder, params["encoder"]) > 0.0
    assert moved(state.critic, state0.critic) > 0.0
    assert (moved(state.tau, state0.tau) > 0.0) == (mode == "support")
    adapted = aligner.adapted_params(state)
    assert set(adapted) == set(params)
    for name in set(params) - {"encoder"}:
        assert adapted[name] is state.source[name]
    for k, v in metrics.items():
        chex.assert_shape(v, ())
        assert np.isfinite(v), k
    assert {"encoder/align_loss", "encoder/pair_loss", "critic/kl", "critic/gp"} <= set(metrics)
    # the encoder's gradient is the only one applied: its loss reaches nothing else in the agent
    batch = aligner.sample(replays, jax.random.PRNGKey(7))
    grads = jax.jit(jax.grad(lambda p: aligner.pair_loss(p["encoder"], p, batch.pair,
                                                         jax.random.PRNGKey(8))))(params)
    assert float(optax.global_norm(grads["encoder"])) > 0.0
    for name in ("reward", "decoder"):
        assert float(optax.global_norm(grads[name])) == 0.0, name


def test_critic_separates_and_pairs_pull_together(world):
    """Signs: critic steps raise D on source features above target ones; encoder steps on the
    paired-frame loss alone bring recoloured frames' embeddings to the source ones."""
    wm, params, replays = world
    aligner = Aligner(AlignmentConfig(**{**SMALL, "gp_weight": 0.0}), wm)
    state = aligner.init(jax.random.PRNGKey(0), params)
    x_s = jax.random.normal(jax.random.PRNGKey(1), (64, aligner.feature_size)) + 2.0
    x_t = jax.random.normal(jax.random.PRNGKey(2), (64, aligner.feature_size)) - 2.0
    opt = optax.adam(1e-3)

    @jax.jit
    def critic_step(critic, opt_state, key):
        grads, aux = jax.grad(aligner.critic_loss, has_aux=True)(
            critic, x_s, x_t, jnp.ones(64), jnp.asarray(0.0), key)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(critic, updates), opt_state, aux

    critic, opt_state = state.critic, opt.init(state.critic)
    for k in jax.random.split(jax.random.PRNGKey(3), 30):
        critic, opt_state, aux = critic_step(critic, opt_state, k)
    assert float(aux["d_source"]) > float(aux["d_target"]) + 0.5

    pair_only = Aligner(AlignmentConfig(**{**SMALL, "aln_coef": 0.0, "encoder_lr": 3e-3}), wm)
    state = pair_only.init(jax.random.PRNGKey(0), params)
    pair = replays["pair"]
    # the target half is the source half recoloured (channels reversed)
    pair = pair.replace(obs=jnp.concatenate([pair.obs[..., :3], pair.obs[..., 2::-1]], -1))
    update = jax.jit(lambda s, k: pair_only.update(
        s, pair_only.sample({**replays, "pair": pair}, k), k))
    losses = []
    for k in jax.random.split(jax.random.PRNGKey(4), 25):
        state, metrics = update(state, k)
        losses.append(float(metrics["encoder/pair_loss"]))
    excess = np.asarray(losses) - 0.5 * math.log(2 * math.pi)      # = 0.5 * mean squared gap
    assert excess[-3:].mean() < 0.7 * excess[:3].mean(), losses


# ---- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,message", [
    ("mode", "wasserstein", r"alignment.mode='wasserstein'; valid: \['support', 'distribution'\]"),
    ("features", "pixels", r"alignment.features='pixels'; valid: \['embed', 'posterior'\]"),
    ("batch_size", 0, "alignment.batch_size=0; must be an int >= 1"),
    ("encoder_lr", 0.0, "alignment.encoder_lr=0.0; must be > 0"),
    ("gp_weight", -1.0, "alignment.gp_weight=-1.0; must be >= 0"),
    ("encoder_grad_clip", 0.0, "alignment.encoder_grad_clip=0.0; must be > 0 or null"),
])
def test_alignment_config_errors_name_the_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        AlignmentConfig(**{field: value})


@pytest.mark.parametrize("field,value,message", [
    ("run", "", "run is required"),
    ("source_data", "disk", r"source_data='disk'; valid: \['replay', 'collect'\]"),
    ("pair_policy", "expert", r"pair_policy='expert'; valid: \['source', 'random'\]"),
    ("frames", 0, "frames=0; must be an int >= 1"),
    ("pair_frames", -5, "pair_frames=-5; must be an int >= 0"),
    ("device", "tpu", "device='tpu'"),
    ("wandb_mode", "on", "wandb_mode='on'"),
])
def test_run_config_errors_name_the_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        align_lib.AlignRunConfig(**{"run": "x", field: value})


def _compose(*overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("align", overrides=list(overrides))


def test_conf_align_composes_and_refuses_typos():
    cfg = align_lib.to_config(_compose("run=/some/run", "out_dir=/tmp/x", "frames=500",
                                       "alignment.features=posterior"))
    assert cfg.frames == 500 and cfg.alignment.features == "posterior"
    assert cfg.target_env_kwargs == {"distractor": "test", "appearance_shift": "color"}
    assert cfg.alignment == dataclasses.replace(AlignmentConfig(), features="posterior")
    for typo in ("framez=1", "alignment.mod=support"):
        with pytest.raises(ConfigCompositionException):
            _compose("run=/x", typo)
    with pytest.raises(ValueError, match="alignment.mode='bogus'"):
        align_lib.to_config(_compose("run=/x", "out_dir=/x", "alignment.mode=bogus"))


# ---- the paired env -----------------------------------------------------------------------------
class Recoloured:
    """toy/reach with the colour channels reversed: a pure appearance shift."""

    def __init__(self, seed_offset=0, **kwargs):
        self.env = make("toy/reach", size=32, **kwargs)
        self.spec, self.info_keys = self.env.spec, self.env.info_keys
        self.seed_offset = seed_offset

    def reset(self, seed):
        obs, info = self.env.reset(seed + self.seed_offset)
        return obs[..., ::-1].copy(), info

    def step(self, action):
        obs, *rest = self.env.step(action)
        return (obs[..., ::-1].copy(), *rest)

    def close(self):
        self.env.close()


def test_paired_env_renders_one_state_twice_and_catches_divergence():
    env = align_lib.PairedEnv(lambda: make("toy/reach", size=32), Recoloured)
    assert env.spec.obs_shape == (32, 32, 6) and env.info_keys == ("success",)
    obs, _ = env.reset(3)
    np.testing.assert_array_equal(obs[..., 3:], obs[..., 2::-1])
    for _ in range(5):
        obs, reward, *_ = env.step(np.array([0.5, -0.3], np.float32))
        np.testing.assert_array_equal(obs[..., 3:], obs[..., 2::-1])
    bad = align_lib.PairedEnv(lambda: make("toy/reach", size=32),
                              lambda: Recoloured(seed_offset=1))
    bad.reset(3)
    with pytest.raises(RuntimeError, match="diverged"):
        for _ in range(5):
            bad.step(np.array([0.5, -0.3], np.float32))
    with pytest.raises(ValueError, match="paired envs differ"):
        align_lib.PairedEnv(lambda: make("toy/reach", size=32),
                            lambda: make("toy/reach", size=16))


def test_paired_dmc_frames_share_the_simulator_state():
    pytest.importorskip("dm_control.suite")
    from rl.envs import distractors

    target_kwargs = dict(size=64, distractor="test", appearance_shift="color")
    env = align_lib.PairedEnv(lambda: make("dmc/walker_walk", size=64, distractor="train"),
                              lambda: make("dmc/walker_walk", **target_kwargs))
    try:
        obs, _ = env.reset(5)
        for step in range(3):
            if step:
                obs, *_ = env.step(np.full(env.spec.action.shape, 0.3, np.float32))
            src, tgt = obs[..., :3], obs[..., 3:]
            robot = ~env.target.background_mask()
            assert 0.01 < robot.mean() < 0.7
            shifted = distractors.shift_appearance(src, robot, "color")
            np.testing.assert_array_equal(tgt[robot], shifted[robot])   # same robot, recoloured
            assert not np.array_equal(src[~robot], tgt[~robot])         # other backgrounds
    finally:
        env.close()


# ---- the whole pipeline -------------------------------------------------------------------------
TRAIN = ["env=toy/reach", "agent=imagination", "world_model=debug", "objective=repo",
         "env.size=32", "agent.batch_size=2", "agent.length=6", "agent.horizon=3",
         "agent.actor_critic.actor_units=8", "agent.actor_critic.critic_units=8",
         "agent.actor_critic.actor_layers=1", "agent.actor_critic.critic_layers=1",
         "loop.update_every_frames=10", "loop.updates_per_call=1", "loop.frames=100",
         "loop.warmup_frames=20", "loop.eval_every_frames=0", "loop.progress=false",
         "logger.wandb_mode=disabled", "loop.video_every_evals=0"]
ALIGN = ["frames=40", "pair_frames=20", "update_every_frames=10", "updates_per_call=2",
         "eval_every_frames=20", "eval_episodes=1", "eval_envs=1", "log_every_frames=10",
         "progress=false", "alignment.batch_size=2", "alignment.length=4",
         "alignment.critic_units=16", "alignment.critic_layers=2", "alignment.critic_latent=4"]


@pytest.fixture(scope="module")
def repo_run(tmp_path_factory):
    """A tiny RePo agent trained for 100 frames of toy/reach (with its checkpoint)."""
    from experiments.train import train

    run = tmp_path_factory.mktemp("repo_run")
    config_lib.register()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=TRAIN)
    cfg.run_dir = str(run)
    train(cfg)
    return run


def test_align_end_to_end_on_a_tiny_repo_run(repo_run, tmp_path):
    from rl.checkpoint import Checkpointer

    out = tmp_path / "align"
    result = align_lib.align(_compose(f"run={repo_run}", f"out_dir={out}", *ALIGN),
                             make_target=Recoloured)
    saved = json.loads((out / "align.json").read_text())
    assert saved["updates"] == result["updates"] == 8              # 4 calls x 2
    assert saved["objective"] == "repo" and saved["paired_steps"] == 21
    for phase in ("before", "after"):
        assert set(saved[phase]) == {"target", "source"}
        assert np.isfinite(saved[phase]["target"]["return"])
    assert [row["frames"] for row in saved["timeline"]] == [0, 20, 40]
    assert np.isfinite(saved["final_metrics"]["encoder/pair_loss"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("align/critic/kl" in row for row in rows)
    assert (out / "align_config.yaml").exists()

    # the adapted agent differs from the trained one in its encoder only
    run = align_lib.load_run(repo_run, print_fn=lambda s: None)
    ckpt = Checkpointer(out / "checkpoints")
    adapted = ckpt.restore({"agent": run.state})[0]["agent"]
    ckpt.close()
    trained = jax.tree_util.tree_flatten_with_path(run.state)[0]
    for (path, a), b in zip(trained, jax.tree.leaves(adapted)):
        name = jax.tree_util.keystr(path)
        if "'encoder'" in name and "'world_model'" in name:
            continue
        np.testing.assert_array_equal(a, b, err_msg=name)
    moved = optax.global_norm(jax.tree.map(jnp.subtract, adapted.nets["world_model"]["encoder"],
                                           run.state.nets["world_model"]["encoder"]))
    assert float(moved) > 0.0


def test_align_refuses_bad_runs_and_settings(repo_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        align_lib.load_run(tmp_path / "nothing")
    drqv2 = tmp_path / "drqv2"
    drqv2.mkdir()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        OmegaConf.save(compose("config", overrides=["agent=drqv2"]), drqv2 / "config.yaml")
    with pytest.raises(ValueError, match="agent.name='drqv2'.*needs agent=imagination"):
        align_lib.load_run(drqv2)
    with pytest.raises(ValueError, match="seed_index=2; the run has num_seeds=1"):
        align_lib.load_run(repo_run, seed_index=2)
    base = [f"run={repo_run}", f"out_dir={tmp_path / 'out'}", *ALIGN]
    with pytest.raises(ValueError, match="unchanged: nothing to align to"):
        align_lib.align(_compose(*base, "~target_env_kwargs", "+target_env_kwargs={}"))
    with pytest.raises(ValueError, match="cannot make the target env toy/reach.*distractor"):
        align_lib.align(_compose(*base))      # the default (DMC) shift does not fit toy/reach
    with pytest.raises(ValueError, match="pair_frames=2 gives 3 paired steps per env, fewer "
                                         "than alignment.length=4"):
        align_lib.align(_compose(*base, "pair_frames=2"), make_target=Recoloured)
