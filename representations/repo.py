"""RePo (Zhu et al., ICLR 2024): maximise reward likelihood under a KL budget, no reconstruction.

    max E[log p(r_t | z_t)]  s.t.  E[KL(q_t || p_t)] <= eps,
    L_model = L_r + sg(beta) * (KL_bal - eps),     L_beta = -log(beta) * sg(KL_bal - eps)

(official zchuning/repo ``Dreamer.train``). The reward (and continue) NLL are the world model's
own losses; this objective takes over the model's ``kl`` (``replaces``) and adds, as maps
``[B, T]``:
- ``kl``: ``sg(beta) * (KL_bal_t - eps)`` with KL balancing ``alpha = 5/6`` on the prior; its
  plain mean is ``sg(beta) * (mean KL_bal - eps)``. No free nats.
- ``image`` (only with a decoder): the probe decoder's Gaussian NLL on stopped features, so its
  gradient reaches only the decoder (for open-loop videos), as the official ``obs_loss``.

``log beta`` (init ``log 1e-5``) takes one Adam step (lr 1e-4) per model step in
``update_state``: it rises while the batch's balanced KL exceeds ``eps`` and falls otherwise.
It and its Adam state are the objective state, so they live in the agent state and checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rl.core import checks
from rl.core.objective import (LossMaps, Metrics, ObjectiveBase, ObjectiveInputs,
                                  check_loss_scales, register)
from representations.reconstruction import image_nll
from rl.core import kl as kl_lib


@dataclasses.dataclass(frozen=True)
class RePoConfig:
    name: str = "repo"
    target_kl: float = 3.0          # eps, nats per step (official ``target_kl``)
    kl_balance: float = 5 / 6       # prior_train_steps P = 5 -> P / (1 + P)
    init_beta: float = 1e-5
    beta_lr: float = 1e-4           # Adam on log beta
    loss_scales: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"kl": 1.0, "image": 1.0})

    def __post_init__(self) -> None:
        if not self.target_kl >= 0.0:
            raise ValueError(f"RePoConfig.target_kl={self.target_kl!r}; must be >= 0")
        if not 0.0 <= self.kl_balance <= 1.0:
            raise ValueError(f"RePoConfig.kl_balance={self.kl_balance!r}; must be in [0, 1]")
        if not self.init_beta > 0.0:
            raise ValueError(f"RePoConfig.init_beta={self.init_beta!r}; must be > 0")
        if not self.beta_lr > 0.0:
            raise ValueError(f"RePoConfig.beta_lr={self.beta_lr!r}; must be > 0")
        checks.weights("RePoConfig", "loss_scales", self.loss_scales)


def dual_step(opt: optax.GradientTransformation, log_beta: jax.Array, opt_state: Any,
              kl_excess: jax.Array) -> tuple[jax.Array, Any]:
    """One step on ``L_beta = -log_beta * sg(KL_bal - eps)``: its gradient is ``-(KL - eps)``."""
    grad = -jax.lax.stop_gradient(kl_excess)
    updates, opt_state = opt.update(grad, opt_state, log_beta)
    return optax.apply_updates(log_beta, updates), opt_state


class RePoObjective(ObjectiveBase):
    name = "repo"
    replaces = ("kl",)
    Config = RePoConfig

    def __init__(self, cfg: RePoConfig, world_model: Any):
        if not callable(getattr(world_model, "kl", None)):
            raise ValueError("objective=repo needs a world model with latent distributions "
                             "(a kl(post, prior) method and posts/priors in observe's output, "
                             "e.g. world_model.name=rssm)")
        self.cfg = cfg
        self.wm = world_model
        self.loss_keys = ("kl",) + (("image",) if world_model.has_decoder else ())
        check_loss_scales(self.loss_keys, cfg.loss_scales)
        self.beta_opt = optax.adam(cfg.beta_lr)

    def init(self, key: jax.Array, example: Any = None) -> tuple[dict, dict]:
        del key, example
        log_beta = jnp.asarray(math.log(self.cfg.init_beta), jnp.float32)
        return {}, {"log_beta": log_beta, "opt_state": self.beta_opt.init(log_beta)}

    def loss(self, params: Any, state: dict, inputs: ObjectiveInputs,
             key: jax.Array) -> tuple[LossMaps, Metrics]:
        del params, key
        out = inputs.model_out
        beta = jax.lax.stop_gradient(jnp.exp(state["log_beta"]))
        kl = kl_lib.balanced_kl(self.wm.kl, out.posts, out.priors, self.cfg.kl_balance)
        losses = {"kl": beta * (kl - self.cfg.target_kl)}
        if self.wm.has_decoder:   # probe: no gradient into the encoder or the RSSM
            losses["image"] = image_nll(self.wm, out.params,
                                        jax.lax.stop_gradient(inputs.features), inputs.batch.obs)
        # the constraint's state, logged: beta, the batch KL and how far it is above its budget
        # (the dual step's signal: beta rises while kl_excess > 0)
        return losses, {"kl_balanced": jnp.mean(kl), "beta": beta,
                        "kl_excess": jnp.mean(kl) - self.cfg.target_kl}

    def update_state(self, state: dict, metrics: Metrics) -> dict:
        log_beta, opt_state = dual_step(self.beta_opt, state["log_beta"], state["opt_state"],
                                        metrics["kl_balanced"] - self.cfg.target_kl)
        return {"log_beta": log_beta, "opt_state": opt_state}


register("repo", RePoObjective)
