"""A name -> class registry with clear errors (objectives, world models, modules).

Plugins: ``world_models`` and ``representations`` implement protocols that ``rl`` defines
(``rl.core.world_model``, ``rl.core.objective``) and register their classes when imported.
``rl`` never imports them: the packages to load are named by the ``pixel_mbrl.plugins`` entry
points (``pyproject.toml``), loaded on the first lookup that misses. A package of your own
registers the same way: import it, or declare it under that entry-point group.
"""
from __future__ import annotations

from importlib import metadata
from typing import Any

PLUGIN_GROUP = "pixel_mbrl.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import every package named by a ``pixel_mbrl.plugins`` entry point (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True   # before loading: a plugin's own lookups must not recurse
    for entry in metadata.entry_points(group=PLUGIN_GROUP):
        entry.load()


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
            load_plugins()
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {self.names()}")
        return self._entries[name]

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)
