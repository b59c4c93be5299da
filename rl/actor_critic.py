"""Actor and critic for latent imagination, and their losses as pure functions.

Actor (on features, whose gradient the caller stops):
- continuous "tanh_normal" (Dreamer-v1): ``mean = s tanh(m / s)``, ``std = softplus(raw + shift)
  + min_std``, squashed by a distrax ``Tanh`` bijector. Eval action ``tanh(mean)`` (Dreamer-v1
  picks the most likely of 100 samples instead). Entropy: one-sample estimate ``-log pi(a)`` of
  the reparameterised sample (RePo averages 100 samples).
- continuous "bounded_normal" (DreamerV3): ``Normal(tanh(m), (max-min) sigmoid(raw + 2) + min)``,
  exact entropy; actions are clipped to [-1, 1] only when sent to the env.
- discrete: ``OneHotCategorical`` with optional unimix (DreamerV3 1%), exact entropy, mode argmax.

Actor gradients: "dynamics" (Dreamer-v1: backprop the λ-return through the world model into the
reparameterised actions; continuous only), or "reinforce" (log-prob x stop-grad advantage, with
the critic as baseline; DreamerV3, STORM). "auto" picks dynamics for continuous and REINFORCE for
discrete actions.

Critic: a ``rl.core.heads.ScalarHead`` ("gaussian" unit-variance NLL, Dreamer-v1; or symlog
"twohot", DreamerV3/STORM), with a slow EMA copy (decay 0.98 per update, DreamerV3) that can give
the bootstrap values (``slow_critic_target``) and/or regularise the critic (``slow_critic_reg``:
towards the slow critic's predictions, DreamerV3, or towards the λ-return computed with slow
values, STORM).

All losses return unreduced maps (the caller reduces with a mean) and metrics.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.core import symlog
from rl.core import heads
from rl.core.nets import MLPHead

Params = Any
ACTOR_DISTS = ("tanh_normal", "bounded_normal")
ACTOR_GRADS = ("auto", "dynamics", "reinforce")
SLOW_REG_TARGETS = ("value", "return")
V1_STD_SHIFT = math.log(math.expm1(5.0))   # Dreamer-v1: softplus(raw + shift) = 5 at raw = 0


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig:
    actor_layers: int = 4
    actor_units: int = 400
    critic_layers: int = 3
    critic_units: int = 400
    act: str = "elu"
    norm: str = "none"
    actor_dist: str = "tanh_normal"        # continuous: "tanh_normal" (v1) | "bounded_normal" (V3)
    actor_mean_scale: float = 5.0          # tanh_normal: mean = s * tanh(m / s)
    actor_std_shift: float = V1_STD_SHIFT  # tanh_normal: added before softplus (RePo port: 0.0)
    actor_min_std: float = 1e-4            # v1 1e-4; RePo port 0.1; V3 0.1
    actor_max_std: float = 1.0             # bounded_normal only
    actor_unimix: float = 0.0              # discrete: uniform mix (V3 0.01)
    actor_grad: str = "auto"               # "auto" | "dynamics" | "reinforce"
    actor_entropy: float = 0.0             # v1 0; RePo port / V3 / STORM 3e-4
    critic_head: str = "gaussian"          # "gaussian" | "twohot"
    num_bins: int = 255
    bin_range: float = 20.0
    slow_critic_decay: float = 0.98
    slow_critic_target: bool = False       # bootstrap λ-returns with the slow critic
    slow_critic_reg: float = 0.0           # V3 / STORM: 1.0
    slow_critic_reg_target: str = "value"  # "value" (V3) | "return" (STORM)
    return_norm: bool = False              # V3 / STORM: True
    return_norm_decay: float = 0.99
    return_norm_low: float = 5.0
    return_norm_high: float = 95.0
    return_norm_limit: float = 1.0
    return_norm_method: str = "linear"     # "linear" (V3) | "kth" (STORM)
    weight_by_gamma: bool = True           # w_t = prod_{i<t} gamma c_i (v1) | prod c_i (V3, RePo)

    def __post_init__(self) -> None:
        for name, allowed in (("actor_dist", ACTOR_DISTS), ("actor_grad", ACTOR_GRADS),
                              ("critic_head", heads.SCALAR_KINDS),
                              ("slow_critic_reg_target", SLOW_REG_TARGETS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ActorCriticConfig.{name}={getattr(self, name)!r}; "
                                 f"valid: {list(allowed)}")
        if not 0.0 <= self.slow_critic_decay <= 1.0:
            raise ValueError(f"slow_critic_decay={self.slow_critic_decay}; must be in [0, 1]")
        if not 0.0 <= self.actor_unimix < 1.0:
            raise ValueError(f"actor_unimix={self.actor_unimix}; must be in [0, 1)")

    def actor_grad_for(self, discrete: bool) -> str:
        """The resolved actor gradient ("dynamics" or "reinforce") for this action space."""
        grad = self.actor_grad
        if grad == "auto":
            grad = "reinforce" if discrete else "dynamics"
        if grad == "dynamics" and discrete:
            raise ValueError("actor_grad='dynamics' needs continuous actions; use 'reinforce' "
                             "(or 'auto') for discrete ones")
        return grad


class Actor:
    """Pure-function actor over features; action vectors in the model's action space."""

    def __init__(self, cfg: ActorCriticConfig, action_dim: int, discrete: bool):
        self.cfg = cfg
        self.action_dim = action_dim
        self.discrete = discrete
        out = action_dim if discrete else 2 * action_dim
        self.net = MLPHead(cfg.actor_layers, cfg.actor_units, out, cfg.act, cfg.norm)

    def init(self, key: jax.Array, feat_size: int) -> Params:
        return self.net.init(key, jnp.zeros((1, feat_size), jnp.float32))["params"]

    def intermediates(self, params: Params, feat: jax.Array) -> dict:
        """The sown activations of one forward pass (``trunk/hidden_i`` after the activation,
        ``output`` raw), each a one-element tuple; for ``activations`` modules (DrM)."""
        _, variables = self.net.apply({"params": params}, feat, mutable=["intermediates"])
        return variables["intermediates"]

    def _raw(self, params: Params, feat: jax.Array) -> jax.Array:
        return self.net.apply({"params": params}, feat)

    def _logits(self, raw: jax.Array) -> jax.Array:
        probs = jax.nn.softmax(raw, -1)
        unimix = self.cfg.actor_unimix
        return jnp.log((1.0 - unimix) * probs + unimix / self.action_dim)

    def _normal(self, raw: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = self.cfg
        mean, std = jnp.split(raw, 2, -1)
        if c.actor_dist == "tanh_normal":
            mean = c.actor_mean_scale * jnp.tanh(mean / c.actor_mean_scale)
            std = jax.nn.softplus(std + c.actor_std_shift) + c.actor_min_std
        else:
            mean = jnp.tanh(mean)
            std = (c.actor_max_std - c.actor_min_std) * jax.nn.sigmoid(std + 2.0) + c.actor_min_std
        return mean, std

    def dist(self, params: Params, feat: jax.Array) -> distrax.Distribution:
        """The action distribution (over one-hot vectors, or over [-1, 1]^A)."""
        raw = self._raw(params, feat)
        if self.discrete:
            return distrax.OneHotCategorical(logits=self._logits(raw))
        mean, std = self._normal(raw)
        base = distrax.MultivariateNormalDiag(mean, std)
        if self.cfg.actor_dist == "tanh_normal":
            return distrax.Transformed(base, distrax.Block(distrax.Tanh(), 1))
        return base

    def sample(self, params: Params, feat: jax.Array,
               key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """An action ``[..., A]`` and ``{"log_prob": log pi(sg(a)), "entropy": H}``.

        For ``tanh_normal`` the action is reparameterised and ``entropy`` is the one-sample
        estimate ``-log pi(a)`` with gradients through the sample."""
        raw = self._raw(params, feat)
        if self.discrete:
            dist = distrax.OneHotCategorical(logits=self._logits(raw), dtype=jnp.float32)
            action = dist.sample(seed=key)
            return action, {"log_prob": dist.log_prob(action), "entropy": dist.entropy()}
        mean, std = self._normal(raw)
        base = distrax.MultivariateNormalDiag(mean, std)
        pre = base.sample(seed=key)   # reparameterised
        if self.cfg.actor_dist == "bounded_normal":
            return pre, {"log_prob": base.log_prob(jax.lax.stop_gradient(pre)),
                         "entropy": base.entropy()}
        tanh = distrax.Tanh()
        log_prob = lambda u: base.log_prob(u) - tanh.forward_log_det_jacobian(u).sum(-1)
        return jnp.tanh(pre), {"log_prob": log_prob(jax.lax.stop_gradient(pre)),
                               "entropy": -log_prob(pre)}

    def mode(self, params: Params, feat: jax.Array) -> jax.Array:
        """The deterministic (eval) action ``[..., A]``."""
        raw = self._raw(params, feat)
        if self.discrete:
            return jax.nn.one_hot(jnp.argmax(raw, -1), self.action_dim, dtype=jnp.float32)
        mean, _ = self._normal(raw)
        return jnp.tanh(mean) if self.cfg.actor_dist == "tanh_normal" else mean


class Critic:
    """Pure-function value head over features."""

    def __init__(self, cfg: ActorCriticConfig):
        self.cfg = cfg
        self.net = heads.ScalarHead(cfg.critic_layers, cfg.critic_units, cfg.critic_head,
                                    cfg.num_bins, cfg.act, cfg.norm)
        self.bins = symlog.bins(cfg.num_bins, -cfg.bin_range, cfg.bin_range)

    def init(self, key: jax.Array, feat_size: int) -> Params:
        return self.net.init(key, jnp.zeros((1, feat_size), jnp.float32))["params"]

    def out(self, params: Params, feat: jax.Array) -> jax.Array:
        return self.net.apply({"params": params}, feat)

    def value(self, params: Params, feat: jax.Array) -> jax.Array:
        return heads.scalar_mean(self.cfg.critic_head, self.out(params, feat), self.bins)

    def nll(self, params: Params, feat: jax.Array, target: jax.Array) -> jax.Array:
        return heads.scalar_loss(self.cfg.critic_head, self.out(params, feat), target, self.bins)


def loss_weights(continuation: jax.Array) -> jax.Array:
    """``w_0 = 1, w_t = prod_{i<t} c_i`` over the last axis (no gradient): how much imagined
    step t still counts after possible earlier episode ends (and discounting, if c holds it)."""
    ones = jnp.ones_like(continuation[..., :1])
    weights = jnp.cumprod(jnp.concatenate([ones, continuation[..., :-1]], -1), -1)
    return jax.lax.stop_gradient(weights)


def actor_loss_dynamics(returns: jax.Array, entropy: jax.Array, weights: jax.Array,
                        entropy_scale: float, return_scale: jax.Array | float = 1.0
                        ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Dreamer-v1: ``-w (G / scale + eta H)``; the gradient reaches the actor through ``G``."""
    weights = jax.lax.stop_gradient(weights)
    scale = jax.lax.stop_gradient(return_scale)
    loss = -weights * (returns / scale + entropy_scale * entropy)
    return loss, {"actor_entropy": jnp.mean(entropy), "return_mean": jnp.mean(returns)}


def actor_loss_reinforce(returns: jax.Array, baseline: jax.Array, log_prob: jax.Array,
                         entropy: jax.Array, weights: jax.Array, entropy_scale: float,
                         return_scale: jax.Array | float = 1.0
                         ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """REINFORCE with a baseline: ``-w (log pi(a) sg((G - V) / scale) + eta H)``."""
    advantage = jax.lax.stop_gradient((returns - baseline) / return_scale)
    weights = jax.lax.stop_gradient(weights)
    loss = -weights * (log_prob * advantage + entropy_scale * entropy)
    return loss, {"actor_entropy": jnp.mean(entropy), "advantage_mean": jnp.mean(advantage),
                  "advantage_std": jnp.std(advantage), "return_mean": jnp.mean(returns)}


def critic_loss(critic: Critic, params: Params, feat: jax.Array, target: jax.Array,
                weights: jax.Array, slow_target: jax.Array | None = None,
                slow_reg: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``w (NLL(target) + slow_reg NLL(slow_target))`` on stop-gradient features and targets."""
    feat = jax.lax.stop_gradient(feat)
    loss = critic.nll(params, feat, target)
    if slow_target is not None and slow_reg > 0.0:
        loss = loss + slow_reg * critic.nll(params, feat, slow_target)
    value = critic.value(params, feat)
    return jax.lax.stop_gradient(weights) * loss, {"value_mean": jnp.mean(value)}

