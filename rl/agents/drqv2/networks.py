"""DrQ-v2's actor and critic, and one place that builds all three networks from the config.

Plug-ins (TACO, DrM's V-network) call ``make_networks`` to get modules identical to the agent's.
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from rl.agents.drqv2.config import DrQV2Config
from rl.core.nets import MLP, ConvEncoder, Trunk


class Actor(nn.Module):
    """trunk (Linear+LayerNorm+Tanh) -> MLP(hidden, hidden) -> tanh: the action mean in (-1, 1)."""

    action_dim: int
    feature_dim: int = 50
    hidden_dim: int = 1024

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        h = Trunk(self.feature_dim, name="trunk")(features)
        return jnp.tanh(MLP((self.hidden_dim, self.hidden_dim), self.action_dim, name="policy")(h))


class Critic(nn.Module):
    """Shared trunk, then two Q heads on ``[trunk(features), action]``; returns ``(q1, q2)`` [B]."""

    feature_dim: int = 50
    hidden_dim: int = 1024

    @nn.compact
    def __call__(self, features: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jnp.concatenate([Trunk(self.feature_dim, name="trunk")(features), action], axis=-1)
        q1 = MLP((self.hidden_dim, self.hidden_dim), 1, name="q1")(h)
        q2 = MLP((self.hidden_dim, self.hidden_dim), 1, name="q2")(h)
        return q1[..., 0], q2[..., 0]


class DrQV2Networks(NamedTuple):
    encoder: ConvEncoder
    actor: Actor
    critic: Critic


def make_networks(cfg: DrQV2Config, action_dim: int) -> DrQV2Networks:
    return DrQV2Networks(
        encoder=ConvEncoder(cfg.encoder_channels, cfg.encoder_layers,
                            dtype=jnp.dtype(cfg.encoder_dtype), conv=cfg.encoder_conv),
        actor=Actor(action_dim, cfg.feature_dim, cfg.hidden_dim),
        critic=Critic(cfg.feature_dim, cfg.hidden_dim),
    )
