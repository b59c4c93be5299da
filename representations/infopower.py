"""InfoPower (Bharadhwaj, Babaeizadeh, Erhan, Levine, ICLR 2022): information prioritisation
through empowerment, without reconstruction. No official code exists; this is a re-derivation
from the paper text (design card ``repo_spr_taco_infopower.md`` section 4).

The paper's representation objective (Sec. 3.2-3.4), per step t of a sequence:

    max  sum_t I_lb(o_t; z_t)   s.t.   sum_t C_t >= c_0,
    C_t = -KL(q(z_t | z_{t-1}, a_{t-1}, o_t) || p(z_t | z_{t-1}, a_{t-1}))
          + log q(r_t | z_t) + log q_psi(a_{t-1} | z_t, z_{t-1}) + H(pi(a_{t-1} | z_{t-1})),

solved primal-dual: ``L = sum_t [I_lb + lambda (C_t - c_0)]``, primal ascent on the model,
dual step ``lambda <- max(0, lambda - dual_lr (mean C - c_0))``. As loss maps ``[B, T]``
(minimised by the host):

- ``contrastive``: ``-I_lb`` per step. ``bound: nwj`` (headline) or ``infonce`` (ablation), with
  scores ``f(z_t, o_t') = g(z_t)^T W k(e_t')`` over all ``B*T`` posteriors of the batch: the
  positive is the same step's observation, every other (sequence, step) of the batch is a
  negative (``representations.contrastive``). InfoNCE is the standard cross-entropy, whose
  denominator includes the positive (the paper writes ``sum_{t' != t}``).
- ``constraint``: ``sg(lambda) * (c_0 - C_t)``; ``lambda`` is the objective state (a scalar and
  nothing else), advanced in ``update_state`` after the model step, so it is part of the agent
  state and of checkpoints.
- ``image`` (only with a decoder): a probe decoder on stopped features (as RePo's), so open-loop
  videos work; it sends no gradient into the encoder or the RSSM.

It replaces the world model's ``kl`` and ``reward`` maps (both are terms of ``C_t`` and so are
weighted by ``lambda``, as the Lagrangian says); the continue head, where the model has one, keeps
its own loss. Compose it instead of reconstruction: ``objective=[infopower]``.
``empowerment=false`` drops the inverse-dynamics term and head: the C-Dreamer baseline
(contrastive Dreamer, CVRL-style) is that one switch.

What the paper does not say (our choices, in ``InfoPowerConfig`` and ``conf/objective/
infopower.yaml``):
- critic: ``g`` and ``k`` are Dense projections to ``contrastive_dim`` of the posterior features
  ``[h_t, z_t]`` (sampled) and of the encoder embedding ``e_t'``; ``W`` is ``[D, D]``, init
  identity * ``w_init``. NWJ clips the scores inside the exponential at ``nwj_clip``.
- inverse dynamics ``q_psi(a_{t-1} | z_t, z_{t-1})``: an MLP on the STOCHASTIC parts only
  (``inverse_inputs: stoch``; the RSSM's ``h_t`` is a function of ``a_{t-1}``, so conditioning on
  it makes the term trivial); continuous actions: a Gaussian with mean ``tanh(mu)`` and std
  ``softplus(raw) + min_std`` evaluated at the model action in [-1, 1] (no tanh change of
  variables, so actions clipped to exactly +-1 keep a finite likelihood); discrete: a
  categorical on the one-hot action. Masked at episode starts (no ``a_{t-1}`` in the episode);
  scaled so the ``[B, T]`` mean is the mean over valid steps.
- policy entropy: the agent hands no policy to a model objective, and ``H(pi)`` has no gradient
  into the model besides through the actor's input; it enters ``C_t`` as the constant
  ``policy_entropy`` (default 0, i.e. absorbed into ``c_0``). In behaviour, the actor's own
  entropy bonus is that term.
- KL: plain KL (Dreamer-v1; ``kl_balance: null``), no free nats. ``c_0 = target``, the dual step
  ``dual_lr`` and the initial ``lambda`` are ours (not in the available text).

The same ``inverse_log_prob`` gives the empowerment reward in imagination
(``rl/modules/empowerment.py``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.core import checks
from rl.core import kl as kl_lib
from rl.core.nets import dense_head
from rl.core.objective import (LossMaps, Metrics, ObjectiveBase, ObjectiveInputs,
                                  check_loss_scales, register)
from representations.contrastive import bilinear_scores, contrastive_accuracy, info_nce, nwj
from representations.reconstruction import image_nll

BOUNDS = ("nwj", "infonce")


@dataclasses.dataclass(frozen=True)
class InfoPowerConfig:
    name: str = "infopower"
    # the paper's fixed parts
    bound: str = "nwj"                   # nwj (headline) | infonce (ablation)
    empowerment: bool = True             # False: C-Dreamer (no inverse-dynamics term)
    # our defaults (not in the available text)
    target: float = -10.0                # c_0, nats per step, on mean C_t
    init_lagrange: float = 1.0
    dual_lr: float = 1e-3                # projected gradient step on lambda (floored at 0)
    kl_balance: Optional[float] = None   # None: plain KL (Dreamer-v1)
    policy_entropy: float = 0.0          # constant H(pi) term in C_t (no policy in the model step)
    contrastive_dim: int = 64
    w_init: float = 0.1                  # W = w_init * I at init
    nwj_clip: Optional[float] = 20.0     # scores clipped inside exp (None: no clip)
    inverse_inputs: str = "stoch"        # stoch: [z_{t-1}, z_t] without h | feat: full features
    inverse_layers: int = 2
    inverse_units: int = 200
    inverse_act: str = "elu"
    min_std: float = 0.1
    loss_scales: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"contrastive": 1.0, "constraint": 1.0, "image": 1.0})

    def __post_init__(self) -> None:
        if self.bound not in BOUNDS:
            raise ValueError(f"InfoPowerConfig.bound={self.bound!r}; valid: {list(BOUNDS)}")
        if self.inverse_inputs not in ("stoch", "feat"):
            raise ValueError(f"InfoPowerConfig.inverse_inputs={self.inverse_inputs!r}; valid: "
                             f"['stoch', 'feat']")
        if not self.init_lagrange >= 0.0:
            raise ValueError(f"InfoPowerConfig.init_lagrange={self.init_lagrange!r}; must be >= 0")
        if not self.dual_lr > 0.0:
            raise ValueError(f"InfoPowerConfig.dual_lr={self.dual_lr!r}; must be > 0")
        if self.kl_balance is not None and not 0.0 <= self.kl_balance <= 1.0:
            raise ValueError(f"InfoPowerConfig.kl_balance={self.kl_balance!r}; in [0, 1] or null")
        if not self.min_std > 0.0:
            raise ValueError(f"InfoPowerConfig.min_std={self.min_std!r}; must be > 0")
        checks.weights("InfoPowerConfig", "loss_scales", self.loss_scales)


# ---------------------------------------------------------------------------- pieces
def dual_step(lagrange: jax.Array, constraint: jax.Array, target: float,
              lr: float) -> jax.Array:
    """``max(0, lambda - lr * dL/dlambda)`` with ``dL/dlambda = C - c_0``: ``lambda`` rises
    while the constraint is violated (``C < c_0``) and falls, to 0 at most, while it holds."""
    return jnp.maximum(lagrange - lr * jax.lax.stop_gradient(constraint - target), 0.0)


def gaussian_log_prob(mean: jax.Array, std: jax.Array, x: jax.Array) -> jax.Array:
    """Diagonal Gaussian log density summed over the last axis."""
    z = (x - mean) / std
    return jnp.sum(-0.5 * z ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi), axis=-1)


def categorical_log_prob(logits: jax.Array, one_hot: jax.Array) -> jax.Array:
    """``log softmax(logits)`` at the one-hot action, ``[...]``."""
    return jnp.sum(jax.nn.log_softmax(logits, axis=-1) * one_hot, axis=-1)


class InverseDynamics(nn.Module):
    """``q_psi(a | z_prev, z_next)``: raw outputs ``[..., A]`` (logits) or ``[..., 2A]``
    (Gaussian mean and std parameters)."""

    action_dim: int
    discrete: bool
    layers: int = 2
    units: int = 200
    act: str = "elu"

    @nn.compact
    def __call__(self, prev: jax.Array, nxt: jax.Array) -> jax.Array:
        size = self.action_dim if self.discrete else 2 * self.action_dim
        return dense_head(jnp.concatenate([prev, nxt], -1), self.layers, self.units, size,
                          self.act)


class Critic(nn.Module):
    """The contrastive critic: projections ``g`` (latents) and ``k`` (embeddings) and ``W``."""

    dim: int
    w_init: float

    @nn.compact
    def __call__(self, feats: jax.Array, embeds: jax.Array) -> jax.Array:
        g = nn.Dense(self.dim, name="latent_proj")(feats)
        k = nn.Dense(self.dim, name="embed_proj")(embeds)
        w = self.param("w", lambda _, shape: self.w_init * jnp.eye(shape[0]), (self.dim,))
        return bilinear_scores(g, k, w)


# ---------------------------------------------------------------------------- objective
class InfoPowerObjective(ObjectiveBase):
    name = "infopower"
    replaces = ("kl", "reward")
    Config = InfoPowerConfig

    def __init__(self, cfg: InfoPowerConfig, world_model: Any):
        for attr in ("kl", "embed_size"):
            if not hasattr(world_model, attr):
                raise ValueError(f"objective=infopower needs a world model with latent "
                                 f"distributions and encoder embeddings ({attr!r}; observe's "
                                 f"output with posts, priors, embeds), e.g. world_model.name=rssm")
        self.cfg, self.wm = cfg, world_model
        self.loss_keys = ("contrastive", "constraint") + (
            ("image",) if world_model.has_decoder else ())
        # "image" is the probe decoder's: dropped (with its scale) on a model without one
        self.loss_scales = {k: v for k, v in cfg.loss_scales.items()
                            if k in self.loss_keys or k != "image"}
        check_loss_scales(self.loss_keys, self.loss_scales)
        self.critic = Critic(cfg.contrastive_dim, cfg.w_init)
        self.inverse = InverseDynamics(world_model.action_dim, world_model.discrete,
                                       cfg.inverse_layers, cfg.inverse_units, cfg.inverse_act)
        if cfg.inverse_inputs == "stoch":
            deter = getattr(getattr(world_model, "cfg", None), "deter", None)
            if deter is None or not 0 < deter < world_model.feat_size:
                raise ValueError("objective=infopower with inverse_inputs=stoch needs features "
                                 "[deter, stoch] (an RSSM); set inverse_inputs=feat otherwise")
            self.deter = int(deter)
        else:
            self.deter = 0

    # ---- the inverse-dynamics head (also the empowerment reward's) ---------------------------
    def inverse_inputs(self, feats: jax.Array) -> jax.Array:
        """The part of features ``[..., F]`` the inverse model reads (``z`` without ``h``)."""
        return feats[..., self.deter:]

    def inverse_log_prob(self, params: Any, prev_feats: jax.Array, next_feats: jax.Array,
                         action: jax.Array) -> jax.Array:
        """``log q_psi(a | z_prev, z_next)`` ``[...]`` for model action vectors ``[..., A]``
        (one-hot when discrete, in [-1, 1] otherwise) between features ``[..., F]``."""
        if "inverse" not in params:
            raise ValueError("inverse_log_prob needs the inverse-dynamics head: "
                             "InfoPowerConfig.empowerment=true")
        out = self.inverse.apply(params["inverse"], self.inverse_inputs(prev_feats),
                                 self.inverse_inputs(next_feats))
        if self.wm.discrete:
            return categorical_log_prob(out, action)
        mean_raw, std_raw = jnp.split(out, 2, axis=-1)
        return gaussian_log_prob(jnp.tanh(mean_raw), jax.nn.softplus(std_raw) + self.cfg.min_std,
                                 action)

    # ---- protocol ----------------------------------------------------------------------------
    def init(self, key: jax.Array, example: Any = None) -> tuple[dict, dict]:
        del example
        k_critic, k_inverse = jax.random.split(key)
        feats = jnp.zeros((2, self.wm.feat_size), jnp.float32)
        embeds = jnp.zeros((2, self.wm.embed_size), jnp.float32)
        params = {"critic": self.critic.init(k_critic, feats, embeds)}
        if self.cfg.empowerment:
            z = self.inverse_inputs(feats)
            params["inverse"] = self.inverse.init(k_inverse, z, z)
        return params, {"lagrange": jnp.asarray(self.cfg.init_lagrange, jnp.float32)}

    def contrastive(self, params: Any, feats: jax.Array, embeds: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
        """``-I_lb`` per step ``[B, T]`` over all ``B*T`` pairs, and the top-1 accuracy."""
        b, t = feats.shape[:2]
        scores = self.critic.apply(params["critic"], feats.reshape(b * t, -1),
                                   embeds.reshape(b * t, -1))
        if self.cfg.bound == "nwj":
            loss = nwj(scores, self.cfg.nwj_clip)
        else:
            loss = info_nce(scores - jax.lax.stop_gradient(scores.max(1, keepdims=True)))
        return loss.reshape(b, t), contrastive_accuracy(scores)

    def inverse_map(self, params: Any, feats: jax.Array, batch: Any) -> jax.Array:
        """``log q_psi(a_{t-1} | z_t, z_{t-1})`` ``[B, T]``: 0 at t = 0 and episode starts,
        scaled so the plain mean is the mean over the valid steps."""
        actions = self.wm.action_vector(batch.action)        # batch.action[:, t] led to obs t
        log_q = self.inverse_log_prob(params, feats[:, :-1], feats[:, 1:], actions[:, 1:])
        valid = ~batch.is_first[:, 1:].astype(bool)
        log_q = jnp.where(valid, log_q, 0.0)
        log_q = jnp.concatenate([jnp.zeros_like(log_q[:, :1]), log_q], axis=1)
        count = jnp.maximum(jnp.sum(valid), 1)
        return log_q * (log_q.size / count)

    def loss(self, params: Any, state: dict, inputs: ObjectiveInputs,
             key: jax.Array) -> tuple[LossMaps, Metrics]:
        del key
        out, batch, cfg = inputs.model_out, inputs.batch, self.cfg
        feats = inputs.features
        contrastive, accuracy = self.contrastive(params, feats, out.embeds)
        kl = kl_lib.balanced_kl(self.wm.kl, out.posts, out.priors, cfg.kl_balance)
        reward_ll = -out.losses["reward"]                   # the model's own reward NLL map
        constraint = -kl + reward_ll + cfg.policy_entropy
        metrics = {"mi_bound": -jnp.mean(contrastive), "contrastive_accuracy": accuracy,
                   "kl": jnp.mean(kl), "reward_ll": jnp.mean(reward_ll)}
        if cfg.empowerment:
            inverse_ll = self.inverse_map(params, feats, batch)
            constraint = constraint + inverse_ll
            metrics["inverse_ll"] = jnp.mean(inverse_ll)
        lagrange = jax.lax.stop_gradient(state["lagrange"])
        losses = {"contrastive": contrastive, "constraint": lagrange * (cfg.target - constraint)}
        if self.wm.has_decoder:   # probe: no gradient into the encoder or the RSSM
            losses["image"] = image_nll(self.wm, out.params, jax.lax.stop_gradient(feats),
                                        batch.obs)
        metrics |= {"constraint": jnp.mean(constraint), "lagrange": lagrange}
        return losses, metrics

    def update_state(self, state: dict, metrics: Metrics) -> dict:
        return {"lagrange": dual_step(state["lagrange"], metrics["constraint"], self.cfg.target,
                                      self.cfg.dual_lr)}


register("infopower", InfoPowerObjective)
