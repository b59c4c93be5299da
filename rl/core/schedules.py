"""DrQ-v2's schedule strings, parsed once into a jittable function of the agent step.

Accepted forms (as in the official ``utils.schedule``; durations count agent steps):
- a constant: ``0.2`` or ``"0.2"``;
- ``"linear(init, final, duration)"``: ``init -> final`` over ``duration`` steps, then flat;
- ``"step_linear(init, final1, duration1, final2, duration2)"``: ``init -> final1`` over the
  first ``duration1`` steps, then ``final1 -> final2`` over the next ``duration2``.
"""
from __future__ import annotations

import re
from typing import Callable

import jax
import jax.numpy as jnp

Schedule = Callable[[jax.Array], jax.Array]

_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_LINEAR = re.compile(rf"linear\({_NUMBER},{_NUMBER},{_NUMBER}\)")
_STEP_LINEAR = re.compile(rf"step_linear\({_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\)")
_ALLOWED = ("a number, 'linear(init,final,duration)' or "
            "'step_linear(init,final1,duration1,final2,duration2)'")


def _ramp(step: jax.Array, start: float, end: float, duration: float) -> jax.Array:
    mix = jnp.clip(step / duration, 0.0, 1.0)
    return (1.0 - mix) * start + mix * end


def parse_schedule(spec: str | float | int) -> Schedule:
    """Turn a schedule string (or number) into ``step -> float32 value``; raises on bad input."""
    if isinstance(spec, bool):
        raise ValueError(f"bad schedule {spec!r}: expected {_ALLOWED}")
    if isinstance(spec, (int, float)):
        constant = float(spec)
        return lambda step: jnp.full((), constant, jnp.float32)
    if not isinstance(spec, str):
        raise ValueError(f"bad schedule {spec!r} of type {type(spec).__name__}: "
                         f"expected {_ALLOWED}")
    text = spec.strip()
    try:
        constant = float(text)
    except ValueError:
        pass
    else:
        return lambda step: jnp.full((), constant, jnp.float32)
    if match := _LINEAR.fullmatch(text):
        init, final, duration = (float(g) for g in match.groups())
        if duration <= 0:
            raise ValueError(f"bad schedule {spec!r}: duration must be > 0")

        def linear(step: jax.Array) -> jax.Array:
            return _ramp(jnp.asarray(step, jnp.float32), init, final, duration)
        return linear
    if match := _STEP_LINEAR.fullmatch(text):
        init, final1, duration1, final2, duration2 = (float(g) for g in match.groups())
        if duration1 <= 0 or duration2 <= 0:
            raise ValueError(f"bad schedule {spec!r}: durations must be > 0")

        def step_linear(step: jax.Array) -> jax.Array:
            step = jnp.asarray(step, jnp.float32)
            return jnp.where(step <= duration1, _ramp(step, init, final1, duration1),
                             _ramp(step - duration1, final1, final2, duration2))
        return step_linear
    raise ValueError(f"bad schedule {spec!r}: expected {_ALLOWED}")
