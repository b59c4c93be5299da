"""TACO (Zheng et al., NeurIPS 2023): temporal action-driven contrastive learning.

Maximise I(z_{t+K}; [z_t, u_t .. u_{t+K-1}]) with a bilinear InfoNCE over the batch, where
``u = phi(a)`` are learned latent actions. Official code (FrankZheng2022/TACO, ``TACOAgent``):

- anchor ``z_t = p(f(aug(o_t)))`` with gradient; keys ``z_{t+K} = p(f(aug(o_{t+K})))`` and the
  CURL positive ``z'_t = p(f(aug'(o_t)))`` without gradient (same online encoder: no momentum
  encoder). ``p`` = Linear + LayerNorm + Tanh to ``feature_dim`` (50).
- ``u_seq = psi([u_t .. u_{t+K-1}])`` (Linear(K d_u -> K d_u) + LayerNorm + Tanh);
  ``G([z_t, u_seq])`` = MLP(1024) -> 50.
- ``L_TACO = CE(G([z_t, u_seq])^T W z_{t+K}, diag)``; ``L_CURL = CE(z_t^T W z'_t, diag)`` with
  the same ``W`` (50x50, init U[0, 1), no temperature); ``L_R = (R([z_t, u_seq]) - R^(n)_t)^2``
  with ``R^(n)`` the critic's n-step return. Unit weights.
- ``phi``: Linear(|A| -> 64) - Tanh - Linear(64 -> d_u), ``d_u = int(1.25 |A|) + 1``; the critic
  consumes ``phi(a)`` too.

The loss works on any features (DrQ-v2's conv features, a world model's latents): ``TacoHeads``
gets the features and returns unreduced ``[B]`` maps keyed by ``LOSS_KEYS``. Two objectives use
it: ``TacoDrQV2Objective`` (DrQ-v2, the official agent) and ``TacoObjective`` (world models).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.core import checks
from rl.core.objective import (Needs, ObjectiveBase, ObjectiveInputs, check_loss_scales,
                                  register)
from representations.contrastive import bilinear_logits, contrastive_accuracy, info_nce
from rl.core.nets import MLP, TORCH_LAYERNORM_EPS, Trunk, dense

LOSS_KEYS = ("taco", "curl", "reward")


def latent_action_dim(action_dim: int) -> int:
    """TACO's latent action size when ``latent_a_dim: none``: ``int(1.25 * |A|) + 1``."""
    if not isinstance(action_dim, int) or action_dim < 1:
        raise ValueError(f"action_dim must be a positive int, got {action_dim!r}")
    return int(1.25 * action_dim) + 1


class ActionEncoder(nn.Module):
    """``phi``: each action ``[..., |A|]`` to a latent action ``[..., d_u]``."""

    latent_dim: int
    hidden_dim: int = 64

    @nn.compact
    def __call__(self, action: jax.Array) -> jax.Array:
        return dense(self.latent_dim, name="out")(jnp.tanh(dense(self.hidden_dim, name="hidden")(action)))


class ActionSequenceEncoder(nn.Module):
    """``psi``: K latent actions ``[B, K, d_u]`` -> ``[B, K d_u]`` (Linear + LayerNorm + Tanh)."""

    @nn.compact
    def __call__(self, latent_actions: jax.Array) -> jax.Array:
        if latent_actions.ndim != 3:
            raise ValueError(f"expected latent actions [B, K, d_u], got {latent_actions.shape}")
        flat = latent_actions.reshape(latent_actions.shape[0], -1)
        h = dense(flat.shape[-1], name="dense")(flat)
        return jnp.tanh(nn.LayerNorm(epsilon=TORCH_LAYERNORM_EPS, name="norm")(h))


class TacoHeads(nn.Module):
    """TACO's heads on encoder features: state projection, ``psi``, ``G``, reward head and ``W``.

    ``__call__(features, future_features, curl_features, latent_actions, reward_target)`` returns
    ``(losses, metrics)``: ``losses`` maps ``LOSS_KEYS`` to ``[B]``. Gradients flow into
    ``features`` and ``latent_actions`` (and so into the encoder and ``phi``); the key features
    are stopped.
    """

    feature_dim: int = 50
    hidden_dim: int = 1024

    @nn.compact
    def __call__(self, features: jax.Array, future_features: jax.Array, curl_features: jax.Array,
                 latent_actions: jax.Array, reward_target: jax.Array
                 ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
        project = Trunk(self.feature_dim, name="state_proj")
        z = project(features)
        z_future = jax.lax.stop_gradient(project(jax.lax.stop_gradient(future_features)))
        z_curl = jax.lax.stop_gradient(project(jax.lax.stop_gradient(curl_features)))
        u_seq = ActionSequenceEncoder(name="seq_encoder")(latent_actions)
        z_u = jnp.concatenate([z, u_seq], axis=-1)
        predicted = MLP((self.hidden_dim,), self.feature_dim, name="proj_sa")(z_u)
        reward = MLP((self.hidden_dim,), 1, name="reward")(z_u)[:, 0]
        w = self.param("W", nn.initializers.uniform(1.0), (self.feature_dim, self.feature_dim))
        taco_logits = bilinear_logits(predicted, z_future, w)
        curl_logits = bilinear_logits(z, z_curl, w)
        reward_target = jax.lax.stop_gradient(reward_target.reshape(reward.shape))
        losses = {"taco": info_nce(taco_logits), "curl": info_nce(curl_logits),
                  "reward": jnp.square(reward - reward_target)}
        metrics = {"taco_accuracy": contrastive_accuracy(taco_logits),
                   "curl_accuracy": contrastive_accuracy(curl_logits)}
        return losses, metrics


@dataclasses.dataclass(frozen=True)
class TacoConfig:
    """TACO's settings (official ``cfgs/agent/taco.yaml``); ``loss_scales`` weigh the three maps
    (the official ``curl``/``reward`` switches are scales of 0 or 1)."""

    name: str = "taco"
    horizon: int = 3                          # K (``multistep``)
    latent_action_dim: Optional[int] = None   # None: int(1.25 |A|) + 1
    action_hidden_dim: int = 64
    feature_dim: int = 50
    hidden_dim: int = 1024
    lr: Optional[float] = None                # TACO's Adam (encoder_lr); None: the agent's lr
    # world models only (agent=imagination): the discount of TACO's K-step reward target
    reward_gamma: float = 0.99
    loss_scales: dict = dataclasses.field(
        default_factory=lambda: {"taco": 1.0, "curl": 1.0, "reward": 1.0})

    def __post_init__(self) -> None:
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(f"TacoConfig.horizon must be an int >= 1, got {self.horizon!r}")
        for name in ("action_hidden_dim", "feature_dim", "hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TacoConfig.{name} must be an int >= 1, got {value!r}")
        if not 0.0 <= self.reward_gamma <= 1.0:
            raise ValueError(f"TacoConfig.reward_gamma must be in [0, 1], got {self.reward_gamma!r}")
        if self.latent_action_dim is not None and self.latent_action_dim < 1:
            raise ValueError(f"TacoConfig.latent_action_dim must be >= 1 or None, "
                             f"got {self.latent_action_dim!r}")
        check_loss_scales(LOSS_KEYS, self.loss_scales)
        checks.weights("TacoConfig", "loss_scales", self.loss_scales)


class TacoDrQV2Objective(ObjectiveBase):
    """TACO on DrQ-v2 (official ``TACOAgent``): windows of K steps, the critic on ``phi(a)``
    (``action_encoder``: the host trains ``phi`` with the critic and hands it back as
    ``inputs.extras["encode_action"]``), and TACO + CURL + reward as a separate Adam step
    (``needs.separate_step``, learning rate ``lr``) over the encoder, ``phi`` and the heads after
    the critic, actor and target updates.

    ``host`` must have ``action_dim``. ``loss`` draws its own views through ``inputs.encode``
    (independent random shifts for the anchor and CURL views of ``o_t`` and for ``o_{t+K}``).
    """

    name = "taco"
    loss_keys = LOSS_KEYS
    Config = TacoConfig

    def __init__(self, cfg: TacoConfig, host: Any) -> None:
        self.cfg, self.loss_scales, self.lr = cfg, dict(cfg.loss_scales), cfg.lr
        self.needs = Needs(window=cfg.horizon, separate_step=True)
        self.latent_dim = cfg.latent_action_dim or latent_action_dim(host.action_dim)
        self.action_encoder = ActionEncoder(self.latent_dim, cfg.action_hidden_dim)
        self.heads = TacoHeads(cfg.feature_dim, cfg.hidden_dim)

    def init(self, key: jax.Array, example: ObjectiveInputs) -> tuple[Any, dict]:
        features = example.features
        latent = jnp.zeros((1, self.cfg.horizon, self.latent_dim), jnp.float32)
        return self.heads.init(key, features, features, features, latent, jnp.zeros((1,))), {}

    def loss(self, params: Any, state: Any, inputs: ObjectiveInputs,
             key: jax.Array) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
        del state   # the official update_taco draws its own anchor view of o_t
        k_anchor, k_curl, k_future = jax.random.split(key, 3)
        batch = inputs.batch
        tr = batch.transition
        features = inputs.encode(tr.obs, k_anchor)
        curl_features = inputs.encode(tr.obs, k_curl)
        future_features = inputs.encode(batch.future_obs[:, -1], k_future)
        latent_actions = inputs.extras["encode_action"](batch.actions.astype(jnp.float32))
        return self.heads.apply(params, features, future_features, curl_features,
                                latent_actions, tr.reward)


class TacoObjective(ObjectiveBase):
    """``objective=taco`` on a world model (``agent=imagination``), next to the other objectives
    of the list (e.g. ``objective=[repo,taco]``): TACO on the posterior features ``f_t``, with
    ``a_t .. a_{t+K-1}`` and ``f_{t+K}`` from the same sequence:

    - ``taco``: InfoNCE between ``G([p(f_t), psi(phi(a_{t:t+K-1}))])`` and ``sg(p(f_{t+K}))``
      over all windows of the batch (in-batch negatives), the same ``TacoHeads`` as on DrQ-v2;
    - ``taco_reward``: TACO's reward head on ``[p(f_t), u_seq]`` regressing
      ``sum_k reward_gamma^(k-1) r_{t+k}`` (k = 1..K).

    Windows that run past the sequence or into a new episode are masked; the maps are scaled so
    that their plain ``[B, T]`` mean is the mean over valid windows. CURL needs two augmented
    views of a frame and world models see unaugmented frames, so ``loss_scales.curl`` must be 0.
    DrQ-v2 runs TACO from the same ``TacoConfig``.
    """

    name = "taco"
    loss_keys = ("taco", "taco_reward")
    Config = TacoConfig

    @staticmethod
    def check_config(cfg: TacoConfig) -> None:
        """What a world-model host refuses of ``cfg``, checked before anything is built."""
        if cfg.loss_scales["curl"] != 0:
            raise ValueError("objective=taco on a world model: CURL needs two augmented views "
                             "of a frame and world models train on unaugmented frames; set "
                             "agent.objectives.taco.loss_scales.curl=0")

    def __init__(self, cfg: TacoConfig, world_model: Any) -> None:
        self.check_config(cfg)
        self.cfg, self.wm = cfg, world_model
        self.loss_scales = {"taco": cfg.loss_scales["taco"],
                            "taco_reward": cfg.loss_scales["reward"]}
        self.latent_dim = cfg.latent_action_dim or latent_action_dim(world_model.action_dim)
        self.phi = ActionEncoder(self.latent_dim, cfg.action_hidden_dim)
        self.heads = TacoHeads(cfg.feature_dim, cfg.hidden_dim)

    def init(self, key: jax.Array, example: Any = None) -> tuple[dict, dict]:
        del example
        k_phi, k_heads = jax.random.split(key)
        feats = jnp.zeros((1, self.wm.feat_size), jnp.float32)
        actions = jnp.zeros((1, self.cfg.horizon, self.wm.action_dim), jnp.float32)
        phi = self.phi.init(k_phi, actions)
        latent = self.phi.apply(phi, actions)
        heads = self.heads.init(k_heads, feats, feats, feats, latent, jnp.zeros((1,)))
        return {"phi": phi, "heads": heads}, {}

    def loss(self, params: dict, state: dict, inputs: ObjectiveInputs,
             key: jax.Array) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
        del state, key
        feats, batch = inputs.features, inputs.batch
        b, t = feats.shape[:2]
        k = self.cfg.horizon
        if t <= k:
            raise ValueError(f"objective=taco needs sequences longer than horizon={k}, got {t}")
        n = t - k
        actions = self.wm.action_vector(batch.action)   # one-hot for discrete actions
        # batch.action[:, s] led to obs s, so the actions taken at t .. t+K-1 sit at t+1 .. t+K
        window = jnp.stack([actions[:, 1 + j:1 + j + n] for j in range(k)], axis=2)   # [B,n,K,A]
        rewards = jnp.stack([batch.reward[:, 1 + j:1 + j + n] for j in range(k)], axis=2)
        reward_sum = jnp.sum(rewards.astype(jnp.float32)
                             * self.cfg.reward_gamma ** jnp.arange(k), axis=-1)        # [B,n]
        starts = batch.is_first.astype(bool)
        crossed = jnp.stack([starts[:, 1 + j:1 + j + n] for j in range(k)], axis=2).any(-1)
        valid = ~crossed                                                                # [B,n]
        latent = self.phi.apply(params["phi"], window.reshape(b * n, k, -1))
        anchor = feats[:, :n].reshape(b * n, -1)
        future = feats[:, k:].reshape(b * n, -1)
        taco, taco_metrics = self.heads.apply(params["heads"], anchor, future, anchor, latent,
                                              reward_sum.reshape(b * n))
        weight = valid.astype(jnp.float32) * (b * t) / jnp.maximum(valid.sum(), 1)
        pad = ((0, 0), (0, k))
        losses = {"taco": jnp.pad(taco["taco"].reshape(b, n) * weight, pad),
                  "taco_reward": jnp.pad(taco["reward"].reshape(b, n) * weight, pad)}
        return losses, {"taco_accuracy": taco_metrics["taco_accuracy"]}


register("taco", TacoObjective)
register("taco", TacoDrQV2Objective, host="drqv2")
