"""Representation objectives: losses on latents, one registry, weighted by ``loss_scales``.

    cls = representations.get("reconstruction")      # the objective class; cls.Config its config
    objective = cls(cls.Config(), host)               # host: the world model or the agent

Every module of this package is imported here, and each registers its objectives itself
(``rl.core.objective.register``): adding an objective is adding one file.
"""
from __future__ import annotations

import importlib
import pkgutil

from rl.core.objective import (Needs, Objective, ObjectiveBase, ObjectiveInputs,
                                  check_loss_scales, get, names, register, unregister, weigh)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from representations.reconstruction import ReconstructionConfig, ReconstructionObjective  # noqa: E402
from representations.repo import RePoConfig, RePoObjective  # noqa: E402
from representations.spr import SPRConfig, SPRObjective  # noqa: E402
from representations.taco import TacoConfig, TacoObjective  # noqa: E402

__all__ = ["Needs", "Objective", "ObjectiveBase", "ObjectiveInputs", "check_loss_scales",
           "weigh", "register", "unregister", "get", "names", "ReconstructionConfig",
           "ReconstructionObjective", "TacoConfig", "TacoObjective", "RePoConfig",
           "RePoObjective", "SPRConfig", "SPRObjective"]
