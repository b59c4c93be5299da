"""The decoder's sub-pixel transposed convolution and the patches convolution are the flax
layers' functions, gradients included."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from rl.agents.rainbow import RainbowConfig
from world_models.conv import SubpixelConvTranspose
from rl.core.patch_conv import PatchConv, conv_module


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


@pytest.mark.parametrize("kernel,stride,padding,size", [
    (8, 4, "VALID", (20, 24)), (4, 2, "VALID", (9, 9)), (3, 1, "VALID", (7, 7)),
    (3, 1, "SAME", (7, 7)), (3, 2, "SAME", (8, 7)), (4, 3, "SAME", (10, 11))])
def test_patch_conv_matches_flax_conv_and_its_gradients(kernel, stride, padding, size):
    x = jax.random.normal(jax.random.PRNGKey(kernel + stride), (2, *size, 3))
    reference = nn.Conv(5, (kernel, kernel), strides=(stride, stride), padding=padding)
    params = reference.init(jax.random.PRNGKey(1), x)
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(2), a.shape),
                          params)
    ours = PatchConv(5, (kernel, kernel), strides=(stride, stride), padding=padding)
    chex.assert_trees_all_equal_shapes(ours.init(jax.random.PRNGKey(1), x), params)
    want, got = reference.apply(params, x), ours.apply(params, x)
    chex.assert_equal_shape([got, want])
    chex.assert_type(got, jnp.float32)
    chex.assert_trees_all_close(got, want, atol=1e-5)
    loss = lambda module: lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))
    chex.assert_trees_all_close(jax.grad(loss(ours), argnums=(0, 1))(params, x),
                                jax.grad(loss(reference), argnums=(0, 1))(params, x), atol=1e-4)


def test_patch_conv_vmapped_over_weights_matches_per_copy_calls():
    """The use it exists for: per-seed weights under vmap."""
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 9, 9, 4))
    conv = PatchConv(6, (4, 4), strides=(2, 2), padding="VALID")
    params = jax.vmap(conv.init)(jax.random.split(jax.random.PRNGKey(1), 3), x)
    got = jax.vmap(conv.apply)(params, x)
    for s in range(3):
        one = jax.tree.map(lambda a: a[s], params)
        chex.assert_trees_all_close(got[s], conv.apply(one, x[s]), atol=1e-5)


def test_patch_conv_bad_inputs_are_named():
    with pytest.raises(ValueError, match="conv='cudnn'"):
        conv_module("cudnn")
    with pytest.raises(ValueError, match="padding='FULL'"):
        PatchConv(2, (3, 3), padding="FULL").init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 5, 1)))
    with pytest.raises(ValueError, match="does not fit a 2x2 input"):
        PatchConv(2, (3, 3), padding="VALID").init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 1)))
    with pytest.raises(ValueError, match="RainbowConfig.conv='fast'"):
        RainbowConfig(conv="fast")



def test_patch_conv_follows_the_compute_dtype_like_flax_conv():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
    reference = nn.Conv(4, (3, 3), strides=(2, 2), padding="VALID", dtype=jnp.bfloat16)
    params = reference.init(jax.random.PRNGKey(1), x)
    ours = PatchConv(4, (3, 3), strides=(2, 2), padding="VALID", dtype=jnp.bfloat16)
    chex.assert_trees_all_equal_dtypes(ours.init(jax.random.PRNGKey(1), x), params)  # f32
    want, got = reference.apply(params, x), ours.apply(params, x)
    chex.assert_type(got, jnp.bfloat16)
    chex.assert_trees_all_close(got.astype(jnp.float32), want.astype(jnp.float32), atol=0.05)


@pytest.mark.parametrize("encoder", ["drqv2", "world_model"])
def test_encoders_give_the_same_embeddings_with_either_conv(encoder):
    from rl.core.nets import ConvEncoder as DrQV2Encoder
    from world_models.conv import ConvEncoder as WorldModelEncoder

    if encoder == "drqv2":
        images = jax.random.randint(jax.random.PRNGKey(0), (2, 21, 21, 3), 0, 255).astype(
            jnp.uint8)
        make = lambda conv: DrQV2Encoder(channels=4, num_layers=2, conv=conv)
    else:
        images = jax.random.uniform(jax.random.PRNGKey(0), (2, 3, 32, 32, 3)) - 0.5
        make = lambda conv: WorldModelEncoder(depth=4, kernels=(4, 4, 4), conv=conv)
    params = make("xla").init(jax.random.PRNGKey(1), images)
    chex.assert_trees_all_equal_shapes(make("patches").init(jax.random.PRNGKey(1), images),
                                       params)
    chex.assert_trees_all_close(make("patches").apply(params, images),
                                make("xla").apply(params, images), atol=1e-5)


def test_encoder_conv_choices_are_checked_by_name():
    from rl.agents.drqv2.config import DrQV2Config
    from world_models.config import WorldModelConfig

    with pytest.raises(ValueError, match=r"encoder_conv='cudnn'; valid: \['xla', 'patches'\]"):
        DrQV2Config(encoder_conv="cudnn")
    with pytest.raises(ValueError, match=r"encoder_conv='cudnn'; valid: \['xla', 'patches'\]"):
        WorldModelConfig(encoder_conv="cudnn")
