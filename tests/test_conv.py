"""The decoder's sub-pixel transposed convolution is the flax layer's function, exactly."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from world_models.conv import SubpixelConvTranspose


@pytest.mark.parametrize("kernel", [4, 5, 6, 8])
@pytest.mark.parametrize("size", [(1, 1), (2, 5), (13, 6)])
def test_matches_flax_conv_transpose_and_its_gradients(kernel, size):
    x = jax.random.normal(jax.random.PRNGKey(kernel), (2, *size, 3))
    reference = nn.ConvTranspose(4, (kernel, kernel), strides=(2, 2), padding="VALID")
    params = reference.init(jax.random.PRNGKey(1), x)
    # a non-zero bias too, so the bias path is compared
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(2), a.shape),
                          params)
    ours = SubpixelConvTranspose(4, kernel)
    chex.assert_trees_all_equal_shapes(ours.init(jax.random.PRNGKey(1), x), params)
    want, got = reference.apply(params, x), ours.apply(params, x)
    chex.assert_shape(got, (2, (size[0] - 1) * 2 + kernel, (size[1] - 1) * 2 + kernel, 4))
    chex.assert_trees_all_close(got, want, atol=1e-5)
    loss = lambda module: lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))
    chex.assert_trees_all_close(jax.grad(loss(ours), argnums=(0, 1))(params, x),
                                jax.grad(loss(reference), argnums=(0, 1))(params, x), atol=1e-4)


def test_kernel_smaller_than_stride_is_refused():
    with pytest.raises(ValueError, match="kernel_size >= strides"):
        SubpixelConvTranspose(2, 1).init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 1)))
