"""Roll any model forward under a policy with ``lax.scan``: the one latent rollout.

Nothing here knows what a state is: ``rollout`` takes a ``step_fn`` and a ``policy_fn`` and
works on any pytree state with a leading batch axis.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

State = Any
StepFn = Callable[[State, jax.Array, jax.Array], State]             # (state, action, key) -> next
PolicyFn = Callable[[State, jax.Array], tuple[jax.Array, Any]]      # (state, key) -> (action, aux)


class Rollout(NamedTuple):
    """Batch-major imagined trajectory: ``states [N, H+1, ...]`` (index 0 is the start),
    ``actions [N, H, ...]`` (``actions[:, t]`` is taken in ``states[:, t]``), ``aux [N, H, ...]``
    (whatever the policy returned next to each action, e.g. log-probs and entropies)."""

    states: State
    actions: jax.Array
    aux: Any


def _batch_major(tree: Any) -> Any:
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tree)


def rollout(step_fn: StepFn, policy_fn: PolicyFn, start: State, horizon: int, key: jax.Array,
            unroll: int | bool = 1) -> Rollout:
    """``horizon`` steps of ``a_t, aux_t = policy_fn(s_t)``, ``s_{t+1} = step_fn(s_t, a_t)``.

    Each step splits its own key into a policy key and a model key (in that order).
    """
    if horizon < 1:
        raise ValueError(f"horizon={horizon}; must be >= 1")

    def body(state, step_key):
        policy_key, model_key = jax.random.split(step_key)
        action, aux = policy_fn(state, policy_key)
        next_state = step_fn(state, action, model_key)
        return next_state, (next_state, action, aux)

    _, (states, actions, aux) = jax.lax.scan(body, start, jax.random.split(key, horizon),
                                             unroll=unroll)
    states = jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s], 0), start, states)
    return Rollout(_batch_major(states), _batch_major(actions), _batch_major(aux))
