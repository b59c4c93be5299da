"""``SeedStack``: S independent copies of any agent trained in one process.

Acting and sampling are vmapped over the copies; updates run the copies in turn inside one jit
(see ``SeedStack.update`` for why not vmap).

Seeds are independent, so they share nothing but the jitted functions: the state is the agent's
state with a leading seed axis ``[S, ...]``, and each copy owns a block of ``N`` consecutive envs
(copy ``s`` owns envs ``s*N .. s*N+N-1`` of the one ``VectorEnv`` and of the one replay). The
loop sees an ordinary agent acting on ``S*N`` envs, so one act and one update call serve all
seeds: on a GPU that avoids S processes time-slicing it.

Copy ``s`` is an independent run, but not bit-identical to a separate run with another ``seed``:
its keys come from splitting one key S ways and its envs are seeded by their global index.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from rl.agents.base import Agent
from rl.replay.state import ReplayState

# replay fields with an env axis (everything else is shared: write pointer, size, max priority)
_SHARED_REPLAY_FIELDS = ("max_priority", "ptr", "size")


def _split_envs(tree: Any, seeds: int) -> Any:
    """``[S*N, ...] -> [S, N, ...]`` on every leaf."""
    return jax.tree.map(lambda x: x.reshape((seeds, x.shape[0] // seeds) + x.shape[1:]), tree)


def _merge_envs(tree: Any) -> Any:
    """``[S, N, ...] -> [S*N, ...]`` on every leaf."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def member(tree: Any, index: int) -> Any:
    """Copy ``index``'s slice of a stacked pytree (state, metrics, batch)."""
    return jax.tree.map(lambda x: x[index], tree)


class SeedStack:
    """Wraps ``agent`` (any ``rl.agents.base.Agent``) into ``num_seeds`` vmapped copies."""

    def __init__(self, agent: Agent, num_seeds: int):
        if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
            raise ValueError(f"num_seeds={num_seeds!r}; must be an int >= 1")
        self.agent = agent
        self.num_seeds = num_seeds
        self.spec = agent.spec
        # per copy, as the loop counts steps per copy
        for name in ("min_replay_steps", "replayed_steps_per_update"):
            if hasattr(agent, name):
                setattr(self, name, getattr(agent, name))

    def _envs_per_seed(self, num_envs: int) -> int:
        if num_envs % self.num_seeds:
            raise ValueError(f"{num_envs} envs cannot be split evenly over "
                             f"num_seeds={self.num_seeds}")
        return num_envs // self.num_seeds

    def init(self, key: jax.Array) -> Any:
        # One jit (eagerly, every primitive would compile on its own), copies made one after
        # the other with lax.map: a vmapped orthogonal init (batched QR) deadlocks XLA:CPU
        # (jax 0.10, default flags).
        return jax.jit(lambda keys: jax.lax.map(self.agent.init, keys))(
            jax.random.split(key, self.num_seeds))

    def initial_carry(self, num_envs: int) -> Any:
        """Carry for ``num_envs`` envs in total: ``[S, num_envs // S, ...]``."""
        carry = self.agent.initial_carry(self._envs_per_seed(num_envs))
        # materialised copies: the loop donates the carry
        return jax.tree.map(lambda x: jnp.tile(x[None], (self.num_seeds,) + (1,) * x.ndim), carry)

    def act(self, state: Any, carry: Any, obs: jax.Array, is_first: jax.Array, key: jax.Array,
            step: jax.Array, explore: bool) -> tuple[jax.Array, Any]:
        act = functools.partial(self.agent.act, explore=explore)
        actions, carry = jax.vmap(act, in_axes=(0, 0, 0, 0, 0, None))(
            state, carry, _split_envs(obs, self.num_seeds),
            _split_envs(is_first, self.num_seeds), jax.random.split(key, self.num_seeds), step)
        return _merge_envs(actions), carry

    def replay_views(self, replay: ReplayState) -> tuple[ReplayState, ReplayState]:
        """Each copy's view of the replay (its own envs) and the matching ``vmap`` axes."""
        fields = {name: getattr(replay, name) for name in replay.__dataclass_fields__}
        views = {name: value if name in _SHARED_REPLAY_FIELDS
                 else _split_envs(value, self.num_seeds) for name, value in fields.items()}
        axes = {name: None if name in _SHARED_REPLAY_FIELDS else 0 for name in fields}
        return ReplayState(**views), ReplayState(**axes)

    def sample(self, replay: ReplayState, key: jax.Array) -> Any:
        views, axes = self.replay_views(replay)
        return jax.vmap(self.agent.sample, in_axes=(axes, 0))(
            views, jax.random.split(key, self.num_seeds))

    def update(self, state: Any, batch: Any, key: jax.Array,
               step: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        """One update of every copy, one copy after the other (``lax.map``) inside the one jit.
        Metrics come back with a leading seed axis ``[S]``.

        Not ``vmap``: vmapped convolution weights turn the weight gradients into grouped
        convolutions, and on an H200 three vmapped DrQ-v2 updates took ~36 ms per call (GPU
        busy) against 3.5 ms for one update, i.e. worse than running them in turn.
        """
        keys = jax.random.split(key, self.num_seeds)
        return jax.lax.map(lambda xs: self.agent.update(xs[0], xs[1], xs[2], step),
                           (state, batch, keys))

    def report(self, state: Any, batch: Any, key: jax.Array, **kwargs: Any) -> dict[str, jax.Array]:
        """The wrapped agent's videos for copy 0."""
        if not hasattr(self.agent, "report"):
            return {}
        return self.agent.report(member(state, 0), member(batch, 0), key, **kwargs)
