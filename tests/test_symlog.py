import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.core import symlog


def test_symlog_symexp_values_and_inverse():
    x = jnp.array([-100.0, -np.e + 1, 0.0, np.e - 1, 3.5])
    np.testing.assert_allclose(symlog.symlog(x)[1:4], [-1.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(symlog.symexp(symlog.symlog(x)), x, rtol=1e-5)


def test_twohot_hand_cases():
    bins = jnp.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(symlog.twohot(jnp.array(0.25), bins), [0.75, 0.25, 0.0])
    np.testing.assert_allclose(symlog.twohot(jnp.array(1.0), bins), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(symlog.twohot(jnp.array(2.0), bins), [0.0, 0.0, 1.0])
    # out of range: clipped to the end bins
    np.testing.assert_allclose(symlog.twohot(jnp.array(-3.0), bins), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(symlog.twohot(jnp.array(7.0), bins), [0.0, 0.0, 1.0])


def test_twohot_round_trip_over_symlog_bins():
    bins = symlog.bins(255, -20.0, 20.0)
    values = jnp.array([-1234.5, -3.0, -0.01, 0.0, 0.37, 12.0, 9.9e4])
    encoded = symlog.twohot(symlog.symlog(values), bins)
    assert encoded.shape == (7, 255)
    np.testing.assert_allclose(encoded.sum(-1), 1.0, rtol=1e-6)
    logits = jnp.log(encoded + 1e-30)
    decoded = symlog.twohot_symlog_mean(logits, bins)
    np.testing.assert_allclose(decoded, values, rtol=1e-4, atol=1e-5)


def test_twohot_loss_is_cross_entropy():
    bins = jnp.array([0.0, 1.0, 2.0])
    logits = jnp.array([0.3, -1.0, 2.0])
    target = symlog.symexp(jnp.array(0.25))       # symlog(target) = 0.25
    expected = -(0.75 * jax.nn.log_softmax(logits)[0] + 0.25 * jax.nn.log_softmax(logits)[1])
    np.testing.assert_allclose(symlog.twohot_symlog_loss(logits, target, bins), expected, rtol=1e-5)
    # the target carries no gradient
    grad = jax.grad(lambda t: symlog.twohot_symlog_loss(logits, t, bins))(target)
    assert grad == 0.0


def test_bins_validation():
    with pytest.raises(ValueError, match="num_bins"):
        symlog.bins(1)
    with pytest.raises(ValueError, match="low < high"):
        symlog.bins(5, 1.0, -1.0)
