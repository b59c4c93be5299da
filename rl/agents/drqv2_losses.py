"""DrQ-v2's losses as pure functions (the agent wires them together in ``update``)."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from rl.agents.drqv2_networks import DrQV2Networks
from rl.core.distributions import truncated_normal_sample

Params = Any
Metrics = dict[str, jax.Array]


def critic_loss(q1: jax.Array, q2: jax.Array, target: jax.Array) -> tuple[jax.Array, Metrics]:
    """``MSE(Q1, y) + MSE(Q2, y)`` with the target held fixed; all inputs [B]."""
    target = jax.lax.stop_gradient(target)
    loss = jnp.mean(jnp.square(q1 - target)) + jnp.mean(jnp.square(q2 - target))
    return loss, {"critic_loss": loss, "q1_mean": q1.mean(), "q2_mean": q2.mean(),
                  "q_mean": 0.5 * (q1.mean() + q2.mean()), "target_q_mean": target.mean()}


def sample_target_action(nets: DrQV2Networks, actor_params: Params, next_features: jax.Array,
                         key: jax.Array, std: jax.Array, clip: float) -> jax.Array:
    """The next action for the critic target: clipped-noise sample from the actor (no gradient)."""
    mean = nets.actor.apply(actor_params, jax.lax.stop_gradient(next_features))
    return jax.lax.stop_gradient(truncated_normal_sample(key, mean, std, clip))


def actor_loss(nets: DrQV2Networks, actor_params: Params, critic_params: Params,
               features: jax.Array, key: jax.Array, std: jax.Array, clip: float,
               encode_action: Callable[[jax.Array], jax.Array] | None = None
               ) -> tuple[jax.Array, Metrics]:
    """``-mean(min(Q1, Q2)(s, a))`` with ``a`` a clipped-noise sample from the actor.

    The encoder features are stopped here (the encoder learns only from the critic); gradients
    reach ``actor_params`` through the sample's straight-through clamp. ``encode_action``: the
    critic sees ``encode_action(a)`` (TACO's phi; only the actor is stepped by this loss).
    """
    features = jax.lax.stop_gradient(features)
    mean = nets.actor.apply(actor_params, features)
    action = truncated_normal_sample(key, mean, std, clip)
    if encode_action is not None:
        action = encode_action(action)
    q1, q2 = nets.critic.apply(critic_params, features, action)
    loss = -jnp.mean(jnp.minimum(q1, q2))
    return loss, {"actor_loss": loss, "actor_mean_abs": jnp.abs(mean).mean()}
