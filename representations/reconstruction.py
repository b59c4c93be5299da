"""Dreamer's objective: reconstruct pixels from the world model's features.

Loss map ``[B, T]``: ``image``, the unit-variance Gaussian NLL of the scaled frame under the
decoder of the posterior features at step t, summed over pixels (``0.5 * SSE + 0.5 * H*W*C *
log 2pi``; Dreamer-v1, RePo port). The reward, continue and KL terms of Dreamer are the world
model's own losses (``world_models.world_model``), weighted by ``world_model.loss_scales``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from rl.core import checks
from rl.core.objective import (LossMaps, Metrics, ObjectiveBase, ObjectiveInputs,
                                  check_loss_scales, register)


@dataclasses.dataclass(frozen=True)
class ReconstructionConfig:
    name: str = "reconstruction"
    loss_scales: dict[str, float] = dataclasses.field(default_factory=lambda: {"image": 1.0})

    def __post_init__(self) -> None:
        checks.weights("ReconstructionConfig", "loss_scales", self.loss_scales)


def gaussian_image_nll(mean: jax.Array, target: jax.Array) -> jax.Array:
    """Unit-variance Gaussian NLL summed over the last three axes (H, W, C)."""
    num = math.prod(target.shape[-3:])
    sse = jnp.sum(jnp.square(mean - jax.lax.stop_gradient(target)), axis=(-3, -2, -1))
    return 0.5 * sse + 0.5 * num * math.log(2.0 * math.pi)


def image_nll(world_model: Any, params: Any, feats: jax.Array, obs: jax.Array) -> jax.Array:
    """``gaussian_image_nll`` of the decoded ``feats`` against ``obs`` in the model's scale."""
    return gaussian_image_nll(world_model.decode(params, feats), world_model.preprocess(obs))


class ReconstructionObjective(ObjectiveBase):
    name = "reconstruction"
    loss_keys = ("image",)
    Config = ReconstructionConfig

    def __init__(self, cfg: ReconstructionConfig, world_model: Any):
        if not getattr(world_model, "has_decoder", False):
            raise ValueError("the reconstruction objective needs a world model with a decoder "
                             "(WorldModelConfig.decoder=True)")
        check_loss_scales(self.loss_keys, cfg.loss_scales)
        self.cfg = cfg
        self.wm = world_model

    def loss(self, params: Any, state: Any, inputs: ObjectiveInputs,
             key: jax.Array) -> tuple[LossMaps, Metrics]:
        del params, state, key
        out = inputs.model_out
        return {"image": image_nll(self.wm, out.params, inputs.features, inputs.batch.obs)}, {}


register("reconstruction", ReconstructionObjective)
