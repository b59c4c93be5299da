"""A toy module that exercises every call site (``module=toy``): the CLI and protocol tests use
it, and it is the smallest example of a module (one file + ``conf/module/toy.yaml``).

- ``sample_weights`` on the losses in ``weigh``: 1 for the first ``keep_fraction`` of the batch,
  0 for the rest;
- ``noise_std``: a constant std instead of the agent's schedule (``None``: the default);
- ``observe_activations``: the mean absolute sown activation, kept in the state;
- ``after_update``: counts the updates in the state; by the generic names every agent state has
  (``rl.agents.base``), shrinks and perturbs the ``perturb`` nets toward the host's fresh
  ``init_params`` (``alpha`` of the old) and re-initialises the ``reset`` optimiser states;
- ``intrinsic_reward``: a constant bonus on every imagined transition (``None``: off).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

from rl.modules.base import ModuleBase, WeightInputs
from rl.modules.perturb import check_names, perturb_nets, reset_opt_states


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    name: str = "toy"
    weigh: tuple[str, ...] = ()          # unreduced losses to weigh, e.g. ("critic",), ("c51",)
    keep_fraction: float = 0.5
    noise_std: Optional[float] = None
    observe: bool = False                # observe the sown activations
    count_updates: bool = True           # after_update counts calls
    intrinsic: Optional[float] = None    # constant bonus per imagined transition
    perturb: tuple[str, ...] = ()        # nets shrunk and perturbed after every update
    alpha: float = 0.5                   # the old params' share in the perturbation
    reset: tuple[str, ...] = ()          # opt_states re-initialised after every update

    def __post_init__(self) -> None:
        if not 0.0 <= self.keep_fraction <= 1.0:
            raise ValueError(f"ToyConfig.keep_fraction must be in [0, 1], "
                             f"got {self.keep_fraction!r}")
        if self.noise_std is not None and not self.noise_std > 0:
            raise ValueError(f"ToyConfig.noise_std must be > 0 or None, got {self.noise_std!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"ToyConfig.alpha must be in [0, 1], got {self.alpha!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class ToyModule(ModuleBase):
    Config = ToyConfig

    @property
    def requires(self) -> frozenset[str]:
        sites = {f"sample_weights:{loss}" for loss in self.cfg.weigh}
        sites |= {site for site, on in (("noise_std", self.cfg.noise_std is not None),
                                        ("activations", self.cfg.observe),
                                        ("after_update", self.cfg.count_updates
                                         or bool(self.cfg.perturb or self.cfg.reset)),
                                        ("intrinsic_reward", self.cfg.intrinsic is not None))
                  if on}
        return frozenset(sites)

    def init(self, key: jax.Array, host: Any) -> dict:
        if self.cfg.perturb:   # unknown names fail here, not in the first update
            check_names(self.cfg.perturb, jax.eval_shape(host.init_params, key), "trained nets")
        if self.cfg.reset:
            check_names(self.cfg.reset, host.optimizers, "opt_states")
        return {"updates": jnp.zeros((), jnp.int32), "activation_mean": jnp.zeros(())}

    def observe_activations(self, state: dict, activations: Mapping[str, Any],
                            step: jax.Array) -> tuple[dict, dict]:
        leaves = [x for x in jax.tree.leaves(activations)      # not the hosts' int labels
                  if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
        value = jnp.mean(jnp.stack([jnp.abs(x).mean() for x in leaves]))
        return {**state, "activation_mean": value}, {"activation_mean": value}

    def sample_weights(self, state: dict, inputs: WeightInputs) -> jax.Array:
        batch = inputs.features.shape[0]
        return (jnp.arange(batch) < self.cfg.keep_fraction * batch).astype(jnp.float32)

    def noise_std(self, state: dict, step: jax.Array, default: jax.Array) -> jax.Array:
        return jnp.asarray(self.cfg.noise_std, jnp.float32)

    def intrinsic_reward(self, state: dict, traj: Any) -> jax.Array:
        return jnp.full(traj.actions.shape[:2], self.cfg.intrinsic, jnp.float32)

    def after_update(self, agent_state: Any, module_state: dict, key: jax.Array,
                     step: jax.Array) -> Any:
        if self.cfg.perturb:
            agent_state = perturb_nets(agent_state, self.host.init_params(key), self.cfg.alpha,
                                       self.cfg.perturb)
        if self.cfg.reset:
            agent_state = reset_opt_states(agent_state, self.host.optimizers,
                                           self.host.opt_params(agent_state), self.cfg.reset)
        return self.put(agent_state, {**module_state, "updates": module_state["updates"] + 1})
