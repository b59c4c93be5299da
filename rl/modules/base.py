"""The module protocol: plug-ins that hook any agent at fixed call sites (DrM, SGFD, InfoPower's
empowerment bonus, ...), and their composition, written once here.

A module is a frozen dataclass ``cls(cfg, host)`` built from its config (``cfg.name`` is its
registry name) and the agent that hosts it (``host``: the agent object; a module may use its
``name``, ``provides``, ``init_params(key)`` for fresh params of the trained nets,
``optimizers`` and ``opt_params(state)``). Every agent state names its networks the same way
(``rl.agents.base``): ``state.nets[name]`` and ``state.opt_states[name]``, so a module addresses
them generically, e.g. ``rl.modules.perturb.perturb_nets`` and ``reset_opt_states``.
All methods are pure; every one is optional (``ModuleBase`` gives no-op defaults):

    state = m.init(key, host)                                  # in agent_state.modules[m.name]
    state, metrics = m.observe_activations(state, activations, step)   # sown "intermediates"
    w = m.sample_weights(state, inputs)                        # [B], multiplies inputs.loss's map
    std = m.noise_std(state, step, default)                    # exploration / target noise
    target, metrics = m.value_target(state, inputs, default_target)
    target, state, metrics = m.value_target_step(state, inputs, default_target)  # may train
    r = m.intrinsic_reward(state, traj)                        # [N, H] on imagined trajectories
    r = m.intrinsic_reward(state, traj, agent_state)           # if m.reads_agent_state
    agent_state = m.after_update(agent_state, module_state, key, step)   # may rewrite nets

``requires`` names the call sites a module needs (``CALL_SITES``; sample weights as
``sample_weights:<loss>``, e.g. ``sample_weights:critic``); each agent declares what it offers
(``provides``, registered with ``declare_host``) and ``Modules.build`` raises a ValueError naming
the module, the missing call site and the agents that have it. Composition (``Modules``): weights
multiply, noise std and value targets chain in list order, intrinsic rewards add, activations and
after_update run in order. A call site no module requires costs nothing (plain agents are
bit-for-bit unchanged).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

from rl.core.registry import Registry

ModuleState = Any
Metrics = dict[str, jax.Array]

CALL_SITES = ("activations", "sample_weights", "noise_std", "value_target", "intrinsic_reward",
              "after_update")


@dataclasses.dataclass(frozen=True)
class WeightInputs:
    """What ``sample_weights`` may read: which unreduced loss is weighted (``loss``), the batch,
    the features of its observations (no gradient) and the agent step."""

    loss: str
    batch: Any
    features: jax.Array
    step: Any = 0


@dataclasses.dataclass(frozen=True, eq=False)
class ModuleBase:
    """No-op defaults; subclasses override what they use and list it in ``requires``."""

    cfg: Any
    host: Any = None
    # intrinsic_reward also gets the host's agent state (e.g. an objective's params), read-only
    reads_agent_state = False

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def requires(self) -> frozenset[str]:
        return frozenset()

    def init(self, key: jax.Array, host: Any) -> ModuleState:
        del key, host
        return {}

    def observe_activations(self, state: ModuleState, activations: Mapping[str, Any],
                            step: jax.Array) -> tuple[ModuleState, Metrics]:
        del activations, step
        return state, {}

    def sample_weights(self, state: ModuleState, inputs: WeightInputs) -> jax.Array:
        return jnp.ones(inputs.features.shape[:1], jnp.float32)

    def noise_std(self, state: ModuleState, step: jax.Array, default: jax.Array) -> jax.Array:
        return default

    def value_target(self, state: ModuleState, inputs: Any,
                     default_target: jax.Array) -> tuple[jax.Array, Metrics]:
        return default_target, {}

    def value_target_step(self, state: ModuleState, inputs: Any,
                          default_target: jax.Array) -> tuple[jax.Array, ModuleState, Metrics]:
        """``value_target`` that may also update the module's state (e.g. DrM's V-network
        takes its step here); the default is ``value_target`` with the state unchanged."""
        target, metrics = self.value_target(state, inputs, default_target)
        return target, state, metrics

    def intrinsic_reward(self, state: ModuleState, traj: Any) -> jax.Array:
        raise NotImplementedError(f"module {self.name!r} lists intrinsic_reward in requires "
                                  f"but does not implement it")

    def after_update(self, agent_state: Any, module_state: ModuleState, key: jax.Array,
                     step: jax.Array) -> Any:
        del module_state, key, step
        return agent_state

    def put(self, agent_state: Any, module_state: ModuleState) -> Any:
        """``agent_state`` with this module's state replaced (for ``after_update``)."""
        return agent_state.replace(modules={**agent_state.modules, self.name: module_state})


# ---------------------------------------------------------------------------- registries
REGISTRY = Registry("module")
register, get, names = REGISTRY.register, REGISTRY.get, REGISTRY.names
_HOSTS: dict[str, frozenset[str]] = {}


def declare_host(agent: str, provides: frozenset[str]) -> None:
    """Record the call sites ``agent`` offers (for the error of a module it cannot host)."""
    unknown = sorted(p for p in provides if p.split(":")[0] not in CALL_SITES)
    if unknown:
        raise ValueError(f"agent {agent!r} declares unknown call sites {unknown}; valid: "
                         f"{list(CALL_SITES)} (sample weights as sample_weights:<loss>)")
    _HOSTS[agent] = frozenset(provides)


def check_host(module: Any, agent: str, provides: frozenset[str]) -> None:
    missing = sorted(set(module.requires) - set(provides))
    if missing:
        having = {site: sorted(a for a, p in _HOSTS.items() if site in p) for site in missing}
        raise ValueError(f"module {module.name!r} needs {missing}, which agent={agent} does "
                         f"not provide (it provides {sorted(provides)}); agents that have them: "
                         f"{having}")


def check_configs(configs: Optional[Mapping[str, Any]], agent: str,
                  provides: frozenset[str]) -> None:
    """What ``Modules.build`` refuses, from the configs alone (no host object, nothing built):
    a config keyed by another name, a module that runs only on other agents (``cls.hosts``),
    a call site ``agent`` does not provide."""
    for key, cfg in (configs or {}).items():
        name = getattr(cfg, "name", None)
        if name != key:
            raise ValueError(f"modules[{key!r}] has name {name!r}; a module config is keyed "
                             f"by its own name")
        cls = get(name)
        hosts = getattr(cls, "hosts", None)
        if hosts is not None and agent not in hosts:
            raise ValueError(f"module {name!r} runs on agent={'|'.join(hosts)}, not "
                             f"agent={agent}")
        check_host(cls(cfg, None), agent, provides)


# ---------------------------------------------------------------------------- composition
@dataclasses.dataclass(frozen=True, eq=False)
class Modules:
    """An agent's modules in list order, with every call site composed once."""

    items: tuple[Any, ...] = ()

    @classmethod
    def build(cls, configs: Optional[Mapping[str, Any]], host: Any) -> "Modules":
        """Modules from ``{name: config}`` (``config.name`` picks the class), checked against
        ``host.name``/``host.provides`` before anything compiles."""
        items = []
        for key, cfg in (configs or {}).items():
            name = getattr(cfg, "name", None)
            if name != key:
                raise ValueError(f"modules[{key!r}] has name {name!r}; a module config is keyed "
                                 f"by its own name")
            module = get(name)(cfg, host)
            check_host(module, host.name, host.provides)
            items.append(module)
        return cls(tuple(items))

    def using(self, site: str) -> tuple[Any, ...]:
        return tuple(m for m in self.items if site in m.requires)

    def uses(self, site: str) -> bool:
        return bool(self.using(site))

    def init(self, key: jax.Array, host: Any) -> dict[str, ModuleState]:
        keys = jax.random.split(key, max(len(self.items), 1))
        return {m.name: m.init(k, host) for m, k in zip(self.items, keys)}

    def observe_activations(self, states: dict, activations: Mapping[str, Any],
                            step: jax.Array) -> tuple[dict, Metrics]:
        states, metrics = dict(states), {}
        for m in self.using("activations"):
            states[m.name], m_metrics = m.observe_activations(states[m.name], activations, step)
            metrics |= {f"{m.name}/{k}": v for k, v in m_metrics.items()}
        return states, metrics

    def sample_weights(self, states: dict, inputs: WeightInputs) -> jax.Array | None:
        """The product of the weights on ``inputs.loss`` (``None``: no module weighs it)."""
        weights = None
        for m in self.using(f"sample_weights:{inputs.loss}"):
            w = jax.lax.stop_gradient(m.sample_weights(states[m.name], inputs))
            weights = w if weights is None else weights * w
        return weights

    def noise_std(self, states: dict, step: jax.Array, default: jax.Array) -> jax.Array:
        for m in self.using("noise_std"):
            default = m.noise_std(states[m.name], step, default)
        return default

    def value_target(self, states: dict, inputs: Any,
                     target: jax.Array) -> tuple[jax.Array, Metrics]:
        metrics: Metrics = {}
        for m in self.using("value_target"):
            target, m_metrics = m.value_target(states[m.name], inputs, target)
            metrics |= {f"{m.name}/{k}": v for k, v in m_metrics.items()}
        return target, metrics

    def value_target_step(self, states: dict, inputs: Any,
                          target: jax.Array) -> tuple[jax.Array, dict, Metrics]:
        """``value_target`` chained in list order, with each module's updated state."""
        states, metrics = dict(states), {}
        for m in self.using("value_target"):
            target, states[m.name], m_metrics = m.value_target_step(states[m.name], inputs,
                                                                    target)
            metrics |= {f"{m.name}/{k}": v for k, v in m_metrics.items()}
        return target, states, metrics

    def intrinsic_reward(self, states: dict, traj: Any,
                         agent_state: Any = None) -> jax.Array | None:
        """The sum of the modules' intrinsic rewards ``[N, H]`` (``None``: no module gives one);
        modules with ``reads_agent_state`` also get ``agent_state``."""
        total = None
        for m in self.using("intrinsic_reward"):
            if getattr(m, "reads_agent_state", False):
                r = m.intrinsic_reward(states[m.name], traj, agent_state)
            else:
                r = m.intrinsic_reward(states[m.name], traj)
            total = r if total is None else total + r
        return total

    def after_update(self, agent_state: Any, key: jax.Array, step: jax.Array) -> Any:
        users = self.using("after_update")
        for m, k in zip(users, jax.random.split(key, max(len(users), 1))):
            agent_state = m.after_update(agent_state, agent_state.modules[m.name], k, step)
        return agent_state
