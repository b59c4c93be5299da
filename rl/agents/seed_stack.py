"""``SeedStack``: S independent copies of any agent trained in one process.

Acting and sampling are vmapped over the copies; updates run the copies in turn inside one jit
(``update_mode="map"``, see ``SeedStack.update`` for why not vmap) or vmapped (``"vmap"``).

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

from rl.agents.base import Agent, is_prioritized
from rl.replay.state import ReplayState

# replay fields without an env axis (the max priority has one entry per seed: priority_groups)
_SHARED_REPLAY_FIELDS = ("ptr", "size")
UPDATE_MODES = ("map", "vmap")


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

    def __init__(self, agent: Agent, num_seeds: int, update_mode: str = "map"):
        if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
            raise ValueError(f"num_seeds={num_seeds!r}; must be an int >= 1")
        if update_mode not in UPDATE_MODES:
            raise ValueError(f"update_mode={update_mode!r}; must be one of {UPDATE_MODES}")
        self.agent = agent
        self.num_seeds = num_seeds
        self.update_mode = update_mode
        if is_prioritized(agent):   # PER: every copy writes priorities into its own envs
            self.update_with_priorities = self._update_with_priorities
            self.write_priorities = self._write_priorities
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
        """Each copy's view of the replay (its own envs) and the matching ``vmap`` axes. The max
        priority is split too when the replay has one priority group per copy; a single group
        (a replay for uniform sampling) is shared."""
        groups = replay.max_priority.shape[0]
        if groups not in (1, self.num_seeds):
            raise ValueError(f"replay has {groups} priority groups; num_seeds={self.num_seeds} "
                             f"needs 1 or {self.num_seeds}")
        shared = _SHARED_REPLAY_FIELDS + (("max_priority",) if groups == 1 else ())
        fields = {name: getattr(replay, name) for name in replay.__dataclass_fields__}
        views = {name: value if name in shared else _split_envs(value, self.num_seeds)
                 for name, value in fields.items()}
        axes = {name: None if name in shared else 0 for name in fields}
        return ReplayState(**views), ReplayState(**axes)

    def sample(self, replay: ReplayState, key: jax.Array) -> Any:
        views, axes = self.replay_views(replay)
        return jax.vmap(self.agent.sample, in_axes=(axes, 0))(
            views, jax.random.split(key, self.num_seeds))

    def _over_seeds(self, fn, *stacked: Any) -> Any:
        """``fn`` on every copy's slice of the ``[S, ...]`` pytrees ``stacked``, outputs stacked."""
        if self.update_mode == "vmap":
            return jax.vmap(fn)(*stacked)
        return jax.lax.map(lambda xs: fn(*xs), stacked)

    def update(self, state: Any, batch: Any, key: jax.Array,
               step: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        """One update of every copy, in one jit. Metrics come back with a leading seed axis
        ``[S]``.

        ``update_mode="map"`` (default) runs the copies one after the other (``lax.map``):
        vmapped convolution weights turn the weight gradients into grouped convolutions, and on
        an H200 three vmapped DrQ-v2 updates (batch 256) took ~36 ms per call against 3.5 ms
        for one update, i.e. worse than running them in turn. ``"vmap"`` is for small-batch
        agents whose single update leaves the GPU idle (measure with experiments.bench).
        """
        keys = jax.random.split(key, self.num_seeds)
        return self._over_seeds(lambda s, b, k: self.agent.update(s, b, k, step),
                                state, batch, keys)

    def _update_with_priorities(self, state: Any, batch: Any, key: jax.Array,
                                step: jax.Array) -> tuple[Any, dict[str, jax.Array], jax.Array]:
        keys = jax.random.split(key, self.num_seeds)
        return self._over_seeds(lambda s, b, k: self.agent.update_with_priorities(s, b, k, step),
                                state, batch, keys)

    def _write_priorities(self, replay: ReplayState, batch: Any,
                          priorities: jax.Array) -> ReplayState:
        """Each copy writes its ``[S, B]`` priorities into its own block of envs."""
        if replay.max_priority.shape[0] != self.num_seeds:
            raise ValueError(f"prioritised replay for num_seeds={self.num_seeds} needs one max "
                             f"priority per copy: rl.replay.init(..., priority_groups="
                             f"{self.num_seeds}), got {replay.max_priority.shape[0]}")
        views, axes = self.replay_views(replay)
        written = jax.vmap(self.agent.write_priorities, in_axes=(axes, 0, 0),
                           out_axes=axes)(views, batch, priorities)
        return written.replace(**{name: _merge_envs(getattr(written, name))
                                  for name in replay.__dataclass_fields__
                                  if getattr(axes, name) == 0})

    def report(self, state: Any, batch: Any, key: jax.Array, **kwargs: Any) -> dict[str, jax.Array]:
        """The wrapped agent's videos for copy 0."""
        if not hasattr(self.agent, "report"):
            return {}
        return self.agent.report(member(state, 0), member(batch, 0), key, **kwargs)
