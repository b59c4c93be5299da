"""Dreamer's objective: reconstruct pixels, predict reward (and continuation), regularise the KL.

Loss maps ``[B, T]`` (all from the posterior features at step t):
- ``image``: unit-variance Gaussian NLL of the scaled frame, summed over pixels
  (``0.5 * SSE + 0.5 * H*W*C * log 2pi``; Dreamer-v1, RePo port).
- ``reward``: NLL of ``batch.reward[:, t]`` (the reward received on arriving at obs_t) under the
  reward head (unit Gaussian, or symlog two-hot).
- ``continue`` (only with a continue head): BCE against ``1 - is_terminal``.
- ``kl``: KL(q_t || p_t) with optional balancing and free nats (``representations.kl``).

Faithfulness: ``free_nats=3, free_nats_mode="batch", kl_balance=None`` is official Dreamer-v1;
``free_nats_mode="step"`` is the RePo repo's Dreamer baseline; ``kl_balance=0.8`` DreamerV2;
``free_nats=1, kl_balance=5/6, loss_scales kl=0.6`` DreamerV3 (per step) or STORM ("batch").
Deviation: the RePo port masks the reward loss on done steps (time limits included); here the
replay's ``is_first``/``is_terminal`` already say where episodes end, so nothing is masked.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from representations import kl as kl_lib
from representations.base import LossMaps, Metrics, ObjectiveBase, check_loss_scales


@dataclasses.dataclass(frozen=True)
class ReconstructionConfig:
    name: str = "reconstruction"
    free_nats: float = 3.0
    free_nats_mode: str = "batch"           # "batch" (Dreamer-v1, STORM) | "step" (RePo port, V3)
    kl_balance: float | None = None         # None: plain KL; alpha: gradient share of the prior
    loss_scales: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"image": 1.0, "reward": 1.0, "kl": 1.0})

    def __post_init__(self) -> None:
        if self.free_nats_mode not in kl_lib.FREE_NATS_MODES:
            raise ValueError(f"free_nats_mode={self.free_nats_mode!r}; valid: "
                             f"{list(kl_lib.FREE_NATS_MODES)}")
        if self.kl_balance is not None and not 0.0 <= self.kl_balance <= 1.0:
            raise ValueError(f"kl_balance={self.kl_balance}; must be in [0, 1] or None")
        if self.free_nats < 0.0:
            raise ValueError(f"free_nats={self.free_nats}; must be >= 0")


def gaussian_image_nll(mean: jax.Array, target: jax.Array) -> jax.Array:
    """Unit-variance Gaussian NLL summed over the last three axes (H, W, C)."""
    num = math.prod(target.shape[-3:])
    sse = jnp.sum(jnp.square(mean - jax.lax.stop_gradient(target)), axis=(-3, -2, -1))
    return 0.5 * sse + 0.5 * num * math.log(2.0 * math.pi)


class ReconstructionObjective(ObjectiveBase):
    name = "reconstruction"
    Config = ReconstructionConfig

    def __init__(self, cfg: ReconstructionConfig, world_model: Any):
        if world_model.decoder is None:
            raise ValueError("the reconstruction objective needs a decoder "
                             "(WorldModelConfig.decoder=True)")
        self.cfg = cfg
        self.wm = world_model
        self.loss_keys = ("image", "reward", "kl") + (
            ("continue",) if world_model.continue_head is not None else ())
        check_loss_scales(self.loss_keys, cfg.loss_scales)

    def loss(self, params: Any, state: Any, batch: Any, wm_outputs: Any,
             key: jax.Array) -> tuple[LossMaps, Metrics]:
        del params, state, key
        wm, out = self.wm, wm_outputs
        target = wm.preprocess(batch.obs)
        losses = {
            "image": gaussian_image_nll(wm.decode(out.params, out.feats), target),
            "reward": wm.reward_loss(out.params, out.feats, batch.reward.astype(jnp.float32)),
        }
        if wm.continue_head is not None:
            losses["continue"] = wm.continue_loss(
                out.params, out.feats, 1.0 - batch.is_terminal.astype(jnp.float32))
        kl = kl_lib.balanced_kl(wm.kl, out.posts, out.priors, self.cfg.kl_balance)
        losses["kl"] = kl_lib.free_nats(kl, self.cfg.free_nats, self.cfg.free_nats_mode)
        metrics = {"kl": jnp.mean(kl),
                   "post_entropy": jnp.mean(wm.rssm.entropy(out.posts)),
                   "prior_entropy": jnp.mean(wm.rssm.entropy(out.priors))}
        return losses, metrics
