"""Representation objectives on Rainbow (``objective=<name> agent=rainbow``), built as
``RainbowHooks``.

``spr`` (Schwarzer et al. 2021): from the online latent of the augmented ``o_t``, the conv
transition model (``world_models/transition.py``) rolls K steps under ``a_t .. a_{t+K-1}``; each
step is projected with the Q head's first layer (``nets.project``, no noise) and passed through
the linear predictor; the target is the projection of the target network's latent of the
augmented ``o_{t+k}``, with cosine loss masked after the episode ends (``future_valid``). With
``target_ema = 0`` (SPR with augmentation, official ``--momentum-tau 1.``) the target network is
the online one under stop-gradient, which is what the official code's in-forward copy computes.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from representations.spr import SPR, SPRConfig, target_projections
from rl.agents.rainbow_hooks import AuxInputs, AuxLoss, RainbowHooks
from rl.agents.rainbow_networks import RainbowNetworks

OBJECTIVES: tuple[str, ...] = ("spr",)


def spr_hooks(cfg: SPRConfig, nets: RainbowNetworks) -> RainbowHooks:
    if cfg.target_ema != 0.0:
        raise ValueError(f"objective=spr with agent=rainbow supports target_ema=0 (the online "
                         f"network under stop-gradient, SPR's augmented setting), got "
                         f"{cfg.target_ema!r}")
    spr = SPR(cfg, nets.num_actions, nets.cfg.conv)
    streams = 2 if nets.cfg.dueling else 1

    def init(key: jax.Array, latent: jax.Array) -> Any:
        return spr.init(key, latent, nets.cfg.hidden_dim * streams)

    def loss(params: Any, aux_params: Any, inputs: AuxInputs, key: jax.Array):
        batch = inputs.batch
        b, k = batch.actions.shape[:2]
        future = batch.future_obs.reshape((b * k,) + batch.future_obs.shape[2:])
        images = nets.prepare(future, key).reshape((b, k) + future.shape[1:])
        online = jax.lax.stop_gradient(params)
        target = target_projections(lambda x: nets.encode(online, x),
                                    lambda z: nets.project(online, z), images)
        actions = batch.actions.reshape(b, k).astype(jnp.int32)
        return spr.loss(aux_params, inputs.latent, actions, batch.future_valid,
                        lambda z: nets.project(params, z), target)

    return RainbowHooks(aux_losses=(AuxLoss("spr", init, loss, weight=float(
        cfg.loss_scales["spr"])),), window_horizon=cfg.horizon)


def objective_hooks(objective: Any, nets: RainbowNetworks) -> RainbowHooks:
    """The hooks for ``RainbowConfig.objective`` (``None``: plain Rainbow)."""
    if objective is None:
        return RainbowHooks()
    name = getattr(objective, "name", None)
    if name == "spr":
        return spr_hooks(objective, nets)
    raise ValueError(f"objective {name!r} is not available for agent=rainbow; valid: "
                     f"{list(OBJECTIVES)} or none")
