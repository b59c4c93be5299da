"""The protocol every agent follows, so that `rl.loop` never looks inside one.

All methods are pure functions of pytrees. The loop jits ``act`` once and fuses
``sample`` + ``update`` (K times under ``lax.scan``) into one jitted call with the state donated.

Agents with prioritised replay also have the two methods of ``PrioritizedAgent``; the loop then
fuses ``sample`` + ``update_with_priorities`` + ``write_priorities`` with the replay donated too.

Naming the networks (so that plug-ins, e.g. DrM's shrink-and-perturb, address them generically):
every agent state is a ``flax.struct`` dataclass with

- ``nets: dict[str, Params]``: each network's flax variables by a plain name, targets and EMA
  copies included (DrQ-v2: ``encoder``, ``actor``, ``critic``, ``critic_target``, and
  ``action_encoder`` only when an objective gives the critic one (TACO's phi); imagination:
  ``world_model``, ``actor``, ``critic``, ``slow_critic``; Rainbow: ``online``, ``target``);
- ``opt_states: dict[str, Any]``: each optimiser's state, keyed by the net it steps, or by the
  first net of the group it steps (imagination: ``world_model`` steps the world model and the
  objectives' params together). Targets and EMA copies have none, so every key is a ``nets`` key.

Objectives keep their params and optimiser states in their own slots (``ObjectiveSlots`` on
DrQ-v2 and Rainbow, ``objective_params`` on the imagination agent). Every agent also has
``optimizers`` (the optax transformations, keyed as ``opt_states``), ``opt_params(state)`` (the
params each one steps, keyed as ``opt_states``) and ``init_params(key)`` (fresh params of the
trained nets, keyed as ``nets``, without targets); ``rl.modules.perturb`` works on these.
"""
from __future__ import annotations

from typing import Any, Protocol

import jax

from rl.core.types import EnvSpec

State = Any   # the agent's whole train state: a pytree (nets, opt_states, objectives, counters)
Carry = Any   # per-env acting memory (frame stack, recurrent latent state, ...): a pytree
Batch = Any   # what ``sample`` returns and ``update`` consumes: a pytree
Metrics = dict[str, jax.Array]


class Agent(Protocol):
    spec: EnvSpec

    def init(self, key: jax.Array) -> State:
        """Fresh train state."""

    def initial_carry(self, num_envs: int) -> Carry:
        """Acting memory for ``num_envs`` environments before their first step."""

    def act(self, state: State, carry: Carry, obs: jax.Array, is_first: jax.Array,
            key: jax.Array, step: jax.Array, explore: bool) -> tuple[jax.Array, Carry]:
        """Actions for a batch of single frames ``obs[N,H,W,C]`` (uint8).

        ``is_first[N]`` resets the carry for envs that start a new episode; ``step`` is the
        number of agent steps taken so far (for schedules); ``explore`` is static.
        """

    def sample(self, replay: Any, key: jax.Array) -> Batch:
        """Draw one training batch from the replay state (jittable)."""

    def update(self, state: State, batch: Batch, key: jax.Array,
               step: jax.Array) -> tuple[State, Metrics]:
        """One gradient update (pure; jitted and donated by the loop)."""


class PrioritizedAgent(Agent, Protocol):
    """An agent whose updates set replay priorities (PER). ``update`` is then
    ``update_with_priorities`` without the priorities."""

    def update_with_priorities(self, state: State, batch: Batch, key: jax.Array,
                               step: jax.Array) -> tuple[State, Metrics, jax.Array]:
        """``update``, also returning the new priorities of ``batch``'s samples."""

    def write_priorities(self, replay: Any, batch: Batch, priorities: jax.Array) -> Any:
        """The replay with ``batch``'s samples set to ``priorities`` (jittable)."""


def is_prioritized(agent: Any) -> bool:
    return hasattr(agent, "update_with_priorities") and hasattr(agent, "write_priorities")

