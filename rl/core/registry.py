"""A name -> class registry with clear errors (objectives, world models)."""
from __future__ import annotations

from typing import Any


class Registry:
    """``register(name, cls)``, ``get(name)`` (a ``ValueError`` lists the valid names), ``names()``.
    ``kind`` names the entries in messages ("objective", "world model")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, cls: Any) -> None:
        if name in self._entries and self._entries[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = cls

    def unregister(self, name: str) -> None:
        """Remove ``name`` (e.g. a test's entry, so that the registry lists stay the project's)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {self.names()}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)
