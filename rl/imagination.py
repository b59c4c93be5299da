"""Latent imagination: roll any model forward under a policy, λ-returns, return normalisation.

Nothing here knows what a state is: ``rollout`` takes a ``step_fn`` and a ``policy_fn`` and
works on any pytree state with a leading batch axis.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

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


BOOTSTRAPS = ("next", "same")


def lambda_returns(reward: jax.Array, value: jax.Array, continuation: jax.Array,
                   lambda_: float, bootstrap: str = "next") -> jax.Array:
    """TD(λ) returns ``G [..., H]`` over the last axis.

    ``reward[..., t]`` and ``continuation[..., t]`` (discount x P(continue)) belong to the
    transition from state t to t+1; ``value [..., H+1]`` holds V(s_0..s_H); ``G_H = V_H``.

    - ``bootstrap="next"`` (DreamerV3, Dreamer-v1, textbook):
      ``G_t = r_t + c_t ((1 - λ) V_{t+1} + λ G_{t+1})``.
    - ``bootstrap="same"`` (STORM's ``calc_lambda_return``, see official_conventions.md):
      ``G_t = r_t + c_t ((1 - λ) V_t + λ G_{t+1})`` — the value of the state the return starts
      from, not the next one. Only for reproducing STORM.
    """
    if bootstrap not in BOOTSTRAPS:
        raise ValueError(f"bootstrap={bootstrap!r}; valid: {list(BOOTSTRAPS)}")
    horizon = reward.shape[-1]
    if value.shape[-1] != horizon + 1 or continuation.shape[-1] != horizon:
        raise ValueError(f"lambda_returns: reward [..., H={horizon}] needs value [..., H+1] and "
                         f"continuation [..., H]; got value {value.shape}, continuation "
                         f"{continuation.shape}")
    boot = value[..., 1:] if bootstrap == "next" else value[..., :-1]
    inputs = reward + continuation * (1.0 - lambda_) * boot

    def body(next_return, xs):
        inp, cont = xs
        ret = inp + cont * lambda_ * next_return
        return ret, ret

    to_front = lambda x: jnp.moveaxis(x, -1, 0)
    _, returns = jax.lax.scan(body, value[..., -1], (to_front(inputs), to_front(continuation)),
                              reverse=True)
    return jnp.moveaxis(returns, 0, -1)


PERCENTILE_METHODS = ("linear", "kth")


def percentile(x: jax.Array, q: float, method: str = "linear") -> jax.Array:
    """The ``q``-th percentile of all of ``x``. ``"linear"``: interpolated (``jnp.percentile``,
    DreamerV3). ``"kth"``: the k-th smallest value with ``k = max(1, int(q/100 * N))``, no
    interpolation (STORM's ``torch.kthvalue``)."""
    if method not in PERCENTILE_METHODS:
        raise ValueError(f"percentile method={method!r}; valid: {list(PERCENTILE_METHODS)}")
    flat = x.reshape(-1)
    if method == "linear":
        return jnp.percentile(flat, q)
    k = max(1, int(q / 100.0 * flat.shape[0]))
    return jnp.sort(flat)[k - 1]


@struct.dataclass
class ReturnNormalizer:
    """Percentile return scale (DreamerV3, STORM) as a pytree: EMAs of the 5th and 95th
    percentiles of the λ-returns, ``scale = max(limit, high - low)``.

    The EMAs start at 0 without bias correction (STORM, official_conventions.md), so the scale is
    ``limit`` for the first updates.
    """

    low: jax.Array
    high: jax.Array
    decay: float = struct.field(pytree_node=False, default=0.99)
    low_percentile: float = struct.field(pytree_node=False, default=5.0)
    high_percentile: float = struct.field(pytree_node=False, default=95.0)
    limit: float = struct.field(pytree_node=False, default=1.0)
    method: str = struct.field(pytree_node=False, default="linear")

    @classmethod
    def create(cls, decay: float = 0.99, low_percentile: float = 5.0,
               high_percentile: float = 95.0, limit: float = 1.0,
               method: str = "linear") -> "ReturnNormalizer":
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"return normaliser decay={decay}; must be in [0, 1)")
        if not 0.0 <= low_percentile < high_percentile <= 100.0:
            raise ValueError(f"percentiles ({low_percentile}, {high_percentile}) must satisfy "
                             f"0 <= low < high <= 100")
        if method not in PERCENTILE_METHODS:
            raise ValueError(f"percentile method={method!r}; valid: {list(PERCENTILE_METHODS)}")
        # two separate buffers: the loop donates the state, and one buffer cannot be donated twice
        return cls(low=jnp.zeros((), jnp.float32), high=jnp.zeros((), jnp.float32),
                   decay=decay, low_percentile=low_percentile,
                   high_percentile=high_percentile, limit=limit, method=method)

    def update(self, returns: jax.Array) -> "ReturnNormalizer":
        returns = jax.lax.stop_gradient(returns)
        low = percentile(returns, self.low_percentile, self.method)
        high = percentile(returns, self.high_percentile, self.method)
        return self.replace(low=self.decay * self.low + (1.0 - self.decay) * low,
                            high=self.decay * self.high + (1.0 - self.decay) * high)

    @property
    def scale(self) -> jax.Array:
        return jnp.maximum(self.limit, self.high - self.low)
