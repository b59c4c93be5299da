"""Augmentations: random shift is DrQ-v2's RandomShiftsAug (an integer crop of the edge-padded
image), intensity is SPR's per-sample brightness scaling."""
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.core.augment import intensity, random_shift


def _grid_sample_official(padded: np.ndarray, shift_x: int, shift_y: int, size: int) -> np.ndarray:
    """numpy re-statement of the official RandomShiftsAug sampling for one image [Hp, Wp, C]:
    normalised base grid + shift * 2 / Hp, then bilinear grid_sample (align_corners=False)."""
    hp = padded.shape[0]
    eps = 1.0 / hp
    arange = np.linspace(-1.0 + eps, 1.0 - eps, hp, dtype=np.float32)[:size]
    gx = arange[None, :] + np.float32(shift_x * 2.0 / hp)   # x indexes width
    gy = arange[:, None] + np.float32(shift_y * 2.0 / hp)   # y indexes height
    ix = ((gx + 1) * hp - 1) / 2                            # unnormalise, align_corners=False
    iy = ((gy + 1) * hp - 1) / 2
    ix, iy = np.broadcast_to(ix, (size, size)), np.broadcast_to(iy, (size, size))
    x0, y0 = np.floor(ix).astype(int), np.floor(iy).astype(int)
    wx, wy = ix - x0, iy - y0
    out = np.zeros((size, size, padded.shape[2]), np.float64)
    for dy, dx in itertools.product((0, 1), (0, 1)):
        yy, xx = y0 + dy, x0 + dx
        w = (wy if dy else 1 - wy) * (wx if dx else 1 - wx)
        inside = (yy >= 0) & (yy < hp) & (xx >= 0) & (xx < hp)
        vals = padded[np.clip(yy, 0, hp - 1), np.clip(xx, 0, hp - 1)]
        out += np.where(inside[..., None], w[..., None] * vals, 0.0)
    return out


def test_edge_padding_by_hand():
    image = np.array([[1, 2], [3, 4]], np.uint8)[None, :, :, None]
    # Every crop of the 1-padded image [[1,1,2,2],[1,1,2,2],[3,3,4,4],[3,3,4,4]].
    padded = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], np.uint8)
    crops = {padded[y:y + 2, x:x + 2].tobytes(): (y, x) for y in range(3) for x in range(3)}
    seen = set()
    for seed in range(40):
        out = np.asarray(random_shift(jax.random.PRNGKey(seed), jnp.asarray(image), pad=1))
        assert out.shape == (1, 2, 2, 1) and out.dtype == np.uint8
        assert out[0, :, :, 0].tobytes() in crops
        seen.add(crops[out[0, :, :, 0].tobytes()])
    assert len(seen) >= 7   # offsets in [0, 2] x [0, 2] are all reachable (9 of them)


def test_random_shift_equals_official_grid_sample():
    size, pad, batch = 6, 2, 64
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    out = np.asarray(random_shift(jax.random.PRNGKey(1), jnp.asarray(images), pad=pad))
    chex.assert_shape(out, images.shape)
    assert out.dtype == np.uint8
    offsets_seen = set()
    for b in range(batch):
        padded = np.pad(images[b], ((pad, pad), (pad, pad), (0, 0)), mode="edge").astype(np.float64)
        matches = [(sy, sx) for sy in range(2 * pad + 1) for sx in range(2 * pad + 1)
                   if np.allclose(_grid_sample_official(padded, sx, sy, size), out[b], atol=1e-3)]
        assert len(matches) >= 1, f"sample {b} is not an official shift"
        offsets_seen.update(matches)
    assert len(offsets_seen) >= 20   # 25 possible offsets, each sample drawn independently


def test_random_shift_float_and_nonsquare_and_pad0():
    images = jnp.arange(2 * 3 * 5 * 2, dtype=jnp.float32).reshape(2, 3, 5, 2)
    out = random_shift(jax.random.PRNGKey(0), images, pad=1)
    chex.assert_shape(out, images.shape)
    chex.assert_type(out, jnp.float32)
    assert random_shift(jax.random.PRNGKey(0), images, pad=0) is images
    with pytest.raises(ValueError, match="pad"):
        random_shift(jax.random.PRNGKey(0), images, pad=-1)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        random_shift(jax.random.PRNGKey(0), images[0], pad=1)


def test_intensity_per_sample_factor():
    images = jnp.ones((200, 4, 4, 3), jnp.float32) * 2.0
    out = np.asarray(jax.jit(intensity)(jax.random.PRNGKey(0), images, 0.05))
    factors = out[:, 0, 0, 0] / 2.0
    np.testing.assert_allclose(out, np.broadcast_to(factors[:, None, None, None] * 2.0, out.shape),
                               rtol=1e-6)
    assert factors.min() >= 1 - 0.1 - 1e-6 and factors.max() <= 1 + 0.1 + 1e-6
    assert factors.std() > 0.02          # N(0,1) clipped to +-2, times 0.05: std ~0.047
    # With scale 1 the noise clip at +-2 is reached on both sides among 1000 draws.
    wide = np.asarray(intensity(jax.random.PRNGKey(1), jnp.ones((1000, 1, 1, 1)), 1.0))
    np.testing.assert_allclose([wide.min(), wide.max()], [-1.0, 3.0], atol=1e-6)
    with pytest.raises(ValueError, match="floating-point"):
        intensity(jax.random.PRNGKey(0), jnp.ones((1, 2, 2, 1), jnp.uint8))
