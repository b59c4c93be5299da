"""Tests for representations/contrastive.py (bilinear InfoNCE) and representations/taco.py."""
from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from representations import contrastive, taco


def test_info_nce_hand_computed_3x3():
    anchors = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    keys = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    w = jnp.eye(2)
    logits = contrastive.bilinear_logits(anchors, keys, w)
    # raw logits [[1, 0, 1], [0, 1, -1], [1, 1, 0]], each row minus its max (1)
    np.testing.assert_allclose(logits, [[0, -1, 0], [-1, 0, -2], [0, 0, -1]])
    loss = contrastive.info_nce(logits)
    e = math.exp
    expected = [math.log(1 + e(-1) + 1), math.log(e(-1) + 1 + e(-2)), 1 + math.log(1 + 1 + e(-1))]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    chex.assert_shape(loss, (3,))
    # argmax per row: 0 (tie 0/2 broken to the first), 1, 0 -> rows 0 and 1 are right
    assert float(contrastive.contrastive_accuracy(logits)) == pytest.approx(2 / 3)


def test_bilinear_uses_w_and_rejects_bad_shapes():
    anchors = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    swap = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    # W swaps the coordinates: each anchor now matches the other key
    logits = contrastive.bilinear_logits(anchors, anchors, swap)
    np.testing.assert_allclose(logits, [[-1, 0], [0, -1]])
    with pytest.raises(ValueError, match=r"W \[D, D\]"):
        contrastive.bilinear_logits(anchors, anchors, jnp.eye(3))


def test_latent_action_dim_and_encoders():
    assert [taco.latent_action_dim(a) for a in (1, 2, 6, 38)] == [2, 3, 8, 48]
    with pytest.raises(ValueError, match="action_dim must be a positive int, got 0"):
        taco.latent_action_dim(0)
    phi = taco.ActionEncoder(latent_dim=8)
    actions = jnp.ones((5, 3, 6))
    params = phi.init(jax.random.key(0), actions)
    latent = phi.apply(params, actions)
    chex.assert_shape(latent, (5, 3, 8))
    chex.assert_type(latent, jnp.float32)
    psi = taco.ActionSequenceEncoder()
    seq = psi.apply(psi.init(jax.random.key(1), latent), latent)
    chex.assert_shape(seq, (5, 24))
    assert float(jnp.max(jnp.abs(seq))) <= 1.0
    with pytest.raises(ValueError, match=r"\[B, K, d_u\]"):
        psi.apply(psi.init(jax.random.key(1), latent), latent[0])


def _heads_inputs(batch=6, repr_dim=12, horizon=3, latent_dim=4, seed=0):
    ks = jax.random.split(jax.random.key(seed), 5)
    return (jax.random.normal(ks[0], (batch, repr_dim)), jax.random.normal(ks[1], (batch, repr_dim)),
            jax.random.normal(ks[2], (batch, repr_dim)),
            jax.random.normal(ks[3], (batch, horizon, latent_dim)), jax.random.normal(ks[4], (batch,)))


def test_heads_loss_keys_shapes_and_w_init():
    heads = taco.TacoHeads(feature_dim=5, hidden_dim=16)
    inputs = _heads_inputs()
    params = heads.init(jax.random.key(0), *inputs)
    w = params["params"]["W"]
    chex.assert_shape(w, (5, 5))
    assert float(w.min()) >= 0.0 and float(w.max()) < 1.0      # U[0, 1), as the official code
    losses, metrics = heads.apply(params, *inputs)
    assert tuple(sorted(losses)) == tuple(sorted(taco.LOSS_KEYS))
    chex.assert_shape(list(losses.values()), (6,))
    chex.assert_type(list(losses.values()), jnp.float32)
    assert set(metrics) == {"taco_accuracy", "curl_accuracy"}
    assert all(bool(jnp.all(v >= 0)) for v in losses.values())


def test_heads_gradients_reach_anchor_and_actions_but_not_keys():
    heads = taco.TacoHeads(feature_dim=5, hidden_dim=16)
    features, future, curl, latent_actions, reward = _heads_inputs()
    params = heads.init(jax.random.key(0), features, future, curl, latent_actions, reward)

    def total(features, future, curl, latent_actions):
        losses, _ = heads.apply(params, features, future, curl, latent_actions, reward)
        return sum(jnp.mean(v) for v in losses.values())

    g_features, g_future, g_curl, g_actions = jax.grad(total, argnums=(0, 1, 2, 3))(
        features, future, curl, latent_actions)
    assert float(jnp.abs(g_features).sum()) > 0 and float(jnp.abs(g_actions).sum()) > 0
    np.testing.assert_array_equal(g_future, 0.0)
    np.testing.assert_array_equal(g_curl, 0.0)


def test_taco_loss_falls_when_the_future_is_predictable():
    """A few Adam steps on the heads alone make z_{t+K} identifiable from (z_t, u_seq)."""
    import optax
    heads = taco.TacoHeads(feature_dim=8, hidden_dim=32)
    key = jax.random.key(3)
    features = jax.random.normal(key, (16, 10))
    future = jnp.roll(features, 1, axis=1) * 2.0          # a fixed function of the anchor
    latent_actions = jnp.zeros((16, 2, 3))
    params = heads.init(key, features, future, features, latent_actions, jnp.zeros(16))
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)

    def loss(p):
        losses, _ = heads.apply(p, features, future, features, latent_actions, jnp.zeros(16))
        return jnp.mean(losses["taco"])

    first = float(loss(params))
    for _ in range(100):
        grads = jax.grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.5 * first
