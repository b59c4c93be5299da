"""The world-model protocol: what the imagination agent and the objectives may call, and the
registry that ``world_model.name`` picks from.

    cls = world_models.get(cfg.name)        # cls.Config: its config dataclass (with ``name``)
    wm = cls(cfg, spec)                     # spec: the env's EnvSpec
    params = wm.init(key)
    carry, out = wm.observe(params, wm.initial(B), batch, key)     # filter [B, T]
    traj = wm.imagine(params, wm.starts(out), policy, horizon, key)  # from every start
    carry, feat = wm.step(params, carry, prev_action, obs, is_first, key)   # acting

A world model owns its losses: ``observe`` returns them as unreduced ``[B, T]`` maps keyed by
``loss_keys`` (weighted by ``loss_scales``), so an objective only adds its own maps and may
take over one of the model's keys (``Objective.replaces``, e.g. RePo's ``kl``).

The carry is opaque to its users: only the model reads it. Imagination stacks only features
(``Imagined``), never the carry, through the one rollout (``rl.core.rollout``), which also
serves open-loop videos and SPR (``imagine(..., actions=...)``).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Protocol

import jax

from rl.core.actions import ActionCodec
from rl.core.registry import Registry
from rl.core.rollout import Rollout
from rl.core.types import EnvSpec

Params = Any
Carry = Any
Policy = Callable[[jax.Array, jax.Array], tuple[jax.Array, Any]]   # (feat, key) -> (action, aux)
# ``imagine``'s result: feats [N, H+1, F] (index 0: the start), actions [N, H, A], aux [N, H, ...]
Imagined = Rollout


class ObserveOutput(NamedTuple):
    """The least ``observe`` returns (a model may return a richer NamedTuple with these fields,
    e.g. the RSSM's posteriors and priors for KL objectives)."""

    feats: jax.Array                 # [B, T, F] features of the filtered states, with gradient
    losses: dict[str, jax.Array]     # the model's own loss maps [B, T], keys = loss_keys
    metrics: dict[str, jax.Array]    # scalars
    params: Params                   # the params these came from (for heads and decoders)


class WorldModel(Protocol):
    """Pure functions on ``params``; attributes fixed at construction."""

    feat_size: int                   # width F of the features
    action_dim: int                  # width A of an action vector
    discrete: bool                   # one-hot action vectors (else in [-1, 1])
    loss_keys: tuple[str, ...]       # keys of ``observe``'s loss maps
    loss_scales: dict[str, float]    # the model's weights for them
    has_decoder: bool                # ``decode`` exists

    def init(self, key: jax.Array) -> Params: ...

    def initial(self, batch_size: int) -> Carry: ...

    def observe(self, params: Params, carry: Carry, batch: Any, key: jax.Array,
                unroll: int = 1) -> tuple[Carry, ObserveOutput]:
        """Filter ``batch`` (``Sequences``-like: obs, action, reward, is_first, is_terminal
        ``[B, T, ...]``) from ``carry``; returns the last carry and the output."""

    def starts(self, out: Any) -> Carry:
        """Where imagination starts: one carry per filtered step, flattened to ``[B*T]``
        (gradients not stopped)."""

    def step(self, params: Params, carry: Carry, prev_action: jax.Array, obs: jax.Array,
             is_first: jax.Array, key: jax.Array) -> tuple[Carry, jax.Array]:
        """One filtering step for acting: ``obs [N, ...]`` after ``prev_action [N, A]`` (an
        action vector), reset where ``is_first [N]``; returns the carry and its features."""

    def imagine(self, params: Params, start: Carry, policy: Optional[Policy], horizon: int,
                key: jax.Array, unroll: int = 1,
                actions: Optional[jax.Array] = None) -> Imagined:
        """Roll ``start [N]`` forward under ``policy`` or the given ``actions [N, H, A]``."""

    def reward(self, params: Params, feat: jax.Array) -> jax.Array: ...

    def continue_prob(self, params: Params, feat: jax.Array) -> jax.Array:
        """P(episode continues) ``[...]`` (ones for a model without a continue head)."""

    def decode_uint8(self, params: Params, feat: jax.Array) -> jax.Array:
        """Frames ``uint8 [..., H, W, C]`` (only where ``has_decoder``)."""

    def action_vector(self, action: jax.Array) -> jax.Array:
        """Env actions -> action vectors ``[..., A]`` (float32)."""

    def env_action(self, action_vector: jax.Array) -> jax.Array:
        """Action vectors -> env actions."""


class WorldModelBase:
    """What every world model shares: env actions <-> action vectors through ``self.actions``
    (an ``rl.core.actions.ActionCodec`` the model builds from its env spec)."""

    actions: ActionCodec

    def action_vector(self, action: jax.Array) -> jax.Array:
        """Env actions ``[..., *A]`` -> action vectors ``[..., action_dim]`` (float32)."""
        return self.actions.vector(action)

    def env_action(self, action_vector: jax.Array) -> jax.Array:
        """Action vectors -> env actions (int32 indices, or floats in the env's box)."""
        return self.actions.env(action_vector)


_REGISTRY = Registry("world model")
# register(name, cls): cls(config, spec), with cls.Config; get(name); names()
register, unregister = _REGISTRY.register, _REGISTRY.unregister
get, names = _REGISTRY.get, _REGISTRY.names


def build(cfg: Any, spec: EnvSpec) -> WorldModel:
    """The world model of config ``cfg`` (its ``name`` picks the class)."""
    name = getattr(cfg, "name", None)
    if name is None:
        raise ValueError(f"a world-model config needs a 'name' (valid: {names()}), got {cfg!r}")
    return get(name)(cfg, spec)
