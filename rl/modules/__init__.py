"""Modules: plug-ins at fixed call sites of any agent (``module=[...]``); see ``rl.modules.base``.

    cls = rl.modules.get("toy")          # the module class; cls.Config its config
"""
from rl.modules.base import (CALL_SITES, ModuleBase, Modules, WeightInputs, check_configs,
                             check_host, declare_host, get, names, register)
from rl.modules.perturb import perturb, perturb_nets, reset_opt_states
from rl.modules.sgfd import SGFDConfig, SGFDModule
from rl.modules.toy import ToyConfig, ToyModule
from rl.modules.drm import DrMConfig, DrMModule
from rl.modules.empowerment import EmpowermentConfig, EmpowermentModule

register("toy", ToyModule)
register("drm", DrMModule)
register("empowerment", EmpowermentModule)
register("sgfd", SGFDModule)

__all__ = ["CALL_SITES", "ModuleBase", "Modules", "WeightInputs", "check_configs", "check_host", "declare_host",
           "get", "names", "register", "perturb", "perturb_nets", "reset_opt_states", "ToyConfig",
           "ToyModule", "DrMConfig", "DrMModule", "EmpowermentConfig", "EmpowermentModule",
           "SGFDConfig", "SGFDModule"]
