"""Roll any model forward with ``lax.scan``: the one latent rollout (imagination, open-loop
videos, multi-step self-prediction).

Nothing here knows what a state is: ``rollout`` takes a ``step_fn`` and works on any pytree state
with a leading batch axis. Only what ``readout`` returns (the features) is stacked over time, not
the state itself: a model's carry can be large (an RSSM's distribution statistics, a
transformer's context) while its users read only features.

Actions come from one of two sources:
- ``policy_fn(feat, key) -> (action, aux)`` closed loop, on the readout of the current state;
- ``actions [N, H, ...]`` open loop (given actions, e.g. the batch's for a prediction video or
  SPR's K-step windows); ``aux`` is then ``None``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

State = Any
StepFn = Callable[[State, jax.Array, jax.Array], State]             # (state, action, key) -> next
PolicyFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]        # (feat, key) -> (action, aux)
Readout = Callable[[State], Any]                                    # state -> feat


class Rollout(NamedTuple):
    """Batch-major imagined trajectory: ``feats [N, H+1, ...]`` (the readouts; index 0 is the
    start), ``actions [N, H, ...]`` (``actions[:, t]`` is taken in state t), ``aux [N, H, ...]``
    (whatever the policy returned next to each action, e.g. log-probs and entropies; ``None``
    open loop)."""

    feats: Any
    actions: jax.Array
    aux: Any


def _batch_major(tree: Any) -> Any:
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tree)


def rollout(step_fn: StepFn, policy_fn: Optional[PolicyFn], start: State, horizon: int,
            key: jax.Array, unroll: int | bool = 1, readout: Readout = lambda state: state,
            actions: Optional[jax.Array] = None) -> Rollout:
    """``horizon`` steps of ``a_t = policy_fn(readout(s_t))`` (or ``actions[:, t]``) and
    ``s_{t+1} = step_fn(s_t, a_t)``; stacks ``readout(s_t)``, t = 0..H.

    Each step splits its own key into a policy key and a model key (in that order), in both
    modes, so the model's noise does not depend on where the actions come from.
    """
    if horizon < 1:
        raise ValueError(f"horizon={horizon}; must be >= 1")
    if (policy_fn is None) == (actions is None):
        raise ValueError("rollout needs exactly one action source: policy_fn or actions")
    if actions is not None and (actions.ndim < 2 or actions.shape[1] != horizon):
        raise ValueError(f"given actions {actions.shape} must be [N, horizon={horizon}, ...]")
    keys = jax.random.split(key, horizon)

    def body(state, inputs):
        step_key, given = inputs
        policy_key, model_key = jax.random.split(step_key)
        if given is None:
            action, aux = policy_fn(readout(state), policy_key)
        else:
            action, aux = given, None
        next_state = step_fn(state, action, model_key)
        return next_state, (readout(next_state), action, aux)

    given = None if actions is None else jnp.swapaxes(actions, 0, 1)
    _, (feats, taken, aux) = jax.lax.scan(body, start, (keys, given), unroll=unroll)
    feats = jax.tree.map(lambda f0, f: jnp.concatenate([f0[None], f], 0), readout(start), feats)
    return Rollout(_batch_major(feats), _batch_major(taken), _batch_major(aux))
