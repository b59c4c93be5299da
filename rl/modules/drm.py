"""DrM (Xu et al., ICLR 2024): dormant-ratio-guided perturbation, exploration and exploitation,
as a module (``module=drm``) on any agent with an actor (``conf/module/drm.yaml``).

The dormant ratio ``beta`` of the actor is measured on the activations of the update's own
actor forward pass (the ``activations`` call site), with the official semantics (DrM's
``utils.cal_dormant_ratio``): for every dense layer, ``m_i = mean_batch |h_i|``; unit ``i`` is
dormant if ``m_i < threshold * mean_k m_k`` (strict); ``beta = dormant units / all units``. What
``h`` is comes from the sown activations (``rl.core.nets``): hidden layers after their
activation (the official in-place ReLU), the trunk's dense layer before LayerNorm, the output
layer before tanh. ``beta`` drives three mechanisms, each switchable:

- ``perturb``: every ``period`` agent steps (``after_update`` at the first update with
  ``step // period`` larger than at the last perturbation), shrink and perturb the dense
  weights and biases of ``perturb_nets`` (and the V-network) toward a fresh init,
  ``theta <- alpha theta + (1 - alpha) phi``, ``alpha = clip(1 - rate beta, alpha_min,
  alpha_max)``; target nets get their own fresh ``phi``; then the ``reset_opt_states`` Adam
  states (and the V-network's) are re-initialised. Pure, under ``lax.cond``.
- ``awaken`` (``noise_std``): ``sigma_dormant = sigmoid(temp (beta - target))``; the agent
  awakens at the first update with ``step > num_expl_steps`` and ``beta < target``; after that
  ``sigma = max(sigma_dormant, schedule(step - t0))`` (the agent's linear schedule restarted;
  a host without a schedule, e.g. the imagination agent's constant ``expl_noise``, gives its
  own std there unless ``stddev_schedule`` is set).
- ``exploit`` (``value_target``, DrQ-v2 only): an expectile V-network on the stopped features,
  ``L_V = mean(|tau - 1[u > 0]| u^2)``, ``u = V(s) - min(Q1, Q2)(s, a_replay)``, one Adam step
  per update before the critic's; the critic target becomes ``r + discount (lambda V(s') +
  (1 - lambda) min Q'(s', a'))`` with ``lambda = lambda_max sigmoid(-lambda_temp (beta -
  target))``. A host without ``value_target`` (the imagination agent) refuses ``exploit=true``.

With ``perturb``, ``awaken`` and ``exploit`` all off only the measurement runs (a diagnostic,
``drm/dormant_ratio``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rl.core.nets import MLP, Trunk
from rl.core.schedules import parse_schedule
from rl.modules.base import ModuleBase
from rl.modules.perturb import check_names, perturb, perturb_nets, reset_opt_states

# nets perturbed / optimiser states reset by default, per host (DrM's code on DrQ-v2: actor,
# critic, critic target; all Adam states, the encoder's included)
DEFAULT_PERTURB = {"drqv2": ("actor", "critic", "critic_target"),
                   "imagination": ("actor", "critic", "slow_critic")}
DEFAULT_RESET = {"drqv2": ("encoder", "actor", "critic"), "imagination": ("actor", "critic")}
# a target net is perturbed toward an independent fresh init of the net it tracks
TRACKS = {"critic_target": "critic", "slow_critic": "critic"}


@dataclasses.dataclass(frozen=True)
class DrMConfig:
    name: str = "drm"
    perturb: bool = True                 # periodic shrink and perturb
    awaken: bool = True                  # awaken exploration (the noise std)
    exploit: bool = True                 # expectile V in the critic target (value_target hosts)
    dormant_threshold: float = 0.025     # tau of the dormant test (strict <)
    target_dormant_ratio: float = 0.2    # beta-hat
    dormant_temp: float = 10.0           # sigma_dormant = sigmoid(temp (beta - beta-hat))
    period: int = 100000                 # agent steps between perturbations
    perturb_rate: float = 2.0            # k in alpha = clip(1 - k beta, alpha_min, alpha_max)
    min_perturb_factor: float = 0.2      # alpha_min
    max_perturb_factor: float = 1.0      # alpha_max (task-specific: 0.9 / 0.6 on hard DMC)
    perturb_nets: Optional[tuple[str, ...]] = None    # None: DEFAULT_PERTURB of the host
    reset_opt_states: Optional[tuple[str, ...]] = None  # None: DEFAULT_RESET of the host
    stddev_schedule: Optional[str] = None  # restarted at awakening; None: the host's schedule
    num_expl_steps: Optional[int] = None   # no awakening before; None: the host's
    target_lambda: float = 0.6           # lambda_max
    lambda_temp: float = 50.0            # lambda = lambda_max sigmoid(-temp (beta - beta-hat))
    expectile: float = 0.9               # tau_e of the V-network's expectile regression
    lr: Optional[float] = None           # V-network Adam; None: the host's lr

    def __post_init__(self) -> None:
        if not self.period > 0:
            raise ValueError(f"DrMConfig.period must be > 0, got {self.period!r}")
        if not 0.0 <= self.min_perturb_factor <= self.max_perturb_factor <= 1.0:
            raise ValueError(f"DrMConfig needs 0 <= min_perturb_factor <= max_perturb_factor "
                             f"<= 1, got {self.min_perturb_factor!r}, "
                             f"{self.max_perturb_factor!r}")
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"DrMConfig.expectile must be in (0, 1), got {self.expectile!r}")
        if not 0.0 < self.dormant_threshold < 1.0:
            raise ValueError(f"DrMConfig.dormant_threshold must be in (0, 1), "
                             f"got {self.dormant_threshold!r}")
        if self.stddev_schedule is not None:
            parse_schedule(self.stddev_schedule)


# ---------------------------------------------------------------------------- pure formulas
def layer_dormant_counts(activation: jax.Array, threshold: float) -> tuple[jax.Array, int]:
    """(dormant units, units) of one layer's output ``[..., N]`` (all leading axes: batch)."""
    flat = jnp.abs(activation.reshape(-1, activation.shape[-1]).astype(jnp.float32))
    unit_mean = flat.mean(axis=0)                                  # [N]
    dormant = jnp.sum(unit_mean < threshold * unit_mean.mean())
    return dormant, activation.shape[-1]


def dormant_ratio(activations: Any, threshold: float = 0.025) -> jax.Array:
    """Dormant units / all units over every sown layer (leaf) of ``activations``."""
    leaves = jax.tree.leaves(activations)
    if not leaves:
        raise ValueError("dormant_ratio got no activations")
    counts = [layer_dormant_counts(x, threshold) for x in leaves]
    return (sum(d for d, _ in counts) / sum(n for _, n in counts)).astype(jnp.float32)


def perturb_factor(beta: jax.Array, rate: float = 2.0, low: float = 0.2,
                   high: float = 1.0) -> jax.Array:
    """alpha = clip(1 - rate beta, low, high): the old params' share."""
    return jnp.clip(1.0 - rate * beta, low, high)


def dormant_std(beta: jax.Array, target: float = 0.2, temp: float = 10.0) -> jax.Array:
    """sigma_dormant = 1 / (1 + exp(-temp (beta - target)))."""
    return jax.nn.sigmoid(temp * (beta - target))


def exploit_lambda(beta: jax.Array, target_lambda: float = 0.6, target: float = 0.2,
                   temp: float = 50.0) -> jax.Array:
    """lambda(beta) = target_lambda / (1 + exp(temp (beta - target)))."""
    return target_lambda * jax.nn.sigmoid(-temp * (beta - target))


def expectile_loss(v: jax.Array, q: jax.Array, expectile: float) -> jax.Array:
    """mean(|expectile - 1[u > 0]| u^2), u = v - sg(q): weight ``expectile`` where V is below
    Q, ``1 - expectile`` above."""
    u = v - jax.lax.stop_gradient(q)
    weight = jnp.where(u > 0, 1.0 - expectile, expectile)
    return jnp.mean(weight * jnp.square(u))


def is_linear_param(path: tuple, leaf: Any = None) -> bool:
    """A dense kernel (2-D) or a bias outside a normalisation layer (LayerNorm is untouched)."""
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    if not names or names[-1] not in ("kernel", "bias"):
        return False
    if any("norm" in n.lower() for n in names[:-1]):
        return False
    return names[-1] == "bias" or getattr(leaf, "ndim", 2) == 2


class VNetwork(nn.Module):
    """DrM's V-network: trunk (Linear+LayerNorm+Tanh) -> MLP(hidden, hidden) -> 1."""

    feature_dim: int = 50
    hidden_dim: int = 1024

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        h = Trunk(self.feature_dim, name="trunk")(features)
        return MLP((self.hidden_dim, self.hidden_dim), 1, name="v")(h)[..., 0]


# ---------------------------------------------------------------------------- the module
@dataclasses.dataclass(frozen=True, eq=False)
class DrMModule(ModuleBase):
    Config = DrMConfig

    def __post_init__(self) -> None:
        host = self.host
        if host is None:
            return
        if self.cfg.exploit and "value_target" not in host.provides:
            raise ValueError(
                f"module 'drm' with exploit=true needs the value_target call site (DrQ-v2's "
                f"critic target), which agent={host.name} does not provide; set "
                f"agent.modules.drm.exploit=false there (perturbation and awaken exploration "
                f"still apply)")

    @property
    def requires(self) -> frozenset[str]:
        sites = {"activations"}
        if self.cfg.perturb:
            sites.add("after_update")
        if self.cfg.awaken:
            sites.add("noise_std")
        if self.cfg.exploit:
            sites.add("value_target")
        return frozenset(sites)

    # ---- host-derived settings
    def _host_cfg(self, field: str, default: Any = None) -> Any:
        return getattr(getattr(self.host, "cfg", None), field, default)

    @property
    def perturbed(self) -> tuple[str, ...]:
        if self.cfg.perturb_nets is not None:
            return tuple(self.cfg.perturb_nets)
        return DEFAULT_PERTURB.get(self.host.name, ("actor", "critic"))

    @property
    def resets(self) -> tuple[str, ...]:
        if self.cfg.reset_opt_states is not None:
            return tuple(self.cfg.reset_opt_states)
        return DEFAULT_RESET.get(self.host.name, ("actor", "critic"))

    @property
    def schedule(self):
        """The schedule restarted at awakening (None: the host has none; the host's default
        std is used after awakening instead)."""
        spec = self.cfg.stddev_schedule or self._host_cfg("stddev_schedule")
        return None if spec is None else parse_schedule(spec)

    @property
    def num_expl_steps(self) -> int:
        if self.cfg.num_expl_steps is not None:
            return self.cfg.num_expl_steps
        return int(self._host_cfg("num_expl_steps", 0) or 0)

    @property
    def vnet(self) -> VNetwork:
        return VNetwork(self._host_cfg("feature_dim", 50), self._host_cfg("hidden_dim", 1024))

    @property
    def v_opt(self) -> optax.GradientTransformation:
        return optax.adam(self.cfg.lr if self.cfg.lr is not None else self._host_cfg("lr", 1e-4))

    def _init_v(self, key: jax.Array) -> Any:
        return self.vnet.init(key, jnp.zeros((1, self.host.repr_dim), jnp.float32))

    # ---- state
    def init(self, key: jax.Array, host: Any) -> dict:
        state = {"beta": jnp.ones((), jnp.float32),          # official: dormant_ratio = 1
                 "awaken_step": jnp.full((), -1, jnp.int32),  # -1: not awakened
                 "last_period": jnp.zeros((), jnp.int32),
                 "perturbations": jnp.zeros((), jnp.int32),
                 "perturb_alpha": jnp.ones((), jnp.float32)}
        if self.cfg.perturb:   # unknown names fail here, not in the first update
            nets = jax.eval_shape(host.init_params, key)
            check_names([TRACKS.get(n, n) for n in self.perturbed], nets, "trained nets")
            check_names(self.resets, host.optimizers, "opt_states")
        if self.cfg.exploit:
            state["v"] = self._init_v(key)
            state["v_opt"] = self.v_opt.init(state["v"])
        return state

    # ---- call sites
    def observe_activations(self, state: dict, activations: Mapping[str, Any],
                            step: jax.Array) -> tuple[dict, dict]:
        actor = activations["actor"] if "actor" in activations else activations
        beta = dormant_ratio(actor, self.cfg.dormant_threshold)
        state = {**state, "beta": beta}
        metrics = {"dormant_ratio": beta}
        if self.cfg.awaken:
            step = jnp.asarray(step, jnp.int32)
            wake = ((state["awaken_step"] < 0) & (step > self.num_expl_steps)
                    & (beta < self.cfg.target_dormant_ratio))
            state["awaken_step"] = jnp.where(wake, step, state["awaken_step"])
            metrics["awakened"] = (state["awaken_step"] >= 0).astype(jnp.float32)
        return state, metrics

    def noise_std(self, state: dict, step: jax.Array, default: jax.Array) -> jax.Array:
        sigma = dormant_std(state["beta"], self.cfg.target_dormant_ratio, self.cfg.dormant_temp)
        t0 = state["awaken_step"]
        schedule = self.schedule
        restarted = (jnp.asarray(default, jnp.float32) if schedule is None
                     else schedule(jnp.asarray(step) - jnp.maximum(t0, 0)))
        return jnp.where(t0 >= 0, jnp.maximum(sigma, restarted), sigma).astype(jnp.float32)

    def value_target_step(self, state: dict, inputs: Any,
                          default_target: jax.Array) -> tuple[jax.Array, dict, dict]:
        """One expectile step of V on ``inputs.features`` against ``min(inputs.q1, inputs.q2)``
        (the online critic at the replayed action), then the lambda-mixed target with the
        updated V on ``inputs.next_features``."""
        if inputs.features is None or inputs.q1 is None:
            raise ValueError("module 'drm' (exploit) needs TargetInputs.features/q1/q2 from the "
                             "host's value_target call site")
        q = jax.lax.stop_gradient(jnp.minimum(inputs.q1, inputs.q2))
        features = jax.lax.stop_gradient(inputs.features)
        v_loss, grad = jax.value_and_grad(
            lambda p: expectile_loss(self.vnet.apply(p, features), q, self.cfg.expectile))(
            state["v"])
        updates, v_opt = self.v_opt.update(grad, state["v_opt"], state["v"])
        v_params = optax.apply_updates(state["v"], updates)
        next_v = self.vnet.apply(v_params, jax.lax.stop_gradient(inputs.next_features))
        lam = exploit_lambda(state["beta"], self.cfg.target_lambda,
                             self.cfg.target_dormant_ratio, self.cfg.lambda_temp)
        next_q = jnp.minimum(inputs.next_q1, inputs.next_q2)
        target = inputs.reward + inputs.discount * (lam * next_v + (1.0 - lam) * next_q)
        state = {**state, "v": v_params, "v_opt": v_opt}
        return target, state, {"v_loss": v_loss, "lambda": lam, "v_mean": next_v.mean()}

    def value_target(self, state: dict, inputs: Any,
                     default_target: jax.Array) -> tuple[jax.Array, dict]:
        target, _, metrics = self.value_target_step(state, inputs, default_target)
        return target, metrics

    def after_update(self, agent_state: Any, module_state: dict, key: jax.Array,
                     step: jax.Array) -> Any:
        cfg = self.cfg
        period = jnp.asarray(step, jnp.int32) // cfg.period
        due = period > module_state["last_period"]
        alpha = perturb_factor(module_state["beta"], cfg.perturb_rate, cfg.min_perturb_factor,
                               cfg.max_perturb_factor)

        def shrink_and_perturb(agent_state: Any) -> Any:
            k_fresh, k_target, k_v = jax.random.split(key, 3)
            fresh, fresh_targets = self.host.init_params(k_fresh), self.host.init_params(k_target)
            phi = {n: fresh_targets[TRACKS[n]] if n in TRACKS else fresh[n]
                   for n in self.perturbed}
            agent_state = perturb_nets(agent_state, phi, alpha, self.perturbed,
                                       where=is_linear_param)
            agent_state = reset_opt_states(agent_state, self.host.optimizers,
                                           self.host.opt_params(agent_state), self.resets)
            ms = {**agent_state.modules[self.name]}
            if cfg.exploit:
                ms["v"] = perturb(ms["v"], self._init_v(k_v), alpha, where=is_linear_param)
                ms["v_opt"] = self.v_opt.init(ms["v"])
            ms["perturbations"] = ms["perturbations"] + 1
            return self.put(agent_state, ms)

        agent_state = jax.lax.cond(due, shrink_and_perturb, lambda s: s, agent_state)
        ms = {**agent_state.modules[self.name],
              "last_period": jnp.maximum(module_state["last_period"], period),
              "perturb_alpha": jnp.where(due, alpha, module_state["perturb_alpha"])}
        return self.put(agent_state, ms)
