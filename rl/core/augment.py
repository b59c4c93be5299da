"""Image augmentations on batches ``[B, H, W, C]``, one independent draw per sample.

``random_shift`` is DrQ-v2's ``RandomShiftsAug``: replicate-pad by ``pad`` and crop back at a
random offset. The official code samples the offset through ``grid_sample`` with a normalised
grid, but its offsets are whole pixels, so it equals an integer crop of the padded image; here
that crop is done directly (pad + ``dynamic_slice`` per sample), which also keeps uint8 input
uint8. ``intensity`` is SPR's intensity augmentation.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_images(images: jax.Array, name: str) -> None:
    if images.ndim != 4:
        raise ValueError(f"{name} expects images [B, H, W, C], got shape {images.shape}")


def random_shift(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
    """Shift each image by a random whole number of pixels in ``[-pad, pad]`` along H and W.

    Borders are filled by replicating the edge pixels. Output has the input's shape and dtype.
    """
    _check_images(images, "random_shift")
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"random_shift pad must be a non-negative int, got {pad!r}")
    if pad == 0:
        return images
    batch, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    # Offsets into the padded image in [0, 2 * pad], as torch.randint(0, 2 * pad + 1).
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * pad + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    return jax.vmap(crop)(padded, offsets)


def intensity(key: jax.Array, images: jax.Array, scale: float = 0.05) -> jax.Array:
    """Multiply each image by ``1 + scale * clip(N(0, 1), -2, 2)`` (one draw per sample).

    Needs floating-point images (scale them first); uint8 would wrap around.
    """
    _check_images(images, "intensity")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"intensity needs floating-point images, got dtype {images.dtype}; "
                         "convert them (e.g. images / 255.0) first")
    noise = jnp.clip(jax.random.normal(key, (images.shape[0], 1, 1, 1), images.dtype), -2.0, 2.0)
    return images * (1.0 + scale * noise)
