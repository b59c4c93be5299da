"""The run config: the Hydra schema a composed config is validated against, and ``resolve``,
which turns the composed config into one frozen ``RunConfig`` right after composition.

Typed dataclasses (registered in Hydra's ConfigStore) make a typo or a wrong type an error at
composition time. Every schema node is mirrored from a frozen config dataclass (the env's and
the logger's here, each agent's own, ``rl.loop.LoopConfig``), so a field list lives in one
place and Hydra just validates against it. ``RunConfig`` holds those frozen dataclasses and every
derived value (the resolved action repeat, the replay capacity cut to the frame budget, the
per-seed layout, the eval seed, the checkpoint fingerprint), computed once in ``resolve``;
experiments.train, experiments.align and the Trainer read it and never the DictConfig.

``resolve`` is also where bad input stops, before an env is made or anything compiles: each
config checks its own fields (its constructor or ``validate``), ``EnvConfig.validate`` describes
the env offline (``rl.envs.registry.describe``: pixel shape, discrete actions, the MuJoCo GL
library), and the agent's ``validate(env)`` checks what it will be given (action type, image
size, objectives, modules, world model). ``tests/test_bad_config.py`` lists what is refused.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib
import json
import pathlib
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from rl import sharding
from rl.agents.seed_stack import SeedLayout
from rl.core import checks
from rl.loop import LoopConfig

# agent name -> (module, config class, agent class); the loop only sees the Agent protocol
AGENTS: dict[str, tuple[str, str, str]] = {
    "drqv2": ("rl.agents.drqv2", "DrQV2Config", "DrQV2Agent"),
    "imagination": ("rl.agents.imagination", "ImaginationConfig", "ImaginationAgent"),
    "rainbow": ("rl.agents.rainbow", "RainbowConfig", "RainbowAgent"),
}


DEVICES = ("auto", "cpu", "gpu")
WANDB_MODES = ("offline", "online", "disabled")
EVAL_SEED_OFFSET = 1_000_003             # eval envs are seeded apart from the train envs


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    name: str = "toy/reach"
    size: Optional[int] = None               # None: the suite default (dmc 84, atari 84, toy 32)
    action_repeat: Optional[int] = None      # None: the convention's per-task default
    convention: Optional[str] = None         # None: suite default; dmc drqv2|planet|dreamer, atari spr|storm
    num_envs: int = 1
    parallel: bool = False                   # envs in subprocesses
    workers: Optional[int] = None            # subprocesses when parallel (None: one per env)
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)  # suite-specific options

    def maker(self, **kwargs: Any) -> Callable[[], Any]:
        """A picklable maker of this env, its ``kwargs`` updated by ``kwargs``."""
        from rl.envs import registry

        return functools.partial(registry.make, self.name, size=self.size,
                                 action_repeat=self.action_repeat, convention=self.convention,
                                 **{**self.kwargs, **kwargs})

    def validate(self) -> Any:
        """Checks this env's fields without making it; returns what the agents' configs check
        against (``rl.envs.registry.EnvDescription``: pixel shape, discrete actions)."""
        from rl.envs import registry

        checks.at_least("env", "num_envs", self.num_envs, 1)
        if self.workers is not None:
            checks.at_least("env", "workers", self.workers, 1)
        return registry.describe(self.name, size=self.size, action_repeat=self.action_repeat,
                                 convention=self.convention, **self.kwargs)


@dataclasses.dataclass(frozen=True)
class LoggerConfig:
    wandb_mode: str = "offline"              # offline | online | disabled
    project: str = "pixel-mbrl"
    entity: Optional[str] = None
    # None: <experiment>-<env>-<method>, so the seeds of a sweep share one W&B group
    group: Optional[str] = None
    tags: Tuple[str, ...] = ()               # added to the default tags (method, env, suite, ...)
    name: Optional[str] = None               # None: the run directory's name

    def validate(self) -> None:
        checks.one_of("logger", "wandb_mode", self.wandb_mode, WANDB_MODES)


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


def _is_named_configs(tp: Any, default: Any) -> bool:
    """A ``dict[str, Any]`` field whose default holds configs (the objective list)."""
    return (typing.get_origin(tp) is dict and typing.get_args(tp)[1:] == (Any,)
            and isinstance(default, dict)
            and all(dataclasses.is_dataclass(v) for v in default.values()))


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


_EnvNode = mirror(EnvConfig)
_LoggerNode = mirror(LoggerConfig)


@dataclasses.dataclass
class Config:
    """The schema of a composed config (``conf/config.yaml``)."""
    env: _EnvNode = dataclasses.field(default_factory=_EnvNode)
    agent: Any = MISSING
    loop: Any = dataclasses.field(default_factory=lambda: mirror(LoopConfig)())
    logger: _LoggerNode = dataclasses.field(default_factory=_LoggerNode)
    seed: int = 1
    # the experiment= preset (recorded by experiments.train from Hydra's choices)
    experiment: Optional[str] = None
    num_seeds: int = 1                       # independent copies vmapped in this one process
    resume: Optional[str] = None             # a run directory to continue, or auto (resolve)
    run_dir: str = "."
    device: str = "auto"                     # auto | cpu | gpu
    # several processes on one GPU (hydra/launcher=parallel): allocate device memory on demand
    # instead of preallocating 75% of it per process (XLA_PYTHON_CLIENT_PREALLOCATE=false)
    share_device: bool = False
    # several local GPUs (rl/sharding.py): 1 | auto (all) | N; parallel: auto (seeds when
    # num_seeds > 1, else data) | seeds (copies spread over devices) | data (batch split)
    devices: str = "1"
    parallel: str = "auto"


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
    # hydra.run.dir: the run being resumed, else a new one (resume=auto runs in the default dir)
    OmegaConf.register_new_resolver("resume_dir", lambda a, b: b if a in (None, "auto") else a,
                                    replace=True)


def agent_config(cfg: DictConfig) -> Any:
    cfg_cls, _ = agent_class(cfg.agent.name)
    if "world_model" in cfg.agent and "world_model" not in _field_names(cfg_cls):
        hosts = [n for n in AGENTS if "world_model" in _field_names(agent_class(n)[0])]
        raise ValueError(f"agent={cfg.agent.name} has no world model (agent.world_model); "
                         f"world models run on agent={'|'.join(hosts)}")
    return _from_node(cfg_cls, cfg.agent)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def loop_config(cfg: DictConfig) -> LoopConfig:
    return _from_node(LoopConfig, cfg.loop)


def fillable_capacity(capacity: int, frames: int, action_repeat: int, num_envs: int) -> int:
    """``capacity`` cut to what a frame budget can fill (so short runs do not allocate or
    checkpoint a 1M-slot buffer); all counts per seed."""
    fillable = (frames // action_repeat // num_envs + 1) * num_envs
    return min(capacity, fillable)


def fingerprint(cfg: DictConfig) -> str:
    """Hash of what decides the shapes of the checkpointed state (env, agent, replay)."""
    parts = {"env": OmegaConf.to_container(cfg.env), "agent": OmegaConf.to_container(cfg.agent),
             "replay": cfg.loop.replay_capacity, "num_seeds": cfg.num_seeds}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# ---- the resolved run -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run, resolved once from its composed config (``resolve``); read-only from then on.

    Counts are per seed, as in the config (``env.num_envs``, ``loop.eval_envs``,
    ``loop.replay_capacity``); ``seeds`` lays the copies out over the envs, the replay, the
    priority groups and the loggers.
    """
    env: EnvConfig
    agent_name: str
    agent: Any                 # the agent's own frozen config (DrQV2Config, ...)
    loop: LoopConfig           # replay_capacity: as allocated (cut to the frame budget)
    logger: LoggerConfig
    seed: int
    experiment: Optional[str]  # the experiment= preset, if any
    num_seeds: int
    resume: Optional[str]      # the run directory being continued (absolute)
    run_dir: str
    device: str                # auto | cpu | gpu
    share_device: bool
    action_repeat: int         # env.action_repeat, or the suite's/convention's default
    fingerprint: str           # of the checkpointed state's shapes (``fingerprint``)
    yaml: str = dataclasses.field(repr=False)   # <run_dir>/config.yaml: the resolved config
    devices: str = "1"         # 1 | auto | N local devices (rl.sharding.make_parallel)
    parallel: str = "auto"     # auto | seeds | data

    @property
    def seeds(self) -> SeedLayout:
        """Which envs, eval envs, replay rows, priority group and logger are each copy's."""
        return SeedLayout(self.num_seeds, self.env.num_envs, self.loop.eval_envs)

    @property
    def eval_seed(self) -> int:
        """The eval envs' seed (the train envs take ``seed``)."""
        return self.seed + EVAL_SEED_OFFSET

    @property
    def replay_capacity(self) -> int:
        """Transitions of the one replay shared by every copy."""
        return self.seeds.replay_capacity(self.loop.replay_capacity)

    def agent_class(self) -> type:
        return agent_class(self.agent_name)[1]

    @property
    def suite(self) -> str:
        """``dmc``, ``atari``, ``adroit`` or ``toy``: the env name's prefix."""
        return self.env.name.split("/", 1)[0]

    @property
    def method(self) -> str:
        """The agent plus what is switched on: ``drqv2``, ``drqv2+taco``, ``rainbow+spr+drm``."""
        return method_name(self.to_dict())

    @property
    def wandb_group(self) -> str:
        """The seeds of one experiment, env and method share a group (``logger.group``)."""
        if self.logger.group:
            return self.logger.group
        return "-".join([self.experiment or "none", self.env.name.replace("/", "-"), self.method])

    def wandb_tags(self, seed_index: int = 0) -> list[str]:
        """method, env, suite, experiment and seed (and the vmapped copy), then ``logger.tags``."""
        tags = [f"method:{self.method}", f"env:{self.env.name}", f"suite:{self.suite}",
                f"experiment:{self.experiment or 'none'}", f"seed:{self.seed}"]
        if self.num_seeds > 1:
            tags.append(f"copy:{seed_index}")
        return [t[:64] for t in tags + list(self.logger.tags)]   # W&B's limit per tag

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain containers (what the loggers record)."""
        return OmegaConf.to_container(OmegaConf.create(self.yaml))

    def save(self, path: str | pathlib.Path) -> None:
        pathlib.Path(path).write_text(self.yaml, encoding="utf-8")


def check_resume(resume: Optional[str]) -> None:
    """``resume`` must be a run directory (one with the ``config.yaml`` experiments.train
    writes) or the literal ``"auto"``."""
    if not resume or resume == "auto":
        return
    run_dir = pathlib.Path(resume).absolute()
    why = ("it does not exist" if not run_dir.exists() else
           "it is not a directory" if not run_dir.is_dir() else None)
    if why is not None:
        raise FileNotFoundError(f"resume={resume!r} is not a run directory (no config.yaml in "
                                f"{run_dir}: {why}); pass the directory of a run started by "
                                f"experiments.train, or resume=auto")


def method_name(cfg: Mapping[str, Any]) -> str:
    """``agent+objective...+module...`` of a (saved) config as plain containers, e.g.
    ``drqv2+taco+drm``: the method's name in W&B groups, tags and tables."""
    agent = cfg.get("agent") or {}
    objectives = agent.get("objectives") or {}
    if isinstance(agent.get("objective"), dict):   # runs from before the objective lists
        objectives = {"objective": agent["objective"]}
    modules = agent.get("modules") or {}
    names = [o["name"] for group in (objectives, modules) for o in group.values()
             if isinstance(o, dict) and o.get("name")]
    return "+".join([agent.get("name", "?"), *names])


def saved_config(run_dir: str | pathlib.Path, label: str) -> DictConfig:
    """A run's saved ``config.yaml`` under the schema; ``label`` names the argument that
    pointed at ``run_dir`` in the error for a directory without one."""
    run_dir = pathlib.Path(run_dir).absolute()
    saved = run_dir / "config.yaml"
    if not saved.exists():
        raise FileNotFoundError(f"{label}: no config.yaml in {run_dir}; pass the directory of "
                                "a run started by experiments.train")
    return OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(saved))


def load_resumed(cfg: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """The run's saved config, plus this command's overrides (e.g. a larger ``loop.frames``)."""
    run_dir = pathlib.Path(cfg.resume).absolute()
    resumed = saved_config(run_dir, f"resume={cfg.resume!r}")
    extra = [o for o in overrides if not o.startswith(("resume=", "hydra."))]
    if extra:
        resumed = OmegaConf.merge(resumed, OmegaConf.from_dotlist(extra))
    resumed.resume = str(run_dir)
    resumed.run_dir = str(run_dir)
    return resumed


def resolve(cfg: DictConfig, overrides: Sequence[str] = ()) -> RunConfig:
    """The composed config as a ``RunConfig``. With ``resume``: the saved config of that run
    plus ``overrides`` (the command line's ``key=value`` pairs); its replay keeps the capacity
    it was allocated (a resumed run that gets a larger ``loop.frames`` wraps its ring). ``cfg``
    itself is left as it is.

    ``resume=auto`` (a requeued SLURM job): resume ``run_dir`` if it holds a checkpoint, else
    start afresh there. A requeued job repeats its command line, whose overrides (config groups
    too) the saved config already holds, so they are not applied again."""
    check_resume(cfg.resume)
    if cfg.resume == "auto":
        from rl.preemption import has_checkpoint

        if has_checkpoint(cfg.run_dir):
            cfg = copy.deepcopy(cfg)
            cfg.resume = str(pathlib.Path(cfg.run_dir).absolute())
            return _resolved(load_resumed(cfg), fresh=False)
        cfg = copy.deepcopy(cfg)
        cfg.resume = None
    if cfg.resume:
        return _resolved(load_resumed(cfg, overrides), fresh=False)
    return _resolved(copy.deepcopy(cfg), fresh=True)


def resolve_saved(cfg: DictConfig) -> RunConfig:
    """A run's saved config (``saved_config``) as that run resolved it."""
    return _resolved(copy.deepcopy(cfg), fresh=False)


def _resolved(cfg: DictConfig, fresh: bool) -> RunConfig:
    from rl.envs import registry

    # Every check runs here, before an env is made or anything compiles: each config's own
    # fields in its constructor or ``validate``, then the agent against the env it will get.
    if cfg.device not in DEVICES:
        raise ValueError(f"device={cfg.device!r}; allowed: {', '.join(DEVICES)}")
    if cfg.num_seeds < 1:
        raise ValueError(f"num_seeds={cfg.num_seeds}; must be >= 1")
    sharding.check_config(cfg.devices, cfg.parallel, cfg.num_seeds)
    agent_cfg = agent_config(cfg)
    env = _from_node(EnvConfig, cfg.env)
    agent_cfg.validate(env.validate())
    # a resumed run's saved capacity is already cut to its frame budget
    loop_config(cfg).validate(batch_size=getattr(agent_cfg, "batch_size", None) if fresh
                              else None)
    _from_node(LoggerConfig, cfg.logger).validate()
    repeat = registry.action_repeat(env.name, env.action_repeat, env.convention, **env.kwargs)
    if fresh:   # the saved config records the replay actually allocated
        cfg.loop.replay_capacity = fillable_capacity(cfg.loop.replay_capacity, cfg.loop.frames,
                                                     repeat, env.num_envs)
    return RunConfig(env=env, agent_name=cfg.agent.name, agent=agent_cfg, loop=loop_config(cfg),
                     logger=_from_node(LoggerConfig, cfg.logger), seed=cfg.seed,
                     experiment=cfg.experiment, num_seeds=cfg.num_seeds, resume=cfg.resume, run_dir=cfg.run_dir,
                     device=cfg.device, share_device=cfg.share_device, action_repeat=repeat,
                     fingerprint=fingerprint(cfg), yaml=OmegaConf.to_yaml(cfg, resolve=True),
                     devices=str(cfg.devices), parallel=cfg.parallel)
