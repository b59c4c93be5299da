"""Representation objectives on DrQ-v2 (``objective=taco agent=drqv2``), built as ``DrQV2Hooks``.

The losses live in ``representations/``; this file only wires them to DrQ-v2's batch, encoder
and hooks.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from representations import weigh
from representations.taco import ActionEncoder, TacoConfig, TacoHeads, latent_action_dim
from rl.agents.drqv2_hooks import AuxLoss, DrQV2Hooks
from rl.agents.drqv2_networks import DrQV2Params
from rl.core.augment import random_shift
from rl.replay import TransitionWindows

OBJECTIVES = ("taco",)


def objective_hooks(objective: Any, action_dim: int, encoder: Any, shift_pad: int) -> DrQV2Hooks:
    """The hooks for ``DrQV2Config.objective`` (``None``: plain DrQ-v2)."""
    if objective is None:
        return DrQV2Hooks()
    name = getattr(objective, "name", None)
    if name == "taco":
        return taco_hooks(objective, action_dim, encoder, shift_pad)
    raise ValueError(f"objective {name!r} is not available for agent=drqv2; valid: "
                     f"{list(OBJECTIVES)} or none")


def taco_hooks(cfg: TacoConfig, action_dim: int, encoder: Any, shift_pad: int) -> DrQV2Hooks:
    """TACO on DrQ-v2 (official ``TACOAgent``): the critic on ``phi(a)``, windows of ``K`` steps,
    and the TACO + CURL + reward loss as a separate Adam step over the encoder, ``phi`` and the
    heads after the critic, actor and target updates."""
    latent_dim = cfg.latent_action_dim or latent_action_dim(action_dim)
    phi = ActionEncoder(latent_dim, cfg.action_hidden_dim)
    heads = TacoHeads(cfg.feature_dim, cfg.hidden_dim)

    def init(key: jax.Array, features: jax.Array) -> Any:
        latent = jnp.zeros((1, cfg.horizon, latent_dim), jnp.float32)
        return heads.init(key, features, features, features, latent, jnp.zeros((1,)))

    def loss(params: DrQV2Params, heads_params: Any, batch: TransitionWindows,
             features: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        del features   # official update_taco draws its own anchor view of o_t
        k_anchor, k_curl, k_future = jax.random.split(key, 3)
        tr = batch.transition
        # Independent random shifts for the anchor and CURL views of o_t and for o_{t+K}.
        features = encoder.apply(params.encoder, random_shift(k_anchor, tr.obs, shift_pad))
        curl_features = encoder.apply(params.encoder, random_shift(k_curl, tr.obs, shift_pad))
        future_features = encoder.apply(params.encoder,
                                        random_shift(k_future, batch.future_obs[:, -1], shift_pad))
        latent_actions = phi.apply(params.action_encoder, batch.actions.astype(jnp.float32))
        losses, metrics = heads.apply(heads_params, features, future_features, curl_features,
                                      latent_actions, tr.reward)
        total, means = weigh(losses, cfg.loss_scales)
        return total, {**metrics, **means}

    return DrQV2Hooks(aux_losses=(AuxLoss("taco", init, loss, lr=cfg.lr, separate_step=True),),
                      action_encoder=phi, window_horizon=cfg.horizon)
