"""InfoPower's empowerment bonus in imagination (``module=[empowerment]``, Bharadhwaj et al.
2022): on every imagined transition ``(s_t, a_t, s_{t+1})``,

    r_int_t = weight * log q_psi(a_t | z_{t+1}, z_t),

the inverse-dynamics head of the ``infopower`` objective (its ``inverse_log_prob``), added to the
predicted reward before the lambda-return (the imagination agent's ``intrinsic_reward`` call
site). The paper's Theorem 2 estimator is ``log q_psi - log pi``; its algorithm uses only the
``log q_psi`` part, as here: the ``-log pi`` part is the policy entropy, which the actor loss
already has (``actor_entropy``). The head's params are read from the agent state
(``reads_agent_state``), stopped: only the actor is trained through the bonus (under dynamics
backprop its gradient reaches the actor through the imagined latents and actions, as the
reward's does). ``weight: 0`` adds nothing (the module requires no call site then; the paper's
"-Policy" ablation).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from rl.modules.base import ModuleBase


@dataclasses.dataclass(frozen=True)
class EmpowermentConfig:
    name: str = "empowerment"
    weight: float = 1.0              # alpha_emp (paper: 1; 0: the "-Policy" ablation)
    objective: str = "infopower"     # the objective slot whose inverse-dynamics head is read

    def __post_init__(self) -> None:
        if not self.weight >= 0.0:
            raise ValueError(f"EmpowermentConfig.weight must be >= 0, got {self.weight!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class EmpowermentModule(ModuleBase):
    Config = EmpowermentConfig
    reads_agent_state = True

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"intrinsic_reward"}) if self.cfg.weight > 0 else frozenset()

    def _objective(self, host: Any) -> Any:
        objectives = getattr(host, "objectives", None) or {}
        objective = objectives.get(self.cfg.objective)
        if objective is None or not callable(getattr(objective, "inverse_log_prob", None)):
            raise ValueError(f"module=empowerment reads the inverse-dynamics head of objective "
                             f"slot {self.cfg.objective!r}, which agent "
                             f"{getattr(host, 'name', host)!r} does not have (its objectives: "
                             f"{sorted(objectives)}); compose objective=[infopower]")
        if not getattr(objective.cfg, "empowerment", True):
            raise ValueError("module=empowerment needs the objective's inverse-dynamics head: "
                             f"agent.objectives.{self.cfg.objective}.empowerment=true")
        return objective

    def init(self, key: jax.Array, host: Any) -> dict:
        del key
        if self.cfg.weight > 0:      # fail at init, before anything compiles
            self._objective(host)
        return {}

    def intrinsic_reward(self, state: dict, traj: Any, agent_state: Any) -> jax.Array:
        objective = self._objective(self.host)
        params = jax.lax.stop_gradient(agent_state.objective_params[self.cfg.objective])
        feats = traj.feats                                             # [N, H+1, F]
        log_q = objective.inverse_log_prob(params, feats[:, :-1], feats[:, 1:], traj.actions)
        return self.cfg.weight * log_q.astype(jnp.float32)            # [N, H]
