"""Several GPUs of one host: seed copies spread over them, or one run's batch split over them.

``make_parallel(devices, parallel, num_seeds)`` gives the ``Parallel`` plan the Trainer applies
in two calls: ``wrap`` (the agent) and ``place`` (its ``TrainerState``). With one device both
are the identity, so a one-device run executes exactly the code it did before.

* ``parallel="seeds"`` (``num_seeds`` a multiple of the devices): a ``Mesh`` with one axis
  ``"seeds"``; the agent state, the acting carry, the replay's env axis (copies own consecutive
  env blocks, so a device holds whole copies' rows) and the per-copy max priorities are split
  along it. Per-copy work runs under ``shard_map``, so each device samples, updates (``lax.map``
  or ``vmap`` over its own copies, as ``SeedStack``) and acts for its copies with no traffic;
  plain GSPMD would turn ``lax.map``'s dynamic slices over the sharded axis into all-gathers.
* ``parallel="data"`` (one seed): a ``Mesh`` with one axis ``"data"``; params, optimiser state
  and replay are replicated, the sampled batch is split along its leading axis, and XLA inserts
  the gradient all-reduce (sharded batch under jit, replicated params): the same update as on
  one device, up to float summation order.

Across hosts, ``initialize_distributed`` starts ``jax.distributed`` under SLURM; the Trainer's
mesh still spans this process's local devices (README "Several GPUs").
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rl.agents.base import Agent, is_prioritized
from rl.agents.seed_stack import SeedStack, _merge_envs, _split_envs
from rl.replay.state import ReplayState

PARALLEL_MODES = ("auto", "seeds", "data")
SEEDS, DATA = "seeds", "data"


def num_devices(devices: str | int) -> int:
    """``"auto"``: every local device; else the int it names (at most the local devices)."""
    available = len(jax.local_devices())
    count = available if str(devices) == "auto" else int(devices)
    if count > available:
        raise ValueError(f"devices={devices}: only {available} local devices "
                         f"({jax.local_devices()[0].platform})")
    return count


def check_config(devices: str | int, parallel: str, num_seeds: int) -> None:
    """Config-time checks that need no device (``experiments.config``)."""
    if str(devices) != "auto" and not (str(devices).isdigit() and int(devices) >= 1):
        raise ValueError(f"devices={devices!r}; must be auto or an int >= 1")
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"parallel={parallel!r}; must be one of {PARALLEL_MODES}")
    if parallel == DATA and num_seeds > 1:
        raise ValueError(f"parallel=data splits one run's batch; num_seeds={num_seeds} needs "
                         f"parallel=seeds (or auto)")
    seeds_mode = parallel == SEEDS or (parallel == "auto" and num_seeds > 1)
    if seeds_mode and str(devices).isdigit() and num_seeds % int(devices):
        raise ValueError(f"parallel=seeds: num_seeds={num_seeds} is not a multiple of "
                         f"devices={devices} (each device holds whole copies)")


@dataclasses.dataclass(frozen=True)
class Parallel:
    """How a run uses its devices: ``mode`` None (one device), ``"seeds"`` or ``"data"``."""

    mode: str | None = None
    mesh: Mesh | None = None

    def wrap(self, agent: Agent) -> Agent:
        """The agent as the Trainer jits it (``SeedStack`` already applied)."""
        if self.mode == SEEDS:
            if not isinstance(agent, SeedStack):
                raise ValueError("parallel=seeds needs num_seeds > 1")
            return ShardedSeedStack(agent, self.mesh)
        if self.mode == DATA:
            return DataParallel(agent, self.mesh)
        return agent

    def place(self, state: Any) -> Any:
        """``TrainerState`` committed to the mesh (split or replicated as the mode says)."""
        if self.mode is None:
            return state
        devices = set(self.mesh.devices.flat)
        if not all(leaf.devices() <= devices for leaf in jax.tree.leaves(state.replay)):
            raise ValueError("several devices need the replay on them: it is in host memory "
                             "(raise loop.replay_budget_gb)")
        # the loop's key replicated too: restored from a checkpoint it would come back committed
        # to device 0 and clash with the split state in act
        state = state.replace(key=self._put(state.key, P()))
        if self.mode == DATA:
            return state.replace(agent=self._put(state.agent, P()),
                                 replay=self._put(state.replay, P()),
                                 carry=self._put(state.carry, P()))
        groups = state.replay.max_priority.shape[0]
        specs = {name: P() if name in ("ptr", "size") or (name == "max_priority" and groups == 1)
                 else P(SEEDS) for name in state.replay.__dataclass_fields__}
        replay = state.replay.replace(**{name: self._put(getattr(state.replay, name), spec)
                                         for name, spec in specs.items()})
        return state.replace(agent=self._put(state.agent, P(SEEDS)), replay=replay,
                             carry=self._put(state.carry, P(SEEDS)))

    def _put(self, tree: Any, spec: P) -> Any:
        return jax.device_put(tree, NamedSharding(self.mesh, spec))


def make_parallel(devices: str | int = 1, parallel: str = "auto", num_seeds: int = 1,
                  device_list: list[jax.Device] | None = None) -> Parallel:
    """The plan for ``devices`` local devices; ``parallel="auto"`` picks seeds for
    ``num_seeds > 1``, else data. One device: ``Parallel()`` (nothing changes)."""
    check_config(devices, parallel, num_seeds)
    count = num_devices(devices)
    if count == 1:
        return Parallel()
    mode = parallel if parallel != "auto" else (SEEDS if num_seeds > 1 else DATA)
    if mode == SEEDS and num_seeds % count:
        raise ValueError(f"parallel=seeds: num_seeds={num_seeds} is not a multiple of "
                         f"{count} devices (each device holds whole copies)")
    devs = np.asarray((device_list or jax.local_devices())[:count])
    return Parallel(mode, Mesh(devs, (mode,)))


def initialize_distributed(environ: Mapping[str, str] = os.environ) -> bool:
    """``jax.distributed.initialize()`` when SLURM started several tasks (``SLURM_NTASKS > 1``,
    e.g. submitit's ``tasks_per_node``/``nodes`` > 1); its cluster detection reads the
    coordinator, process count and index from SLURM's variables. Must run before the first JAX
    array. True when it initialised."""
    if int(environ.get("SLURM_NTASKS", "1")) <= 1 or jax.distributed.is_initialized():
        return False
    jax.distributed.initialize()
    return True


# ---- seeds: each device runs its own copies -----------------------------------------------
def _replay_specs(axes: ReplayState) -> ReplayState:
    """``SeedStack.replay_views`` axes as shard_map specs: split fields along ``seeds``."""
    return ReplayState(**{name: P(SEEDS) if getattr(axes, name) == 0 else P()
                          for name in axes.__dataclass_fields__})


class ShardedSeedStack(SeedStack):
    """``SeedStack`` whose per-copy work runs under ``shard_map`` on the ``seeds`` mesh axis:
    every device runs the wrapped agent on its block of ``num_seeds / devices`` copies. Keys are
    split over all copies first, exactly as ``SeedStack``, so copy ``s`` gets the same key."""

    def __init__(self, stack: SeedStack, mesh: Mesh):
        super().__init__(stack.agent, stack.num_seeds, stack.update_mode)
        self.mesh = mesh
        # where acting memory lives (the Trainer's and rl.evaluate's carry): split like the state
        self.carry_sharding = NamedSharding(mesh, P(SEEDS))

    def _per_device(self, fn: Callable, in_specs: Any, out_specs: Any) -> Callable:
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs)

    def act(self, state: Any, carry: Any, obs: jax.Array, is_first: jax.Array, key: jax.Array,
            step: jax.Array, explore: bool) -> tuple[jax.Array, Any]:
        def local(state, carry, obs, is_first, keys, step):
            act = lambda *xs: self.agent.act(*xs, step, explore=explore)  # noqa: E731
            return jax.vmap(act)(state, carry, obs, is_first, keys)

        actions, carry = self._per_device(local, (P(SEEDS),) * 5 + (P(),), P(SEEDS))(
            state, carry, _split_envs(obs, self.num_seeds),
            _split_envs(is_first, self.num_seeds), jax.random.split(key, self.num_seeds), step)
        return _merge_envs(actions), carry

    def sample(self, replay: ReplayState, key: jax.Array) -> Any:
        views, axes = self.replay_views(replay)
        local = jax.vmap(self.agent.sample, in_axes=(axes, 0))
        return self._per_device(local, (_replay_specs(axes), P(SEEDS)), P(SEEDS))(
            views, jax.random.split(key, self.num_seeds))

    def _sharded_over_seeds(self, method: Callable, state: Any, batch: Any, key: jax.Array,
                            step: jax.Array) -> Any:
        # step passed in explicitly (replicated), not closed over inside shard_map
        local = lambda s, b, k, t: self._over_seeds(  # noqa: E731
            lambda s1, b1, k1: method(s1, b1, k1, t), s, b, k)
        return self._per_device(local, (P(SEEDS),) * 3 + (P(),), P(SEEDS))(
            state, batch, jax.random.split(key, self.num_seeds), step)

    def update(self, state: Any, batch: Any, key: jax.Array,
               step: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        return self._sharded_over_seeds(self.agent.update, state, batch, key, step)

    def _update_with_priorities(self, state: Any, batch: Any, key: jax.Array,
                                step: jax.Array) -> tuple[Any, dict[str, jax.Array], jax.Array]:
        return self._sharded_over_seeds(self.agent.update_with_priorities, state, batch, key,
                                        step)

    def _write_priorities(self, replay: ReplayState, batch: Any,
                          priorities: jax.Array) -> ReplayState:
        if replay.max_priority.shape[0] != self.num_seeds:
            return super()._write_priorities(replay, batch, priorities)   # raises
        views, axes = self.replay_views(replay)
        local = jax.vmap(self.agent.write_priorities, in_axes=(axes, 0, 0), out_axes=axes)
        specs = _replay_specs(axes)
        written = self._per_device(local, (specs, P(SEEDS), P(SEEDS)), specs)(
            views, batch, priorities)
        return written.replace(**{name: _merge_envs(getattr(written, name))
                                  for name in replay.__dataclass_fields__
                                  if getattr(axes, name) == 0})


# ---- data: one run, its batch split --------------------------------------------------------
class DataParallel:
    """``agent`` with its sampled batch split along the leading (batch) axis over the ``data``
    mesh axis and its state pinned replicated: XLA partitions the update by the batch and
    all-reduces the gradients (the mean over the batch becomes partial sums plus a psum)."""

    def __init__(self, agent: Agent, mesh: Mesh):
        self.agent, self.mesh = agent, mesh
        self.spec = agent.spec
        self.carry_sharding = NamedSharding(mesh, P())   # acting memory, replicated
        if is_prioritized(agent):
            self.update_with_priorities = self._update_with_priorities
            self.write_priorities = agent.write_priorities

    def __getattr__(self, name: str) -> Any:   # init, act, initial_carry, report, counts, ...
        if name in ("agent", "mesh", "carry_sharding", "update_with_priorities",
                    "write_priorities"):
            raise AttributeError(name)
        return getattr(self.agent, name)

    def _constrain(self, tree: Any, spec: P) -> Any:
        return jax.lax.with_sharding_constraint(tree, NamedSharding(self.mesh, spec))

    def _split_batch(self, batch: Any) -> Any:
        count = self.mesh.devices.size

        def split(path: Any, x: jax.Array) -> jax.Array:
            if x.ndim == 0:
                return self._constrain(x, P())
            if x.shape[0] % count:
                raise ValueError(f"parallel=data: batch leaf {jax.tree_util.keystr(path)} has "
                                 f"leading size {x.shape[0]}, not a multiple of {count} devices")
            return self._constrain(x, P(DATA))
        return jax.tree_util.tree_map_with_path(split, batch)

    def sample(self, replay: ReplayState, key: jax.Array) -> Any:
        return self._split_batch(self.agent.sample(replay, key))

    def update(self, state: Any, batch: Any, key: jax.Array,
               step: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        state, metrics = self.agent.update(self._constrain(state, P()), self._split_batch(batch),
                                           key, step)
        return self._constrain(state, P()), self._constrain(metrics, P())

    def _update_with_priorities(self, state: Any, batch: Any, key: jax.Array,
                                step: jax.Array) -> tuple[Any, dict[str, jax.Array], jax.Array]:
        state, metrics, priorities = self.agent.update_with_priorities(
            self._constrain(state, P()), self._split_batch(batch), key, step)
        return self._constrain(state, P()), self._constrain(metrics, P()), priorities
