"""Config composition: every env/agent preset composes, and bad input is refused clearly."""
import pathlib

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from experiments import config as config_lib

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()


def _compose(*overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _options(group):
    root = CONF / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


@pytest.mark.parametrize("env", _options("env"))
def test_every_env_preset_names_a_known_env(env):
    from rl.envs import registry

    cfg = _compose(f"env={env}")
    suite, task = cfg.env.name.split("/", 1)
    assert suite in registry.SUITES
    assert cfg.env.name in registry.list_envs(suite)


@pytest.mark.parametrize("agent", _options("agent"))
def test_every_agent_preset_builds_its_config(agent):
    cfg = _compose(f"agent={agent}")
    agent_cfg = config_lib.agent_config(cfg)
    assert type(agent_cfg).__name__.endswith("Config")
    config_lib.loop_config(cfg).validate()


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_preset_composes(experiment):
    cfg = _compose(f"experiment={experiment}")
    config_lib.agent_config(cfg)
    config_lib.loop_config(cfg).validate()


def test_overrides_reach_the_agent_config():
    cfg = _compose("env=dmc/walker_walk", "agent=drqv2", "agent.lr=3e-4", "seed=7")
    assert cfg.env.name == "dmc/walker_walk" and cfg.seed == 7
    assert config_lib.agent_config(cfg).lr == pytest.approx(3e-4)


@pytest.mark.parametrize("override", ["agent.lrr=1", "loop.framez=3", "oops=1"])
def test_unknown_keys_are_errors(override):
    with pytest.raises(ConfigCompositionException):
        _compose(override)


def test_appended_agent_keys_are_refused_when_the_agent_is_built():
    with pytest.raises(ValueError, match="unknown DrQV2Config fields \\['lrr'\\]"):
        config_lib.agent_config(_compose("+agent.lrr=1"))


@pytest.mark.parametrize("override", ["agent.lr=abc", "loop.frames=many", "seed=1.5",
                                      "env.parallel=maybe"])
def test_wrong_types_are_errors(override):
    with pytest.raises(ConfigCompositionException) as info:
        _compose(override)
    assert override.split("=")[0] in str(info.value)


def test_unknown_group_option_lists_nothing_silently():
    with pytest.raises(MissingConfigException):
        _compose("env=dmc/walker_walkk")


def test_invalid_values_name_the_field():
    cfg = _compose("loop.update_every=0")
    with pytest.raises(ValueError, match="loop.update_every=0"):
        config_lib.loop_config(cfg).validate()
    cfg = _compose("loop.trace_steps=0")   # a trace of 0 iterations would never stop
    with pytest.raises(ValueError, match="loop.trace_steps=0; must be >= 1"):
        config_lib.loop_config(cfg).validate()
    cfg = _compose("agent.batch_size=-1")
    with pytest.raises(ValueError, match="batch_size"):
        config_lib.agent_config(cfg)


def test_fingerprint_tracks_state_shapes_only():
    a = _compose("env=dmc/walker_walk")
    b = _compose("env=dmc/walker_walk", "loop.frames=5", "logger.wandb_mode=disabled")
    c = _compose("env=dmc/walker_walk", "agent.hidden_dim=64")
    assert config_lib.fingerprint(a) == config_lib.fingerprint(b)
    assert config_lib.fingerprint(a) != config_lib.fingerprint(c)
    assert OmegaConf.is_config(a)


def test_taco_presets_and_objective_on_drqv2():
    from representations.taco import TacoConfig
    taco = config_lib.agent_config(_compose("experiment=taco_dmc"))
    assert list(taco.objectives) == ["taco"] and isinstance(taco.objectives["taco"], TacoConfig)
    assert (taco.batch_size, taco.objectives["taco"].horizon) == (1024, 3)
    control = config_lib.agent_config(_compose("experiment=taco_dmc_drqv2"))
    assert control.objectives == {} and control.batch_size == 256
    assert control.stddev_schedule == taco.stddev_schedule
    on_drqv2 = config_lib.agent_config(_compose("agent=drqv2", "objective=[taco]",
                                                "agent.objectives.taco.horizon=5"))
    assert on_drqv2.objectives["taco"].horizon == 5
    with pytest.raises(Exception, match="horizonn"):
        _compose("agent=drqv2", "objective=taco", "agent.objectives.taco.horizonn=5")


def test_taco_objective_on_a_world_model_composes():
    on_wm = config_lib.agent_config(_compose("agent=imagination", "objective=[repo,taco]",
                                             "agent.objectives.taco.loss_scales.curl=0"))
    assert list(on_wm.objectives) == ["repo", "taco"]
    assert on_wm.objectives["repo"].target_kl == 3.0
