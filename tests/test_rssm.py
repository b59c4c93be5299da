import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from world_models import conv
from world_models.config import WorldModelConfig
from world_models.rssm import RSSM

B, T, E, A = 3, 5, 12, 2
GAUSSIAN = WorldModelConfig(deter=8, stoch=4, hidden=8)
CATEGORICAL = WorldModelConfig(latent="categorical", deter=8, stoch=3, classes=5, hidden=8,
                               act="silu", norm="layer")


@pytest.fixture(scope="module", params=[GAUSSIAN, CATEGORICAL], ids=["gaussian", "categorical"])
def model(request):
    """(rssm, params, jitted observe) per latent kind, built once per module."""
    rssm = RSSM(request.param, A, E)
    params = jax.jit(rssm.init)(jax.random.PRNGKey(0))
    observe = jax.jit(lambda p, e, a, f, k: rssm.observe(p, e, a, f, rssm.initial(e.shape[0]), k))
    return rssm, params, observe


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    embeds = jnp.asarray(rng.normal(size=(B, T, E)), jnp.float32)
    actions = jnp.asarray(rng.uniform(-1, 1, size=(B, T, A)), jnp.float32)
    return embeds, actions


def test_shapes_and_dtypes(model):
    rssm, params, observe = model
    cfg = rssm.cfg
    embeds, actions = _inputs()
    is_first = jnp.zeros((B, T), bool).at[:, 0].set(True)
    last, posts, priors = observe(params, embeds, actions, is_first, jax.random.PRNGKey(1))
    stoch = cfg.stoch_size
    chex.assert_shape([posts.deter, priors.deter], (B, T, cfg.deter))
    chex.assert_shape([posts.stoch, priors.stoch], (B, T, stoch))
    chex.assert_shape(last.deter, (B, cfg.deter))
    chex.assert_type([posts.deter, posts.stoch, priors.stoch], jnp.float32)
    feats = rssm.features(posts)
    chex.assert_shape(feats, (B, T, cfg.feat_size))
    kl = rssm.kl(posts, priors)
    chex.assert_shape(kl, (B, T))
    assert bool(jnp.all(kl >= -1e-5))
    chex.assert_shape(rssm.entropy(posts), (B, T))
    nxt = jax.jit(rssm.img_step)(params, last, actions[:, 0], jax.random.PRNGKey(2))
    chex.assert_shape(nxt.stoch, (B, stoch))
    chex.assert_tree_all_finite((posts, priors, nxt))
    if cfg.latent == "categorical":
        chex.assert_shape(posts.stats["logits"], (B, T, cfg.stoch, cfg.classes))
        # forward values are exact one-hots per group
        groups = posts.stoch.reshape(B, T, cfg.stoch, cfg.classes)
        np.testing.assert_allclose(groups.sum(-1), 1.0, rtol=1e-6)
        assert set(np.unique(np.round(np.asarray(groups), 6))) <= {0.0, 1.0}
        # unimix: every class keeps at least unimix / classes probability
        probs = jax.nn.softmax(posts.stats["logits"], -1)
        assert float(probs.min()) >= cfg.unimix / cfg.classes - 1e-7


def test_observe_resets_on_is_first(model):
    rssm, params, observe = model
    embeds, actions = _inputs()
    reset_at = 3
    is_first = jnp.zeros((B, T), bool).at[:, 0].set(True).at[:, reset_at].set(True)
    _, posts, priors = observe(params, embeds, actions, is_first, jax.random.PRNGKey(1))
    # a fresh start on the tail of the sequence (different sampling keys on purpose: the state
    # right after a reset must not depend on anything before it)
    _, fresh_posts, fresh_priors = observe(params, embeds[:, reset_at:], actions[:, reset_at:],
                                           is_first[:, reset_at:], jax.random.PRNGKey(7))
    pick = lambda tree, t: jax.tree.map(lambda x: x[:, t], tree)
    for before, fresh in ((posts, fresh_posts), (priors, fresh_priors)):
        chex.assert_trees_all_close(pick(before, reset_at).stats, pick(fresh, 0).stats, atol=1e-6)
    np.testing.assert_allclose(posts.deter[:, reset_at], fresh_posts.deter[:, 0], atol=1e-6)
    # ... and the previous action is reset too: a garbage state and action under is_first give
    # exactly the step from the initial state with a zero action (same key)
    garbage = jax.tree.map(lambda x: x + 3.0, pick(posts, 1))
    key = jax.random.PRNGKey(3)
    obs_step = jax.jit(rssm.obs_step)
    reset_post, _ = obs_step(params, garbage, actions[:, 1] + 5.0, embeds[:, 2],
                                  jnp.ones((B,), bool), key)
    fresh_post, _ = obs_step(params, rssm.initial(B), jnp.zeros((B, A)), embeds[:, 2],
                                  jnp.zeros((B,), bool), key)
    chex.assert_trees_all_close(reset_post, fresh_post, atol=1e-6)
    # without a reset the state does carry over
    carried, _ = obs_step(params, garbage, actions[:, 1], embeds[:, 2],
                               jnp.zeros((B,), bool), key)
    assert not np.allclose(carried.deter, fresh_post.deter)


def test_kl_matches_distrax_and_latent_floors(model):
    rssm, params, observe = model
    embeds, actions = _inputs()
    _, posts, priors = observe(params, embeds, actions, jnp.zeros((B, T), bool),
                               jax.random.PRNGKey(1))
    if rssm.cfg.latent == "categorical":
        q = distrax.Categorical(logits=posts.stats["logits"])
        p = distrax.Categorical(logits=priors.stats["logits"])
        np.testing.assert_allclose(rssm.kl(posts, priors), q.kl_divergence(p).sum(-1),
                                   rtol=1e-4, atol=1e-5)
        return
    q = distrax.MultivariateNormalDiag(posts.stats["mean"], posts.stats["std"])
    p = distrax.MultivariateNormalDiag(priors.stats["mean"], priors.stats["std"])
    np.testing.assert_allclose(rssm.kl(posts, priors), q.kl_divergence(p), rtol=1e-4, atol=1e-5)
    assert float(posts.stats["std"].min()) >= GAUSSIAN.min_std


def test_samples_pass_gradients(model):
    """Reparameterised (gaussian) or straight-through (categorical) samples carry gradients."""
    rssm, params, observe = model
    embeds, actions = _inputs()

    def total(embeds):
        _, posts, _ = observe(params, embeds, actions, jnp.zeros((B, T), bool),
                              jax.random.PRNGKey(1))
        return jnp.sum(posts.stoch * jnp.arange(posts.stoch.shape[-1]))

    grad = jax.jit(jax.grad(total))(embeds)
    assert float(jnp.abs(grad).sum()) > 0.0


def test_observe_checks_shapes(model):
    rssm, params, _ = model
    embeds, actions = _inputs()
    with pytest.raises(ValueError, match="action width"):
        rssm.observe(params, embeds, actions[..., :1], jnp.zeros((B, T), bool),
                     rssm.initial(B), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="share"):
        rssm.observe(params, embeds, actions[:, :2], jnp.zeros((B, T), bool),
                     rssm.initial(B), jax.random.PRNGKey(0))


def test_conv_sizes_and_image_scales():
    assert conv.encoder_embed_size((64, 64, 3), 32, (4, 4, 4, 4)) == 1024
    assert conv.decoder_output_size((5, 5, 6, 6)) == 64
    assert conv.encoder_embed_size((32, 32, 3), 4, (4, 4, 4)) == 2 * 2 * 16
    assert conv.decoder_output_size((5, 5, 8)) == 32
    with pytest.raises(ValueError, match="give 64x64"):
        conv.check_decoder((32, 32, 3), (5, 5, 6, 6))
    with pytest.raises(ValueError, match="too small"):
        conv.encoder_embed_size((16, 16, 3), 32, (4, 4, 4, 4))
    pixels = jnp.array([0, 255, 128], jnp.uint8)
    expected = {"centered": [-0.5, 0.5, 128 / 255 - 0.5], "symmetric": [-1.0, 1.0, 256 / 255 - 1],
                "unit": [0.0, 1.0, 128 / 255]}
    for scale, values in expected.items():
        np.testing.assert_allclose(conv.preprocess_image(pixels, scale), values, atol=1e-6)
    for scale in ("centered", "symmetric", "unit"):
        back = conv.postprocess_image(conv.preprocess_image(pixels, scale), scale)
        np.testing.assert_array_equal(back, pixels)
    with pytest.raises(ValueError, match="image_scale"):
        conv.preprocess_image(pixels, "zero_one")
    # encoder and decoder produce the promised shapes
    enc = conv.ConvEncoder(4, (4, 4, 4))
    images = jnp.zeros((2, 3, 32, 32, 3))
    out, _ = jax.jit(enc.init_with_output)(jax.random.PRNGKey(0), images)
    chex.assert_shape(out, (2, 3, 64))
    dec = conv.ConvDecoder((32, 32, 3), 4, (5, 5, 8))
    out, _ = jax.jit(dec.init_with_output)(jax.random.PRNGKey(0), jnp.zeros((2, 3, 10)))
    chex.assert_shape(out, (2, 3, 32, 32, 3))
