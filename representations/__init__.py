"""Representation objectives: losses on latents, one registry, weighted by ``loss_scales``.

    cls = representations.get("reconstruction")      # the objective class; cls.Config its config
    objective = cls(cls.Config(), world_model)
"""
from __future__ import annotations

from typing import Any

from representations.base import (Needs, Objective, ObjectiveBase, ObjectiveInputs,
                                  check_loss_scales, weigh)
from representations.reconstruction import ReconstructionConfig, ReconstructionObjective
from representations.repo import RePoConfig, RePoObjective
from representations.spr import SPRConfig, SPRObjective
from representations.taco import TacoConfig, TacoObjective

_REGISTRY: dict[str, Any] = {}


def register(name: str, objective_cls: Any) -> None:
    """Add an objective class (constructed as ``cls(config, world_model)``) under ``name``."""
    if name in _REGISTRY and _REGISTRY[name] is not objective_cls:
        raise ValueError(f"objective {name!r} is already registered")
    _REGISTRY[name] = objective_cls


def get(name: str) -> Any:
    """The objective class called ``name``; a clear error lists the valid names."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown objective {name!r}; valid: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


register("reconstruction", ReconstructionObjective)
register("repo", RePoObjective)
register("spr", SPRObjective)
register("taco", TacoObjective)

__all__ = ["Needs", "Objective", "ObjectiveBase", "ObjectiveInputs", "check_loss_scales",
           "weigh", "register", "get", "names", "ReconstructionConfig",
           "ReconstructionObjective", "TacoConfig", "TacoObjective", "RePoConfig",
           "RePoObjective", "SPRConfig", "SPRObjective"]
