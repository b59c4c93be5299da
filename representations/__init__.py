"""Representation objectives: losses on latents, one registry, weighted by ``loss_scales``.

    cls = representations.get("reconstruction")      # the objective class; cls.Config its config
    objective = cls(cls.Config(), world_model)
"""
from __future__ import annotations

from representations.base import (Needs, Objective, ObjectiveBase, ObjectiveInputs,
                                  check_loss_scales, weigh)
from representations.reconstruction import ReconstructionConfig, ReconstructionObjective
from representations.repo import RePoConfig, RePoObjective
from representations.spr import SPRConfig, SPRObjective
from representations.taco import TacoConfig, TacoObjective
from rl.core.registry import Registry

_REGISTRY = Registry("objective")
# register(name, cls): cls(config, world_model), with cls.Config; get(name); names()
register, unregister = _REGISTRY.register, _REGISTRY.unregister
get, names = _REGISTRY.get, _REGISTRY.names

register("reconstruction", ReconstructionObjective)
register("repo", RePoObjective)
register("spr", SPRObjective)
register("taco", TacoObjective)

__all__ = ["Needs", "Objective", "ObjectiveBase", "ObjectiveInputs", "check_loss_scales",
           "weigh", "register", "unregister", "get", "names", "ReconstructionConfig",
           "ReconstructionObjective", "TacoConfig", "TacoObjective", "RePoConfig",
           "RePoObjective", "SPRConfig", "SPRObjective"]
