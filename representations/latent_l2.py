"""latent_l2: the squared norm of the agent's features, a toy regulariser.

The worked example of docs/ARCHITECTURE.md: an objective is this one file (it registers itself),
one config file (``conf/objective/latent_l2.yaml``) and one test file
(``tests/test_latent_l2.py``). It needs nothing but the features every host hands over, so it
runs on every agent (``hosts``).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from rl.core import checks
from rl.core.objective import LossMaps, Metrics, ObjectiveBase, ObjectiveInputs, register


@dataclasses.dataclass(frozen=True)
class LatentL2Config:
    name: str = "latent_l2"
    loss_scales: dict[str, float] = dataclasses.field(default_factory=lambda: {"latent_l2": 1.0})

    def __post_init__(self) -> None:
        checks.weights("LatentL2Config", "loss_scales", self.loss_scales)


class LatentL2Objective(ObjectiveBase):
    Config = LatentL2Config
    name = "latent_l2"
    loss_keys = ("latent_l2",)      # no params, no state, no needs, replaces nothing: defaults
    hosts = ("drqv2", "rainbow", "imagination")

    def __init__(self, cfg: LatentL2Config, host: Any = None) -> None:
        del host                    # needs nothing beyond the features every host hands over
        self.cfg, self.loss_scales = cfg, dict(cfg.loss_scales)

    def loss(self, params: Any, state: Any, inputs: ObjectiveInputs,
             key: jax.Array) -> tuple[LossMaps, Metrics]:
        del params, state, key
        features = inputs.features.astype(jnp.float32)
        if features.ndim > 3:     # spatial latents [B, h, w, c] (Rainbow): one vector a sample
            features = features.reshape(features.shape[0], -1)
        sq = jnp.sum(jnp.square(features), axis=-1)                  # [B] or [B, T]
        return {"latent_l2": sq}, {"norm": jnp.mean(jnp.sqrt(sq))}


register("latent_l2", LatentL2Objective)
