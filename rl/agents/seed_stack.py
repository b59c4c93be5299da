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

``SeedLayout`` is the host side of the same arrangement (which envs, eval envs, replay block,
priority group and logger belong to which copy); the loop and experiments.train ask it rather
than doing the arithmetic. With one seed it is the identity layout and ``wrap`` returns the
agent itself: the single-seed path has no seed axis and no ``SeedStack``.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Sequence

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


@dataclasses.dataclass(frozen=True)
class SeedLayout:
    """Which part of a run belongs to which of ``num_seeds`` copies: copy ``s`` owns train envs
    ``s*envs_per_seed .. (s+1)*envs_per_seed - 1`` (and the same block of the replay), the same
    block of ``eval_envs_per_seed`` eval envs, priority group ``s``, logger ``s`` and slice ``s``
    of every stacked value. Every count a run's config gives (envs, eval envs, replay capacity,
    budgets) is per copy; the totals come from here."""

    num_seeds: int = 1
    envs_per_seed: int = 1
    eval_envs_per_seed: int = 1

    def __post_init__(self) -> None:
        for name in ("num_seeds", "envs_per_seed", "eval_envs_per_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; must be an int >= 1")

    @classmethod
    def of_envs(cls, num_seeds: int, num_envs: int, eval_envs: int) -> "SeedLayout":
        """The layout of vector envs of ``num_envs`` (train) and ``eval_envs`` envs in total."""
        for name, total in (("env", num_envs), ("eval_env", eval_envs)):
            if total % num_seeds:
                raise ValueError(f"{name} has {total} envs; num_seeds={num_seeds} needs a "
                                 f"multiple of it (one equal block per seed)")
        return cls(num_seeds, num_envs // num_seeds, eval_envs // num_seeds)

    @property
    def stacked(self) -> bool:
        """Whether the agent runs as a ``SeedStack`` (values carry a leading seed axis)."""
        return self.num_seeds > 1

    @property
    def total_envs(self) -> int:
        return self.num_seeds * self.envs_per_seed

    @property
    def total_eval_envs(self) -> int:
        return self.num_seeds * self.eval_envs_per_seed

    @property
    def priority_groups(self) -> int:
        """Max-priority groups of the shared replay (``rl.replay.init``): one per copy."""
        return self.num_seeds

    @property
    def eval_groups(self) -> int:
        """Blocks of the eval env evaluated apart (``rl.evaluate.evaluate``): one per copy."""
        return self.num_seeds

    def replay_capacity(self, per_seed: int) -> int:
        """Transitions of the shared replay for ``per_seed`` transitions per copy."""
        return per_seed * self.num_seeds

    def env_block(self, seed_index: int) -> slice:
        """Copy ``seed_index``'s train envs (and rows of the replay)."""
        self.check_index(seed_index)
        return slice(seed_index * self.envs_per_seed, (seed_index + 1) * self.envs_per_seed)

    def seed_of_env(self, env_index: int) -> int:
        """The copy that owns train env ``env_index``."""
        return int(env_index) // self.envs_per_seed

    def of_seed(self, value: Any, seed_index: int) -> Any:
        """Copy ``seed_index``'s entry of a stacked value (a metric); the value itself with
        one seed."""
        return value[seed_index] if self.stacked else value

    def member(self, tree: Any, seed_index: int) -> Any:
        """Copy ``seed_index``'s slice of a stacked pytree (an agent state); the tree itself
        with one seed."""
        self.check_index(seed_index)
        return member(tree, seed_index) if self.stacked else tree

    def replay_block(self, replay: ReplayState, seed_index: int) -> ReplayState:
        """Copy ``seed_index``'s replay: its envs' rows and its max priority (a replay with a
        single priority group keeps it); the replay itself with one seed."""
        self.check_index(seed_index)
        if not self.stacked:
            return replay
        block = self.env_block(seed_index)
        groups = replay.max_priority.shape[0]
        rows = {name: getattr(replay, name)[block] for name in replay.__dataclass_fields__
                if name not in _SHARED_REPLAY_FIELDS + ("max_priority",)}
        max_priority = (replay.max_priority if groups == 1
                        else replay.max_priority[seed_index:seed_index + 1])
        return replay.replace(**rows, max_priority=max_priority)

    def log_dirs(self, run_dir: pathlib.Path) -> list[pathlib.Path]:
        """One log directory per copy: the run directory, or ``seed_<k>/`` in it."""
        run_dir = pathlib.Path(run_dir)
        if not self.stacked:
            return [run_dir]
        return [run_dir / f"seed_{k}" for k in range(self.num_seeds)]

    def run_names(self, name: str) -> list[str]:
        """One (W&B) run name per copy: ``name``, or ``<name>-seed_<k>``."""
        if not self.stacked:
            return [name]
        return [f"{name}-seed_{k}" for k in range(self.num_seeds)]

    def check_loggers(self, loggers: Sequence[Any]) -> None:
        if len(loggers) != self.num_seeds:
            raise ValueError(f"num_seeds={self.num_seeds} needs one logger per seed, got "
                             f"{len(loggers)}")

    def wrap(self, agent: Agent, update_mode: str = "map") -> Agent:
        """The agent acting for every copy: a ``SeedStack``, or ``agent`` itself for one."""
        return SeedStack(agent, self.num_seeds, update_mode) if self.stacked else agent

    def check_index(self, seed_index: int) -> None:
        """Refuses an index that names no copy."""
        if not 0 <= seed_index < self.num_seeds:
            raise ValueError(f"seed_index={seed_index}; the run has num_seeds={self.num_seeds}")


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
