"""DrQ-v2's losses as pure functions (the agent wires them together in ``update``).

Each loss is an unreduced ``[B]`` map reduced by ``weighted_mean`` with optional per-sample
weights (``rl.modules``' ``sample_weights``); without weights it is the plain mean, bit for bit.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp

from rl.agents.drqv2.networks import DrQV2Networks
from rl.core.distributions import truncated_normal_sample

Params = Any
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TargetInputs:
    """What a module's ``value_target`` may use; everything is already free of gradients."""

    reward: jax.Array         # [B] n-step discounted reward sum
    discount: jax.Array       # [B] gamma^n times the env discounts along the n steps
    next_q1: jax.Array        # [B] target critic at (next_obs, next_action)
    next_q2: jax.Array        # [B]
    next_features: jax.Array  # [B, repr_dim] online encoder on augmented next_obs
    next_action: jax.Array    # [B, A] actor sample with std(step) and stddev_clip
    step: jax.Array           # agent step
    # given only when a module uses value_target (DrM's V-network trains on them):
    features: Any = None      # [B, repr_dim] online encoder on augmented obs, stopped
    q1: Any = None            # [B] online critic at (obs, replayed action), stopped
    q2: Any = None            # [B]


def min_q_target(inputs: TargetInputs) -> jax.Array:
    """DrQ-v2's target: ``reward + discount * min(Q1', Q2')``."""
    return inputs.reward + inputs.discount * jnp.minimum(inputs.next_q1, inputs.next_q2)


def weighted_mean(loss: jax.Array, weights: jax.Array | None) -> jax.Array:
    """``mean(weights * loss)`` (``None``: ``mean(loss)``)."""
    return jnp.mean(loss) if weights is None else jnp.mean(weights * loss)


def critic_loss_maps(q1: jax.Array, q2: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """The two heads' squared errors ``[B]`` against the fixed target."""
    target = jax.lax.stop_gradient(target)
    return {"q1": jnp.square(q1 - target), "q2": jnp.square(q2 - target)}


def critic_loss(q1: jax.Array, q2: jax.Array, target: jax.Array,
                weights: jax.Array | None = None) -> tuple[jax.Array, Metrics]:
    """``MSE(Q1, y) + MSE(Q2, y)`` with the target held fixed (each mean weighted by
    ``weights [B]`` if given); all inputs [B]."""
    maps = critic_loss_maps(q1, q2, target)
    loss = weighted_mean(maps["q1"], weights) + weighted_mean(maps["q2"], weights)
    return loss, {"critic_loss": loss, "q1_mean": q1.mean(), "q2_mean": q2.mean(),
                  "q_mean": 0.5 * (q1.mean() + q2.mean()), "target_q_mean": target.mean()}


def sample_target_action(nets: DrQV2Networks, actor_params: Params, next_features: jax.Array,
                         key: jax.Array, std: jax.Array, clip: float) -> jax.Array:
    """The next action for the critic target: clipped-noise sample from the actor (no gradient)."""
    mean = nets.actor.apply(actor_params, jax.lax.stop_gradient(next_features))
    return jax.lax.stop_gradient(truncated_normal_sample(key, mean, std, clip))


def actor_loss(nets: DrQV2Networks, actor_params: Params, critic_params: Params,
               features: jax.Array, key: jax.Array, std: jax.Array, clip: float,
               encode_action: Callable[[jax.Array], jax.Array] | None = None,
               weights: jax.Array | None = None) -> tuple[jax.Array, Metrics]:
    """``-mean(min(Q1, Q2)(s, a))`` with ``a`` a clipped-noise sample from the actor.

    The encoder features are stopped here (the encoder learns only from the critic); gradients
    reach ``actor_params`` through the sample's straight-through clamp. ``encode_action``: the
    critic sees ``encode_action(a)`` (TACO's phi; only the actor is stepped by this loss).
    ``weights [B]``: per-sample weights of the mean.
    """
    features = jax.lax.stop_gradient(features)
    mean = nets.actor.apply(actor_params, features)
    action = truncated_normal_sample(key, mean, std, clip)
    if encode_action is not None:
        action = encode_action(action)
    q1, q2 = nets.critic.apply(critic_params, features, action)
    loss = weighted_mean(-jnp.minimum(q1, q2), weights)
    return loss, {"actor_loss": loss, "actor_mean_abs": jnp.abs(mean).mean()}
