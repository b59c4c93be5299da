"""Returns on imagined trajectories: λ-returns and percentile return normalisation.

The rollout itself is ``rl.core.rollout``; world models call it from their ``imagine``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

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
