"""Hydra structured configs: the schema every composed config is validated against.

Typed dataclasses (registered in Hydra's ConfigStore) make a typo or a wrong type an error at
composition time. Agent configs are mirrored from each agent's own frozen config dataclass, so
the field list lives in one place (the agent module) and Hydra just validates against it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import typing
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from rl.loop import LoopConfig

# agent name -> (module, config class, agent class); the loop only sees the Agent protocol
AGENTS: dict[str, tuple[str, str, str]] = {
    "drqv2": ("rl.agents.drqv2", "DrQV2Config", "DrQV2Agent"),
    "imagination": ("rl.agents.imagination", "ImaginationConfig", "ImaginationAgent"),
    "rainbow": ("rl.agents.rainbow", "RainbowConfig", "RainbowAgent"),
}


@dataclasses.dataclass
class EnvConfig:
    name: str = "toy/reach"
    size: Optional[int] = None               # None: the suite default (dmc 84, atari 84, toy 32)
    action_repeat: Optional[int] = None      # None: the convention's per-task default
    convention: Optional[str] = None         # None: suite default; dmc drqv2|planet, atari spr|storm
    num_envs: int = 1
    parallel: bool = False                   # envs in subprocesses
    workers: Optional[int] = None            # subprocesses when parallel (None: one per env)
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)  # suite-specific options


@dataclasses.dataclass
class LoggerConfig:
    wandb_mode: str = "offline"              # offline | online | disabled
    project: str = "pixel-mbrl"
    entity: Optional[str] = None


def _mirror_type(tp: Any) -> Any:
    """Types OmegaConf validates: tuples become lists, nested dataclasses are mirrored."""
    origin = typing.get_origin(tp)
    if origin is dict:
        key, value = typing.get_args(tp) or (str, Any)
        return Dict[key, _mirror_type(value)]
    if origin is tuple:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return List[_mirror_type(args[0]) if args else Any]
    if origin is typing.Union:
        args = typing.get_args(tp)
        if type(None) in args and len(args) == 2:
            return Optional[_mirror_type(next(a for a in args if a is not type(None)))]
        return Any
    if dataclasses.is_dataclass(tp):
        return mirror(tp)
    return tp


_MIRRORS: dict[type, type] = {}


def mirror(cls: type, name: str | None = None) -> type:
    """A mutable Hydra node with ``cls``'s fields and defaults (plus ``name`` when given)."""
    if cls in _MIRRORS and name is None:
        return _MIRRORS[cls]
    hints = typing.get_type_hints(cls)
    fields = [] if name is None else [("name", str, dataclasses.field(default=name))]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, tuple):
            default = list(default)
        if hints[f.name] is Any and dataclasses.is_dataclass(default):
            # A slot for any config with a name (the world model): left empty, so whichever
            # group option fills it brings its own schema; an empty slot keeps the Python default.
            field = dataclasses.field(default=None)
        elif _is_named_configs(hints[f.name], default):
            field = dataclasses.field(default_factory=dict)   # filled by objective=[...]
        elif dataclasses.is_dataclass(default) or isinstance(default, (list, dict)):
            value = default
            field = dataclasses.field(default_factory=lambda v=value: _node_default(v))
        else:
            field = dataclasses.field(default=default)
        fields.append((f.name, _mirror_type(hints[f.name]), field))
    node = dataclasses.make_dataclass(f"{cls.__name__}Node", fields)
    if name is None:
        _MIRRORS[cls] = node
    return node


def _node_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        node_cls = mirror(type(value))
        return node_cls(**{f.name: _node_default(getattr(value, f.name))
                           for f in dataclasses.fields(value)})
    if isinstance(value, tuple):
        return [_node_default(v) for v in value]
    return value


def _from_node(cls: type, node: Any) -> Any:
    """Builds the agent's own frozen config from a validated Hydra node."""
    hints = typing.get_type_hints(cls)
    extra = {"name"}
    if isinstance(node, (dict, DictConfig)):  # `+key=value` can append past the schema
        unknown = sorted(set(node) - {f.name for f in dataclasses.fields(cls)} - extra)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; valid: "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if isinstance(node, (dict, DictConfig)) and f.name not in node:
            continue   # a partial node: the field's default
        value = node[f.name] if isinstance(node, (dict, DictConfig)) else getattr(node, f.name)
        tp = hints[f.name]
        if tp is Any and value is None and f.default_factory is not dataclasses.MISSING:
            continue   # an empty slot: the dataclass default
        if f.name == "modules":   # an agent config's module slots (rl.modules registry)
            value = module_configs(value)
        elif dataclasses.is_dataclass(tp):
            value = _from_node(tp, value)
        elif f.name == OBJECTIVES:
            value = objective_configs(value)
        elif tp is Any and isinstance(value, DictConfig) and "name" in value:
            value = _from_node(named_config_class(f.name, value.name), value)
        elif typing.get_origin(tp) is tuple:
            value = tuple(value)
        elif isinstance(value, DictConfig):
            value = OmegaConf.to_container(value)
        kwargs[f.name] = value
    return cls(**kwargs)


@dataclasses.dataclass
class Config:
    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    agent: Any = MISSING
    loop: Any = dataclasses.field(default_factory=lambda: mirror(LoopConfig)())
    logger: LoggerConfig = dataclasses.field(default_factory=LoggerConfig)
    seed: int = 1
    num_seeds: int = 1                       # independent copies vmapped in this one process
    resume: Optional[str] = None             # a run directory to continue
    run_dir: str = "."
    device: str = "auto"                     # auto | cpu | gpu
    # several processes on one GPU (hydra/launcher=parallel): allocate device memory on demand
    # instead of preallocating 75% of it per process (XLA_PYTHON_CLIENT_PREALLOCATE=false)
    share_device: bool = False


def agent_class(name: str) -> tuple[type, type]:
    if name not in AGENTS:
        raise ValueError(f"agent.name={name!r}; valid agents: {sorted(AGENTS)}")
    module_name, cfg_name, agent_name = AGENTS[name]
    module = importlib.import_module(module_name)
    return getattr(module, cfg_name), getattr(module, agent_name)


def objective_config_class(name: str) -> type:
    import representations

    return representations.get(name).Config


def world_model_config_class(name: str) -> type:
    import world_models

    return world_models.get(name).Config


def named_config_class(field: str, name: str) -> type:
    """The config class of a slot filled by a registry name (``world_model.name``)."""
    return world_model_config_class(name) if field == "world_model" \
        else objective_config_class(name)


# ---- objectives: ``agent.objectives.<slot>``, one per ``conf/objective`` option --------------
OBJECTIVES = "objectives"


def _is_named_configs(tp: Any, default: Any) -> bool:
    """A ``dict[str, Any]`` field whose default holds configs (the objective list)."""
    return (typing.get_origin(tp) is dict and typing.get_args(tp)[1:] == (Any,)
            and isinstance(default, dict)
            and all(dataclasses.is_dataclass(v) for v in default.values()))


def objective_configs(node: Any) -> dict[str, Any]:
    """``{slot: objective config}`` in composition order, each by its registry ``name``."""
    configs = {}
    for slot, entry in (node or {}).items():
        name = entry.get("name") if isinstance(entry, (dict, DictConfig)) else None
        if name is None:
            raise ValueError(f"agent.objectives.{slot} has no 'name': select objectives with "
                             f"objective=<name> or objective=[a,b] (a preset that sets fields "
                             f"of an objective it does not select leaves such a slot)")
        configs[str(slot)] = _from_node(objective_config_class(name), entry)
    return configs


def module_configs(node: Any) -> dict[str, Any]:
    """``agent.modules`` ({name: node}) as the modules' own configs (``rl.modules`` registry)."""
    import rl.modules

    return {key: _from_node(rl.modules.get(value["name"]).Config, value)
            for key, value in (node or {}).items()}


def register_modules(cs: ConfigStore) -> None:
    """A schema per registered module (``conf/module/<name>.yaml`` extends it)."""
    import rl.modules

    for name in rl.modules.names():
        cs.store(group="module", name=f"{name}_schema", node=mirror(rl.modules.get(name).Config))


def register() -> None:
    import representations
    import world_models

    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    for name in representations.names():
        cs.store(group="objective", name=f"{name}_schema", node=mirror(objective_config_class(name)))
    for name in world_models.names():
        cs.store(group="world_model", name=f"{name}_schema",
                 node=mirror(world_model_config_class(name)))
    for name in AGENTS:
        cfg_cls, _ = agent_class(name)
        cs.store(group="agent", name=f"{name}_schema", node=mirror(cfg_cls, name))
    register_modules(cs)
    OmegaConf.register_new_resolver("slug", lambda s: str(s).replace("/", "-"), replace=True)
    OmegaConf.register_new_resolver("if_null", lambda a, b: b if a is None else a, replace=True)


def agent_config(cfg: DictConfig) -> Any:
    cfg_cls, _ = agent_class(cfg.agent.name)
    return _from_node(cfg_cls, cfg.agent)


def loop_config(cfg: DictConfig) -> LoopConfig:
    return _from_node(LoopConfig, cfg.loop)


def replay_capacity(cfg: DictConfig, action_repeat: int) -> int:
    """The configured capacity, cut to what the run's frame budget can fill (so short runs do
    not allocate or checkpoint a 1M-slot buffer). Fixed at the start: a resumed run that gets
    a larger ``loop.frames`` keeps this capacity and the ring wraps."""
    num_envs = cfg.env.num_envs
    fillable = (cfg.loop.frames // action_repeat // num_envs + 1) * num_envs
    return min(cfg.loop.replay_capacity, fillable)


def fingerprint(cfg: DictConfig) -> str:
    """Hash of what decides the shapes of the checkpointed state (env, agent, replay)."""
    parts = {"env": OmegaConf.to_container(cfg.env), "agent": OmegaConf.to_container(cfg.agent),
             "replay": cfg.loop.replay_capacity, "num_seeds": cfg.num_seeds}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
