"""SPR (Schwarzer et al., ICLR 2021): multi-step latent self-prediction with cosine targets.

From the online latent ``z_t = f(aug(o_t))`` a transition model predicts ``z_{t+1} .. z_{t+K}``
under the actions actually taken; each is projected (``g``) and passed through a linear
predictor (``q``) and made to match the target network's projection of the real future
observation ``g_m(f_m(aug'(o_{t+k})))`` (stop-gradient). Official code (mila-iqia/spr
``spr_loss``, ``SPRCategoricalDQN.loss``; BBF's ``spr_agent.py`` is the same):

    l_k = || y_hat_k / max(|y_hat_k|, 1e-3) - y_k / max(|y_k|, 1e-3) ||^2      (= 2 - 2 cos)
    L_SPR(sample) = (1/K) sum_{k=1..K} m_k l_k        (mean over K: masked steps count as 0)
    L = mean_batch( PER_weight * (L_C51 + 5 * L_SPR) )

``m_k = 0`` once the episode of ``o_t`` has ended before ``t+k`` (the official
``1 - sign(cumsum(done))``; a ``done`` at ``t`` masks every step). ``loss_scales["spr"] = 5`` on
the mean over K is the paper's ``lambda = 2`` on ``-sum_k cos``: ``lambda = 2 * 5 / K`` (equal
gradients at K = 5; ``SPRConfig.paper_lambda``).

Projection ``g``: SPR shares the Q head's first layer (``q_l1``: the first layer of the value
and advantage streams, without noise and without ReLU). The loss here takes ``project`` as a
callable (``latent [N, H, W, C] -> [N, D]``), so the Rainbow agent passes its own layer
(``lambda z: nets.project(params, z)``), and the target projections as an array (from the
target params, ``target_projections``). Predictor ``q``: Linear(D -> D).

Target network (``SPRConfig.target_ema``): ``new = ema * old + (1 - ema) * online`` after each
update (``target_update``). ``ema = 0`` (default): the target is the online network with
stop-gradient, SPR's setting with augmentation (``--momentum-tau 1.`` in the official code,
whose ``momentum_tau`` is the weight of the ONLINE params, i.e. ``1 - ema``; the paper's tau is
our ``ema``). ``ema = 0.99``: the paper's setting without augmentation. Note the official code
copies the online encoder into the target inside the forward pass, before the optimiser step,
so its SPR target lags the online network by one update; ``target_update`` applied to the
pre-step params reproduces that, applied after the step (or ``ema = 0`` with
``stop_gradient(params)``) it does not.

Two uses:
- Rainbow (``agent=rainbow``, SPR proper): ``SPR`` holds the transition model
  (``world_models.transition``) and predictor; ``spr_objective_loss`` gives the per-sample
  loss ``[B]``; ``SPRRainbowObjective`` is the objective the Rainbow agent hosts.
- World models (``agent=imagination``, ``SPRObjective``): self-prediction on a world model's
  latents, its own ``imagine`` under the taken actions being the transition model (the one
  rollout); next to the other objectives of the list (``objective=[reconstruction,spr]``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rl.core.objective import (LossMaps, Metrics, Needs, ObjectiveBase, ObjectiveInputs,
                                  check_loss_scales, register)
from world_models.transition import NORMS, TransitionModel

Params = Any
LOSS_KEYS = ("spr",)
NORMALIZE_EPS = 1e-3          # F.normalize(..., eps=1e-3) in the official spr_loss


@dataclasses.dataclass(frozen=True)
class SPRConfig:
    """SPR's settings (mila-iqia/spr ``scripts/run.py`` defaults with the README's augmented
    setting). ``loss_scales["spr"]`` weighs the per-sample loss, itself a MEAN over the K steps
    (official ``model_spr_weight`` = 5; see ``paper_lambda``)."""

    name: str = "spr"
    horizon: int = 5                 # K (``jumps``): predicted steps t+1 .. t+K
    target_ema: float = 0.0          # new_target = ema * old + (1 - ema) * online; 0: a copy
    normalize_eps: float = NORMALIZE_EPS
    # transition model (agent=rainbow): world_models/transition.py
    transition_channels: int = 64
    transition_norm: str = "batch"   # "batch": PyTorch SPR (batch statistics); "none": BBF
    transition_residual: bool = False
    renormalize: bool = True         # min-max each predicted latent to [0, 1], as the encoder
    # world models only (agent=imagination): the width of the learned linear projection of the
    # model's features
    projection_dim: int = 512
    loss_scales: dict = dataclasses.field(default_factory=lambda: {"spr": 5.0})

    def __post_init__(self) -> None:
        for name in ("horizon", "transition_channels", "projection_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SPRConfig.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.target_ema, bool) or not 0.0 <= self.target_ema < 1.0:
            raise ValueError(
                f"SPRConfig.target_ema must be in [0, 1), got {self.target_ema!r}: the target "
                f"becomes ema * target + (1 - ema) * online (0: a copy of the online network; "
                f"the official --momentum-tau is 1 - ema, so its '1.' is target_ema=0)")
        if not self.normalize_eps > 0.0:
            raise ValueError(f"SPRConfig.normalize_eps must be > 0, got {self.normalize_eps!r}")
        if self.transition_norm not in NORMS:
            raise ValueError(f"SPRConfig.transition_norm={self.transition_norm!r}; valid: "
                             f"{list(NORMS)}")
        check_loss_scales(LOSS_KEYS, self.loss_scales)
        scale = self.loss_scales["spr"]
        if isinstance(scale, bool) or not scale >= 0.0:
            raise ValueError(f"SPRConfig.loss_scales['spr'] must be >= 0, got {scale!r}")

    @property
    def paper_lambda(self) -> float:
        """The paper's weight on ``-sum_k cos`` with the same gradient: ``2 * scale / K``."""
        return 2.0 * float(self.loss_scales["spr"]) / self.horizon


# ---------------------------------------------------------------------------- the loss
def l2_normalize(x: jax.Array, eps: float = NORMALIZE_EPS) -> jax.Array:
    """``x / max(||x||, eps)`` over the last axis (``torch.nn.functional.normalize``)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)


def spr_step_losses(pred: jax.Array, target: jax.Array,
                    eps: float = NORMALIZE_EPS) -> jax.Array:
    """``[..., K]``: ``||n(pred) - n(target)||^2`` summed over features (= 2 - 2 cos for
    vectors longer than ``eps``); no gradient into ``target``."""
    target = jax.lax.stop_gradient(target)
    diff = l2_normalize(pred.astype(jnp.float32), eps) - l2_normalize(target.astype(jnp.float32),
                                                                       eps)
    return jnp.sum(jnp.square(diff), axis=-1)


def spr_loss(pred: jax.Array, target: jax.Array, valid: jax.Array,
             eps: float = NORMALIZE_EPS) -> jax.Array:
    """Per-sample SPR loss ``[B]`` = ``mean_k valid_k * l_k`` (``pred``, ``target`` ``[B, K, D]``,
    ``valid [B, K]``). The official code then multiplies by the PER weights and averages over
    the batch (masked samples included)."""
    if pred.ndim != 3 or target.shape != pred.shape or valid.shape != pred.shape[:2]:
        raise ValueError(f"spr_loss expects pred and target [B, K, D] and valid [B, K], got "
                         f"{pred.shape}, {target.shape}, {valid.shape}")
    return jnp.mean(spr_step_losses(pred, target, eps) * valid.astype(jnp.float32), axis=-1)


def target_update(online: Params, target: Params, ema: float | jax.Array) -> Params:
    """``ema * target + (1 - ema) * online`` leaf by leaf (``ema = 0``: a copy of ``online``)."""
    return optax.incremental_update(online, target, 1.0 - jnp.asarray(ema, jnp.float32))


def cosine_metrics(pred: jax.Array, target: jax.Array, valid: jax.Array,
                   eps: float = NORMALIZE_EPS) -> Metrics:
    """Mean cosine over valid steps and the valid fraction (for logging)."""
    cos = jnp.sum(l2_normalize(pred, eps) * l2_normalize(target, eps), axis=-1)
    mask = valid.astype(jnp.float32)
    cos = jnp.sum(jax.lax.stop_gradient(cos) * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    return {"cosine": cos, "valid_fraction": jnp.mean(mask)}


# ---------------------------------------------------------------------------- Rainbow pieces
class Predictor(nn.Module):
    """SPR's predictor ``q``: Linear(D -> D) with PyTorch's default init (U(+-1/sqrt(D)))."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        bound = 1.0 / math.sqrt(d)
        init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype,
                                                                         -bound, bound)
        return nn.Dense(d, kernel_init=init, bias_init=init)(x)


PREDICTOR = Predictor()


def target_projections(encode: Callable[[jax.Array], jax.Array],
                       project: Callable[[jax.Array], jax.Array],
                       images: jax.Array) -> jax.Array:
    """``sg(project(encode(images)))`` for ``images [B, K, ...]`` -> ``[B, K, D]``; ``encode``
    and ``project`` close over the target params (stop-gradient either way)."""
    b, k = images.shape[:2]
    flat = images.reshape((b * k,) + images.shape[2:])
    return jax.lax.stop_gradient(project(encode(flat)).reshape(b, k, -1))


def spr_objective_loss(params: Params, transition: TransitionModel, latent: jax.Array,
                       actions: jax.Array, valid: jax.Array,
                       project: Callable[[jax.Array], jax.Array], target: jax.Array,
                       eps: float = NORMALIZE_EPS, unroll: int = 1
                       ) -> tuple[jax.Array, Metrics]:
    """SPR's per-sample loss ``[B]`` and metrics.

    ``params = {"transition", "predictor"}``; ``latent [B, H, W, C]``: the online encoder's
    output for ``o_t`` (with gradient); ``actions [B, K]`` (int): ``a_t .. a_{t+K-1}``;
    ``valid [B, K]``: ``o_{t+k}`` is in ``o_t``'s episode; ``project``: the online projection
    ``[N, H, W, C] -> [N, D]`` (with gradient, e.g. the Q head's first layer); ``target
    [B, K, D]``: the target network's projections of ``o_{t+1} .. o_{t+K}`` (no gradient).
    """
    b, k = actions.shape
    rolled = transition.rollout(params["transition"], latent, actions, unroll)   # [B,K,H,W,C]
    projected = project(rolled.reshape((b * k,) + rolled.shape[2:]))
    pred = PREDICTOR.apply({"params": params["predictor"]}, projected).reshape(b, k, -1)
    if target.shape != pred.shape:
        raise ValueError(f"target projections {target.shape} must match the predictions "
                         f"{pred.shape} ([B, K, D])")
    loss = spr_loss(pred, target, valid, eps)
    return loss, cosine_metrics(pred, jax.lax.stop_gradient(target), valid, eps)


def _check_online_target(cfg: SPRConfig, where: str) -> None:
    """These hosts use the online network under stop-gradient as SPR's target."""
    if cfg.target_ema != 0.0:
        raise ValueError(f"objective=spr {where} supports only target_ema=0 (the online network "
                         f"under stop-gradient as the target), got target_ema={cfg.target_ema!r}; "
                         f"set agent.objectives.spr.target_ema=0")


class SPR:
    """SPR's own trainable parts on a conv encoder (transition model + predictor), as pure
    functions; the encoder and the projection belong to the agent and come in as callables."""

    def __init__(self, cfg: SPRConfig, num_actions: int, conv: str = "xla"):
        # conv: the agent's convolution implementation (rl.core.patch_conv.CONV_IMPLS)
        self.cfg = cfg
        self.transition = TransitionModel(num_actions, cfg.transition_channels,
                                          cfg.transition_norm, cfg.transition_residual,
                                          cfg.renormalize, conv)

    def init(self, key: jax.Array, latent: jax.Array, projection_dim: int) -> Params:
        """``{"transition", "predictor"}`` for latents like ``latent [1, H, W, C]`` and
        projections of width ``projection_dim`` (Rainbow's ``q_l1``: hidden x streams)."""
        k_transition, k_predictor = jax.random.split(key)
        return {"transition": self.transition.init(k_transition, latent),
                "predictor": PREDICTOR.init(k_predictor,
                                            jnp.zeros((1, projection_dim)))["params"]}

    def loss(self, params: Params, latent: jax.Array, actions: jax.Array, valid: jax.Array,
             project: Callable[[jax.Array], jax.Array],
             target: jax.Array) -> tuple[jax.Array, Metrics]:
        # K is small: a fully unrolled rollout avoids the GPU while-loop's per-step overhead
        # (H200, K=5: 4.03 -> 3.69 ms per update; results/archive/scripts/profile_spr.py)
        return spr_objective_loss(params, self.transition, latent, actions, valid, project,
                                  target, self.cfg.normalize_eps, unroll=self.cfg.horizon)


class SPRRainbowObjective(ObjectiveBase):
    """``objective=spr agent=rainbow`` (SPR proper): from the online latent of the augmented
    ``o_t`` (``inputs.features``, with gradient) the conv transition model rolls K steps under
    ``a_t .. a_{t+K-1}``; each step is projected with the Q head's first layer
    (``inputs.extras["project"]``, no noise, with gradient) and passed through the linear
    predictor; the target is the projection of the latent of the augmented ``o_{t+k}``
    (``inputs.encode``) under stop-gradient: with ``target_ema = 0`` (SPR with augmentation,
    official ``--momentum-tau 1.``) the target network is the online one under stop-gradient,
    which is what the official code's in-forward copy computes. Steps after the episode's end
    are masked (``future_valid``). The ``[B]`` map joins the C51 loss per sample before the PER
    weights. ``host`` must have ``num_actions`` and ``cfg.conv``.
    """

    name = "spr"
    loss_keys = LOSS_KEYS
    Config = SPRConfig

    @staticmethod
    def check_config(cfg: SPRConfig) -> None:
        """What this host refuses of ``cfg``, checked before anything is built."""
        _check_online_target(cfg, "with agent=rainbow (SPR's augmented setting)")

    def __init__(self, cfg: SPRConfig, host: Any) -> None:
        self.check_config(cfg)
        self.cfg, self.loss_scales = cfg, dict(cfg.loss_scales)
        self.needs = Needs(window=cfg.horizon)
        self.spr = SPR(cfg, host.num_actions, host.cfg.conv)

    def init(self, key: jax.Array, example: ObjectiveInputs) -> tuple[Params, dict]:
        width = example.extras["project"](example.features).shape[-1]
        return self.spr.init(key, example.features, width), {}

    def loss(self, params: Params, state: Any, inputs: ObjectiveInputs,
             key: jax.Array) -> tuple[LossMaps, Metrics]:
        del state
        batch, project = inputs.batch, inputs.extras["project"]
        b, k = batch.actions.shape[:2]
        future = batch.future_obs.reshape((b * k,) + batch.future_obs.shape[2:])
        target = jax.lax.stop_gradient(project(inputs.encode(future, key)).reshape(b, k, -1))
        actions = batch.actions.reshape(b, k).astype(jnp.int32)
        loss, metrics = self.spr.loss(params, inputs.features, actions, batch.future_valid,
                                      project, target)
        return {"spr": loss}, metrics


# ---------------------------------------------------------------------------- world models
class SPRObjective(ObjectiveBase):
    """``objective=spr`` on a world model (``agent=imagination``), loss key ``spr``:

    from each filtered state at ``t`` (with gradient; ``world_model.starts``) the model imagines
    K steps under the actions taken (``a_t .. a_{t+K-1}``, ``imagine(..., actions=...)``: for
    the RSSM its prior), and the predictor of a learned linear projection of each imagined
    feature ``f_hat_{t+k}`` is matched (``spr_loss``) to the same projection of the filtered
    feature ``f_{t+k}``, both stopped (target = online with stop-gradient, so ``target_ema``
    must be 0). Steps past the sequence are not windows; steps after an episode restart are
    masked; each window's loss is the mean over K as in the official code, and the ``[B, T]``
    map is scaled so that its plain mean is the mean over all windows.
    """

    name = "spr"
    loss_keys = LOSS_KEYS
    Config = SPRConfig

    @staticmethod
    def check_config(cfg: SPRConfig) -> None:
        """What this host refuses of ``cfg``, checked before anything is built."""
        _check_online_target(cfg, "on a world model (an EMA copy of the model is not built)")

    def __init__(self, cfg: SPRConfig, world_model: Any) -> None:
        self.check_config(cfg)
        self.cfg, self.wm = cfg, world_model
        self.loss_scales = {"spr": cfg.loss_scales["spr"]}
        self.projection = nn.Dense(cfg.projection_dim)

    def init(self, key: jax.Array, example: Any = None) -> tuple[dict, dict]:
        del example
        k_proj, k_pred = jax.random.split(key)
        feats = jnp.zeros((1, self.wm.feat_size), jnp.float32)
        proj = self.projection.init(k_proj, feats)["params"]
        pred = PREDICTOR.init(k_pred, jnp.zeros((1, self.cfg.projection_dim)))["params"]
        return {"projection": proj, "predictor": pred}, {}

    def loss(self, params: dict, state: dict, inputs: Any,
             key: jax.Array) -> tuple[LossMaps, Metrics]:
        del state
        wm, out, batch, k = self.wm, inputs.model_out, inputs.batch, self.cfg.horizon
        b, t = inputs.features.shape[:2]
        if t <= k:
            raise ValueError(f"objective=spr needs sequences longer than horizon={k}, got {t}")
        n = t - k
        actions = wm.action_vector(batch.action)
        # batch.action[:, s] led to obs s, so a_t .. a_{t+K-1} sit at t+1 .. t+K
        window = jnp.stack([actions[:, 1 + j:1 + j + n] for j in range(k)], axis=2)  # [B,n,K,A]
        starts = batch.is_first.astype(jnp.int32)
        restarts = jnp.stack([starts[:, 1 + j:1 + j + n] for j in range(k)], axis=2)  # [B,n,K]
        valid = jnp.cumsum(restarts, axis=-1) == 0
        flat = lambda x: x.reshape((b * n,) + x.shape[2:])
        # the model's starts are [B*T]; the windows start at t < n
        start = jax.tree.map(lambda x: flat(x.reshape((b, t) + x.shape[1:])[:, :n]),
                             wm.starts(out))
        imagined = wm.imagine(out.params, start, None, k, key, actions=flat(window))
        prior_feats = imagined.feats[:, 1:]                                         # [Bn,K,F]
        future = jnp.stack([inputs.features[:, 1 + j:1 + j + n] for j in range(k)], axis=2)
        project = lambda p, x: self.projection.apply({"params": p}, x)
        pred = PREDICTOR.apply({"params": params["predictor"]},
                               project(params["projection"], prior_feats))
        target = jax.lax.stop_gradient(project(params["projection"], flat(future)))
        window_loss = spr_loss(pred, target, flat(valid), self.cfg.normalize_eps)
        losses = {"spr": jnp.pad(window_loss.reshape(b, n) * (t / n), ((0, 0), (0, k)))}
        spr_metrics = cosine_metrics(pred, target, flat(valid), self.cfg.normalize_eps)
        return losses, {f"spr_{name}": value for name, value in spr_metrics.items()}


register("spr", SPRObjective)
register("spr", SPRRainbowObjective, host="rainbow")
