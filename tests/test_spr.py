"""SPR: the normalised-L2 loss by hand (cosines, masking), the target update, the conv transition
model (shapes, scan vs steps, batch norm), gradients (none into the target), a short learning
run, config errors, and objective=spr on a world model (one jitted imagination update)."""
import dataclasses
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import representations
from representations import spr
from rl.agents import composition
from representations.repo import RePoConfig
from representations.spr import SPRConfig
from rl.core.types import ActionSpec, EnvSpec
from world_models import RSSMWorldModel
from world_models.transition import TransitionModel, renormalize

from test_reconstruction import TINY, Batch


# ---------------------------------------------------------------------------- the loss
def test_loss_hand_computed_cosines_and_mask():
    pred = jnp.array([[[1.0, 0.0], [1.0, 0.0]],
                      [[3.0, 4.0], [1.0, 1.0]]])
    target = jnp.array([[[2.0, 0.0], [0.0, 2.0]],      # cos 1 -> 0; cos 0 -> 2
                        [[-3.0, -4.0], [1.0, 0.0]]])   # cos -1 -> 4; cos 1/sqrt2 -> 2 - sqrt2
    steps = spr.spr_step_losses(pred, target)
    np.testing.assert_allclose(steps, [[0.0, 2.0], [4.0, 2.0 - math.sqrt(2.0)]], atol=1e-6)
    valid = jnp.array([[True, True], [True, False]])   # sample 1's episode ends after step 1
    loss = spr.spr_loss(pred, target, valid)
    chex.assert_shape(loss, (2,))
    # mean over K (the masked step counts as 0): (0 + 2) / 2 and (4 + 0) / 2; batch mean 1.5
    np.testing.assert_allclose(loss, [1.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(jnp.mean(loss), 1.5, atol=1e-6)
    # vectors shorter than eps = 1e-3 are divided by eps, not by their norm (F.normalize)
    tiny = spr.spr_step_losses(jnp.array([[1e-4, 0.0]]), jnp.array([[1.0, 0.0]]))
    np.testing.assert_allclose(tiny, [0.81], rtol=1e-5)
    metrics = spr.cosine_metrics(pred, target, valid)
    np.testing.assert_allclose(metrics["cosine"], (1.0 + 0.0 - 1.0) / 3, atol=1e-6)
    np.testing.assert_allclose(metrics["valid_fraction"], 0.75)
    with pytest.raises(ValueError, match=r"valid \[B, K\]"):
        spr.spr_loss(pred, target, valid[:, :1])


def test_target_update_by_hand():
    online = {"a": jnp.array(1.0), "b": jnp.array([2.0, 4.0])}
    target = {"a": jnp.array(3.0), "b": jnp.array([0.0, 0.0])}
    new = spr.target_update(online, target, 0.75)       # 0.75 * old + 0.25 * online
    np.testing.assert_allclose(new["a"], 2.5)
    np.testing.assert_allclose(new["b"], [0.5, 1.0])
    copy = spr.target_update(online, target, 0.0)       # SPR with augmentation: a copy
    chex.assert_trees_all_close(copy, online)
    jitted = jax.jit(spr.target_update)(online, target, jnp.asarray(0.75))
    chex.assert_trees_all_close(jitted, new)


def test_config_defaults_and_errors():
    cfg = SPRConfig()
    assert (cfg.horizon, cfg.target_ema, cfg.loss_scales) == (5, 0.0, {"spr": 5.0})
    assert cfg.paper_lambda == pytest.approx(2.0)
    bad = [({"horizon": 0}, "horizon must be an int >= 1, got 0"),
           ({"target_ema": 1.0}, r"target_ema must be in \[0, 1\), got 1.0"),
           ({"target_ema": -0.1}, r"got -0.1"),
           ({"transition_norm": "layer"}, "transition_norm='layer'"),
           ({"transition_channels": 2.5}, "transition_channels must be an int >= 1, got 2.5"),
           ({"normalize_eps": 0.0}, "normalize_eps must be > 0, got 0.0"),
           ({"loss_scales": {"spr": -1.0}}, r"loss_scales\['spr'\] must be >= 0, got -1.0"),
           ({"loss_scales": {"sprr": 1.0}}, r"missing \['spr'\], unknown \['sprr'\]")]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            SPRConfig(**kwargs)


# ---------------------------------------------------------------------------- transition model
def test_transition_rollout_shapes_steps_and_norm():
    b, k, a = 3, 4, 5
    latent = renormalize(jax.random.uniform(jax.random.key(0), (b, 7, 7, 64)))
    actions = jax.random.randint(jax.random.key(1), (b, k), 0, a)
    model = TransitionModel(a)
    params = jax.jit(model.init)(jax.random.key(2), latent[:1])
    chex.assert_shape(params["conv_0"]["kernel"], (3, 3, 64 + a, 64))
    chex.assert_shape(params["conv_out"]["kernel"], (3, 3, 64, 64))
    rolled = jax.jit(model.rollout)(params, latent, actions)
    chex.assert_shape(rolled, (b, k, 7, 7, 64))
    chex.assert_type(rolled, jnp.float32)
    flat = rolled.reshape(b, k, -1)      # renormalised per sample and step
    np.testing.assert_allclose(flat.min(-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(flat.max(-1), 1.0, atol=1e-4)
    step = jax.jit(model.step)
    z = latent                            # the scan equals K explicit steps
    for j in range(k):
        z = step(params, z, actions[:, j])
        np.testing.assert_allclose(rolled[:, j], z, atol=1e-5)
    other = step(params, latent, (actions[:, 0] + 1) % a)
    assert not np.allclose(other, rolled[:, 0])
    # batch norm uses the batch's statistics: a sample's output depends on the others
    assert np.max(np.abs(step(params, latent[:2], actions[:2, 0])[0] - rolled[0, 0])) > 1e-3
    np.testing.assert_allclose(step(params, latent[::-1], actions[::-1, 0])[::-1], rolled[:, 0],
                               atol=1e-5)   # ... but not on their order
    plain = TransitionModel(a, hidden_channels=8, norm="none", residual=True)
    p = jax.jit(plain.init)(jax.random.key(3), latent[:1])
    assert "norm_0" not in p
    plain_step = jax.jit(plain.step)
    swapped = latent.at[1:].set(latent[:1])
    np.testing.assert_allclose(plain_step(p, swapped, actions[:, 0])[0],
                               plain_step(p, latent, actions[:, 0])[0], atol=1e-6)
    with pytest.raises(ValueError, match="norm='layer'"):
        TransitionModel(a, norm="layer")
    with pytest.raises(ValueError, match=r"actions \[B, K\]"):
        model.rollout(params, latent, actions[0])


# ---------------------------------------------------------------------------- gradients
class _Encoder(nn.Module):
    @nn.compact
    def __call__(self, images):
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), padding="VALID")(images))
        return renormalize(x)


def _setup(b=4, k=3, a=3, d=12):
    encoder, projection = _Encoder(), nn.Dense(d)
    images = jax.random.uniform(jax.random.key(0), (b, k + 1, 11, 11, 2))
    model = spr.SPR(SPRConfig(horizon=k, transition_channels=8), a)

    @jax.jit
    def init():
        enc = encoder.init(jax.random.key(1), images[:, 0])
        latent = encoder.apply(enc, images[:, 0])
        online = {"encoder": enc,
                  "projection": projection.init(jax.random.key(2), latent.reshape(b, -1))}
        return online, model.init(jax.random.key(3), latent[:1], d)

    online, aux = init()
    actions = jax.random.randint(jax.random.key(4), (b, k), 0, a)
    valid = jnp.ones((b, k), bool).at[0, 1:].set(False)
    encode = lambda p, x: encoder.apply(p["encoder"], x)
    project = lambda p, z: projection.apply(p["projection"], z.reshape(z.shape[0], -1))
    return model, online, aux, images, actions, valid, encode, project


def test_no_gradient_reaches_the_target():
    model, online, aux, images, actions, valid, encode, project = _setup()

    def loss_fn(online, aux, target_params):
        latent = encode(online, images[:, 0])
        target = spr.target_projections(lambda x: encode(target_params, x),
                                        lambda z: project(target_params, z), images[:, 1:])
        loss, _ = model.loss(aux, latent, actions, valid, lambda z: project(online, z), target)
        return jnp.mean(loss)

    # target_ema = 0: the target params are the online ones, passed as a separate argument so
    # that the gradient through the target path is measured on its own (it must be 0, so with
    # the very same variables the gradient is g_online alone)
    g_online, g_aux, g_target = jax.jit(jax.grad(loss_fn, argnums=(0, 1, 2)))(online, aux, online)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(g_target))
    for tree in (g_online["encoder"], g_online["projection"], g_aux["transition"],
                 g_aux["predictor"]):
        assert float(optax.global_norm(tree)) > 0


def test_loss_falls_on_a_predictable_sequence():
    """A fixed random teacher transition model and projection make the targets a function of
    ``(z_t, a_t..a_{t+K-1})``; a few Adam steps on the student lower the loss clearly."""
    b, k, a, d = 16, 3, 3, 8
    latent = renormalize(jax.random.uniform(jax.random.key(0), (b, 3, 3, 4)))
    actions = jax.random.randint(jax.random.key(1), (b, k), 0, a)
    valid = jnp.ones((b, k), bool)
    cfg = SPRConfig(horizon=k, transition_channels=8)
    teacher, student = spr.SPR(cfg, a), spr.SPR(cfg, a)
    projection = nn.Dense(d)

    @jax.jit
    def setup():
        t_aux = teacher.init(jax.random.key(2), latent[:1], d)
        t_proj = projection.init(jax.random.key(3), latent.reshape(b, -1))
        future = teacher.transition.rollout(t_aux["transition"], latent, actions)
        target = projection.apply(t_proj, future.reshape(b, k, -1))
        return target, {"aux": student.init(jax.random.key(4), latent[:1], d),
                        "proj": projection.init(jax.random.key(5), latent.reshape(b, -1))}

    target, params = setup()
    opt = optax.adam(3e-3)

    def loss_fn(p):
        project = lambda z: projection.apply(p["proj"], z.reshape(z.shape[0], -1))
        return jnp.mean(student.loss(p["aux"], latent, actions, valid, project, target)[0])

    @jax.jit
    def train(p):
        def step(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss
        (p, _), losses = jax.lax.scan(step, (p, opt.init(p)), None, length=60)
        return p, losses, loss_fn(p)

    params, losses, final = train(params)
    assert np.isfinite(losses).all()
    assert float(final) < 0.3 * float(losses[0]), (float(losses[0]), float(final))


# ---------------------------------------------------------------------------- world models
B, T, K = 2, 6, 2
SPEC = EnvSpec("t", (32, 32, 3), ActionSpec.categorical(3))
WM_CFG = dataclasses.replace(TINY, continue_head=False, reward_head="gaussian",
                             loss_scales={"reward": 1.0, "kl": 1.0})
WM_SPR = SPRConfig(horizon=K, projection_dim=6, loss_scales={"spr": 2.0})
# no decoder (cheaper to compile): RePo next to SPR
WM_LIGHT = dataclasses.replace(WM_CFG, decoder=False)
SPR_ON_REPO = {"repo": RePoConfig(loss_scales={"kl": 1.0}), "spr": WM_SPR}


def _wm_batch():
    rng = np.random.default_rng(0)
    is_first = np.zeros((B, T), bool)
    is_first[:, 0] = True
    is_first[1, 3] = True            # a new episode inside sequence 1
    return Batch(jnp.asarray(rng.integers(0, 255, (B, T, 32, 32, 3)), jnp.uint8),
                 jnp.asarray(rng.integers(0, 3, (B, T)), jnp.int32),
                 jnp.asarray(rng.normal(size=(B, T)), jnp.float32), jnp.ones((B, T)),
                 jnp.asarray(is_first), jnp.zeros((B, T), bool), jnp.zeros((B, T), bool))


def test_world_model_objective_masks_and_gradients():
    default = composition.build({"reconstruction": representations.ReconstructionConfig(),
                                 "spr": WM_SPR}, RSSMWorldModel(WM_CFG, SPEC))
    assert default["spr"].loss_keys == ("spr",)
    assert composition.loss_scales(default, WM_CFG.loss_keys, WM_CFG.loss_scales) == {
        "reward": 1.0, "kl": 1.0, "image": 1.0, "spr": 2.0}
    wm = RSSMWorldModel(WM_LIGHT, SPEC)
    objectives = composition.build(SPR_ON_REPO, wm)
    assert composition.loss_scales(objectives, wm.loss_keys, wm.loss_scales) == {
        "reward": 1.0, "kl": 1.0, "spr": 2.0}
    batch = _wm_batch()

    def spr_map(wm_params, params, states):
        _, out = wm.observe(wm_params, wm.initial(B), batch, jax.random.key(2))
        inputs = representations.ObjectiveInputs(batch, out.feats, model=wm, model_out=out)
        losses, metrics, _ = composition.losses(objectives, params, states, inputs,
                                                jax.random.key(3))
        return jnp.mean(losses["spr"]), (losses, metrics)

    @jax.jit
    def run():
        params, states = composition.init(objectives, jax.random.key(0), None)
        wm_params = wm.init(jax.random.key(1))
        return jax.grad(spr_map, argnums=(0, 1), has_aux=True)(wm_params, params, states)

    (g_wm, g_obj), (losses, metrics) = run()
    chex.assert_shape(list(losses.values()), (B, T))
    loss = np.asarray(losses["spr"])
    # windows t = 0..T-K-1 (the last K columns are padding); sequence 1 restarts at 3, so
    # window 2 (steps 3, 4) is all masked and window 1 (steps 2, 3) keeps its first step
    assert (loss[:, T - K:] == 0).all() and loss[1, 2] == 0
    assert (loss[0, :T - K] > 0).all() and loss[1, 1] > 0 and loss[1, 3] > 0
    np.testing.assert_allclose(metrics["spr_valid_fraction"], (8 + 5) / 16)
    assert "beta" in metrics                  # RePo's metrics pass through
    for tree in (g_wm["encoder"], g_wm["rssm"], g_obj["spr"]["projection"],
                 g_obj["spr"]["predictor"]):
        assert float(optax.global_norm(tree)) > 0
    with pytest.raises(ValueError, match=r"on a world model .*target_ema=0.99"):
        representations.get("spr")(dataclasses.replace(WM_SPR, target_ema=0.99), wm)


@pytest.mark.slow(minutes=0.3)   # ~10 s of compilation on a 2-core CPU
def test_imagination_agent_updates_with_spr():
    from rl.agents.imagination import ImaginationAgent
    from rl.agents.imagination.config import preset
    from rl.replay import Sequences
    spec = EnvSpec("t", (32, 32, 3), ActionSpec.categorical(3))
    cfg = dataclasses.replace(preset("debug"), return_indexing="v3",
                              objectives={"reconstruction": representations.ReconstructionConfig(),
                                          "spr": WM_SPR})
    agent = ImaginationAgent(cfg, spec)
    state = agent.init(jax.random.key(0))
    rng = np.random.default_rng(1)
    n, length = cfg.batch_size, cfg.length
    seq = Sequences(obs=jnp.asarray(rng.integers(0, 255, (n, length, 32, 32, 3)), jnp.uint8),
                    action=jnp.asarray(rng.integers(0, 3, (n, length)), jnp.int32),
                    reward=jnp.ones((n, length)), discount=jnp.ones((n, length)),
                    is_first=jnp.zeros((n, length), bool).at[:, 0].set(True),
                    is_last=jnp.zeros((n, length), bool),
                    is_terminal=jnp.zeros((n, length), bool),
                    env_index=jnp.zeros(n, jnp.int32), slot=jnp.zeros(n, jnp.int32),
                    prob=jnp.ones(n))
    new, metrics = jax.jit(agent.update)(state, seq, jax.random.key(2), jnp.asarray(0))
    for key in ("wm/loss/spr", "wm/spr_cosine", "wm/loss/image"):
        assert np.isfinite(float(metrics[key])), key
    before = jax.tree.leaves(state.objective_params["spr"]["predictor"])
    after = jax.tree.leaves(new.objective_params["spr"]["predictor"])
    assert any(not np.allclose(x, y) for x, y in zip(before, after))
