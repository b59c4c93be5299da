"""The update call the loop dispatches: K sample + update steps of an agent in one jit.

``make_update_fn`` builds ``(state, replay, key, step) -> (state, replay, metrics)`` with the
agent state donated and the K updates fused with ``lax.scan`` (or dispatched K times); with the
replay in host memory the batches are sampled on the CPU and copied over.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from rl import divergence
from rl.agents.base import Agent, Metrics, is_prioritized


def _mean_over_updates(metrics: Any) -> Any:
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), metrics)


@jax.jit
def _mean_of_rows(rows: list[Any]) -> Any:
    """Mean of K metric dicts, in one call rather than eager ops per metric."""
    return _mean_over_updates(jax.tree.map(lambda *x: jnp.stack(x), *rows))


def learn_step(agent: Agent, state: Any, replay: Any, key: jax.Array,
               step: jax.Array) -> tuple[Any, Any, Metrics]:
    """One sample + update: ``(state, replay, metrics)``, with the same keys as
    ``update(state, sample(replay, k1), k2, step)``. A prioritised agent
    (``rl.agents.base.PrioritizedAgent``) writes the batch's new priorities into the returned
    replay; any other agent returns ``replay`` itself."""
    key_sample, key_update = jax.random.split(key)
    batch = agent.sample(replay, key_sample)
    if not is_prioritized(agent):
        state, metrics = agent.update(state, batch, key_update, step)
        return state, replay, metrics
    state, metrics, priorities = agent.update_with_priorities(state, batch, key_update, step)
    return state, agent.write_priorities(replay, batch, priorities), metrics


def make_update_fn(agent: Agent, updates_per_call: int, fused_sampling: bool,
                   fuse: bool = True, on_nonfinite: str = "off") -> Callable:
    """``(state, replay, key, step) -> (state, replay, metrics)``: ``updates_per_call`` updates
    (``learn_step``) in one call, the agent state donated; metrics averaged over the K updates.

    With the replay on the accelerator, sampling happens inside the same jit (no host round
    trip); a prioritised agent's replay is donated too and comes back with its priorities
    written, any other agent's replay is not touched (the same object comes back). ``fuse``: the
    K updates run in one ``lax.scan``; otherwise the single-update jit is dispatched K times
    (asynchronously; XLA:GPU runs some updates, e.g. Dreamer's, ~2x slower inside a loop body).

    With the replay in host memory, batches are sampled by a CPU jit and copied over; a
    prioritised agent's priorities are then never written, so its sampling stays uniform.

    ``on_nonfinite`` (``rl.divergence``): ``stop``/``skip`` add the ``nonfinite`` metric (the
    fraction of the K updates with a non-finite loss or state); ``skip`` also discards those.
    """
    if on_nonfinite not in divergence.MODES:
        raise ValueError(f"on_nonfinite={on_nonfinite!r}; must be one of {divergence.MODES}")
    if not fused_sampling:
        return _host_sampled_update_fn(agent, updates_per_call, on_nonfinite)
    writes = is_prioritized(agent)

    def guarded_step(state, replay, key, step):   # learn_step, checked per update
        new, written, metrics = learn_step(agent, state, replay, key, step)
        new, written, metrics = divergence.guard(on_nonfinite, state, new, metrics,
                                                 replay if writes else None,
                                                 written if writes else None)
        return new, (written if writes else replay), metrics

    def updates(state, replay, keys, step):  # one learn_step per key
        if len(keys) == 1:  # XLA:CPU runs convolutions ~10x slower inside a loop body
            state, replay, metrics = guarded_step(state, replay, keys[0], step)
        else:
            def body(carry, key):
                state, written = carry
                state, written, metrics = guarded_step(state, written if writes else replay,
                                                       key, step)
                return (state, written if writes else None), metrics

            (state, written), metrics = jax.lax.scan(body, (state, replay if writes else None),
                                                     keys)
            replay, metrics = (written if writes else replay), _mean_over_updates(metrics)
        # an untouched replay is not returned: an output cannot alias an undonated input
        return (state, replay, metrics) if writes else (state, metrics)

    def jit_over(split_key: Callable) -> Callable:
        jitted = jax.jit(lambda state, replay, key, step: updates(state, replay, split_key(key),
                                                                  step),
                         donate_argnums=(0, 1) if writes else 0)

        def call(state, replay, key, step):
            if writes:
                return jitted(state, replay, key, step)
            state, metrics = jitted(state, replay, key, step)
            return state, replay, metrics
        return call

    if fuse or updates_per_call == 1:
        return jit_over(lambda key: jax.random.split(key, updates_per_call))
    one = jit_over(lambda key: key[None])

    def dispatched(state, replay, key, step):
        rows = []
        for k in jax.random.split(key, updates_per_call):  # the keys the scan would use
            state, replay, metrics = one(state, replay, k, step)
            rows.append(metrics)
        return state, replay, _mean_of_rows(rows)

    return dispatched


def _host_sampled_update_fn(agent: Agent, updates_per_call: int,
                            on_nonfinite: str = "off") -> Callable:
    """``make_update_fn`` with the replay in host memory: K batches sampled by a CPU jit, copied
    to the accelerator and scanned over in one update jit (state donated)."""
    def updates_from_batches(state, batches, key, step):
        def body(state, batch_and_key):
            batch, key = batch_and_key
            new, metrics = agent.update(state, batch, key, step)
            new, _, metrics = divergence.guard(on_nonfinite, state, new, metrics)
            return new, metrics

        keys = jax.random.split(key, updates_per_call)
        state, metrics = jax.lax.scan(body, state, (batches, keys))
        return state, _mean_over_updates(metrics)

    update = jax.jit(updates_from_batches, donate_argnums=0)
    sample_many = jax.jit(jax.vmap(agent.sample, in_axes=(None, 0)))

    def host_sampled(state, replay, key, step):
        key_sample, key_update = jax.random.split(key)
        replay_device = jax.tree.leaves(replay)[0].devices().pop()
        keys = jax.device_put(jax.random.split(key_sample, updates_per_call), replay_device)
        batches = jax.device_put(sample_many(replay, keys), jax.devices()[0])
        state, metrics = update(state, batches, key_update, step)
        return state, replay, metrics

    return host_sampled
