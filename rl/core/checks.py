"""Tiny checks with one message shape, ``<owner>.<field>=<value>; must be <what>``, for the
config dataclasses' own validation (``__post_init__``, ``validate``) and ``experiments.config``.

``owner`` is the config's name as a user meets it (``"ImaginationConfig"``, ``"loop"``, ``"env"``).
"""
from __future__ import annotations

from typing import Any, Iterable


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def fail(owner: str, name: str, value: Any, must: str) -> ValueError:
    return ValueError(f"{owner}.{name}={value!r}; must be {must}")


def positive(owner: str, name: str, value: Any) -> None:
    """``value > 0`` (a number, not a bool)."""
    if not _number(value) or not value > 0:
        raise fail(owner, name, value, "> 0")


def non_negative(owner: str, name: str, value: Any) -> None:
    if not _number(value) or not value >= 0:
        raise fail(owner, name, value, ">= 0")


def at_least(owner: str, name: str, value: Any, low: int) -> None:
    """An int ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise fail(owner, name, value, f"an int >= {low}")


def in_interval(owner: str, name: str, value: Any, low: float, high: float, *,
                open_low: bool = False, open_high: bool = False) -> None:
    """``value`` in ``[low, high]``, either end open on request."""
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    if not _number(value) or not (above and below):
        bounds = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise fail(owner, name, value, f"in {bounds}")


def one_of(owner: str, name: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{owner}.{name}={value!r}; valid: {allowed}")


def weights(owner: str, name: str, scales: Any) -> None:
    """A map of loss weights (``loss_scales``): every weight a number >= 0."""
    for key, value in dict(scales).items():
        if not _number(value) or not value >= 0:
            raise fail(owner, f"{name}.{key}", value, ">= 0 (a loss weight)")
