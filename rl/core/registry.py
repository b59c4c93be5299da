"""A name -> class registry with clear errors (modules; meant for objectives and world models)."""
from __future__ import annotations

from typing import Any


class Registry:
    """``register(name, cls)`` once per name, ``get(name)`` with the valid names in the error."""

    def __init__(self, kind: str) -> None:
        self.kind, self._items = kind, {}

    def register(self, name: str, item: Any) -> None:
        if self._items.get(name, item) is not item:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def get(self, name: str) -> Any:
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {self.names()}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)
