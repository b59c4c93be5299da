"""Config composition: every env/agent preset composes, and bad input is refused clearly."""
import pathlib

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from experiments import config as config_lib
from wandb_files import wandb_run_record

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


# ---- the resolved run config ------------------------------------------------------------------
def test_the_run_config_is_frozen(tmp_path):
    import dataclasses

    run = config_lib.resolve(_compose("env=toy/reach", f"run_dir={tmp_path}"))
    for assign in (lambda: setattr(run, "seed", 2), lambda: setattr(run, "num_seeds", 3),
                   lambda: setattr(run.env, "num_envs", 4),
                   lambda: setattr(run.loop, "replay_capacity", 10),
                   lambda: setattr(run.agent, "lr", 1.0),
                   lambda: setattr(run.logger, "wandb_mode", "online")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            assign()


@pytest.mark.parametrize("num_seeds", [1, 3])
def test_derived_values_are_resolved_once(tmp_path, num_seeds):
    from rl.loop import LoopConfig

    cfg = _compose("env=toy/reach", "agent=drqv2", "env.num_envs=2", "loop.eval_envs=5",
                   "loop.frames=1000", "loop.replay_capacity=100000", f"num_seeds={num_seeds}",
                   "seed=7", f"run_dir={tmp_path}")
    run = config_lib.resolve(cfg)
    assert cfg.loop.replay_capacity == 100_000          # the composed config is left alone
    assert isinstance(run.loop, LoopConfig) and type(run.agent).__name__ == "DrQV2Config"
    assert run.action_repeat == 1                        # toy's default
    # per seed: cut to what 1000 frames of 2 envs fill, (1000 // 2 + 1) * 2 slots
    assert run.loop.replay_capacity == 1002
    assert run.replay_capacity == 1002 * num_seeds
    seeds = run.seeds
    assert (seeds.num_seeds, seeds.envs_per_seed, seeds.eval_envs_per_seed) == (num_seeds, 2, 5)
    assert (seeds.total_envs, seeds.total_eval_envs) == (2 * num_seeds, 5 * num_seeds)
    assert seeds.stacked == (num_seeds > 1) and seeds.priority_groups == num_seeds
    assert (run.seed, run.eval_seed) == (7, 7 + config_lib.EVAL_SEED_OFFSET)
    # the fingerprint and the saved YAML are those of the config with the capacity it allocated
    saved = OmegaConf.create(run.yaml)
    assert saved.loop.replay_capacity == 1002 and saved.num_seeds == num_seeds
    assert run.fingerprint == config_lib.fingerprint(saved)
    assert run.to_dict()["env"]["num_envs"] == 2


def test_resolution_of_a_resumed_run_keeps_its_capacity(tmp_path):
    run = config_lib.resolve(_compose("env=toy/reach", "loop.frames=100", f"run_dir={tmp_path}"))
    run.save(tmp_path / "config.yaml")
    resumed = config_lib.resolve(_compose(f"resume={tmp_path}"), ["loop.frames=5000"])
    assert resumed.loop.frames == 5000 and resumed.resume == str(tmp_path)
    assert resumed.loop.replay_capacity == run.loop.replay_capacity == 101   # not re-cut
    assert resumed.fingerprint == run.fingerprint
    assert config_lib.resolve_saved(config_lib.saved_config(tmp_path, "x")) == run


def test_action_repeat_is_resolved_without_making_the_env(tmp_path):
    from rl.envs import registry

    for repeat, extra in ((1, []), (3, ["env.action_repeat=3"])):
        cfg = _compose("env=toy/reach", f"run_dir={tmp_path}", *extra)
        assert config_lib.resolve(cfg).action_repeat == repeat
    assert registry.action_repeat("dmc/walker_walk") == 2
    assert registry.action_repeat("dmc/cheetah_run", convention="planet") == 4
    assert registry.action_repeat("dmc/cartpole_swingup", convention="planet") == 8
    # experiment=dreamer_dmc: the Dreamer paper's repeat 2 on every task; PlaNet's on request
    for task, planet in (("cartpole_swingup", 8), ("cheetah_run", 4), ("walker_walk", 2)):
        cfg = _compose("experiment=dreamer_dmc", f"env=dmc/{task}", f"run_dir={tmp_path}")
        assert config_lib.resolve(cfg).action_repeat == 2
        cfg = _compose("experiment=dreamer_dmc", f"env=dmc/{task}", "env.convention=planet",
                       f"run_dir={tmp_path}")
        assert config_lib.resolve(cfg).action_repeat == planet
    assert registry.action_repeat("atari/Pong") == 4
    assert registry.action_repeat("atari/Pong", frame_skip=2) == 2
    assert registry.action_repeat("adroit/door") == 2
    assert registry.make("toy/reach").spec.action_repeat == registry.action_repeat("toy/reach")


def test_the_run_config_refuses_bad_values():
    with pytest.raises(ValueError, match="device='tpu'"):
        config_lib.resolve(_compose("device=tpu"))
    with pytest.raises(ValueError, match="num_seeds=0; must be >= 1"):
        config_lib.resolve(_compose("num_seeds=0"))


@pytest.mark.parametrize("num_seeds", [1, 3])
def test_one_logger_per_seed(tmp_path, num_seeds):
    from experiments.train import make_loggers

    run = config_lib.resolve(_compose(f"num_seeds={num_seeds}", "logger.wandb_mode=disabled",
                                      f"run_dir={tmp_path}"))
    loggers = make_loggers(run, tmp_path, None)
    try:
        assert len(loggers) == num_seeds
        dirs = [logger.run_dir for logger in loggers]
        assert dirs == ([tmp_path] if num_seeds == 1
                        else [tmp_path / f"seed_{k}" for k in range(num_seeds)])
    finally:
        for logger in loggers:
            logger.close()


def test_the_seeds_of_a_sweep_share_one_wandb_group_and_carry_tags(tmp_path):
    """What ``-m seed=1,2`` gives: two runs, one W&B group (experiment-env-method), tags for
    method, env, suite, experiment and seed; ``logger.group/tags/name`` override them."""
    pytest.importorskip("wandb")
    from experiments.train import make_loggers

    records = []
    for seed in (1, 2):
        cfg = _compose("experiment=quickstart", f"seed={seed}", "logger.wandb_mode=offline",
                       "logger.tags=[mine]", f"run_dir={tmp_path / str(seed)}")
        cfg.experiment = "quickstart"          # what experiments.train records from Hydra
        run = config_lib.resolve(cfg)
        (logger,) = make_loggers(run, tmp_path / str(seed), None)
        logger.log(1, {"x": 1.0})
        logger.close()
        records.append(wandb_run_record(tmp_path / str(seed)))
    assert [r.run_group for r in records] == ["quickstart-toy-reach-drqv2"] * 2
    for seed, record in zip((1, 2), records):
        assert list(record.tags) == ["method:drqv2", "env:toy/reach", "suite:toy",
                                     "experiment:quickstart", f"seed:{seed}", "mine"]
        assert record.display_name == str(seed)
    named = config_lib.resolve(_compose("logger.group=g", "logger.name=n", "objective=taco",
                                        f"run_dir={tmp_path}"))
    assert named.wandb_group == "g" and named.logger.name == "n"
    assert named.method == "drqv2+taco" and named.wandb_group != records[0].run_group
