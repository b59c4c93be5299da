"""Bad input is refused at start-up: composed through Hydra and resolved (``resolve``), each bad
configuration fails with a message naming the bad value and what is allowed, before any env is
made or anything is built or compiled."""
import pathlib

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from experiments import config as config_lib
from rl.envs import mujoco_render, registry

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()

RAINBOW_ATARI = ("agent=rainbow", "env=atari/Pong")
IMAGINATION = ("agent=imagination", "world_model=debug", "env.size=32")
STORM = ("agent=imagination", "world_model=storm_debug", "objective=[]")

# (overrides, regex the message must match); "{tmp}" is the test's tmp_path
BAD = [
    # ---- unknown names, with the known ones
    (["env.name=foo/bar"], r"unknown suite 'foo'.*valid suites: \['dmc', 'atari', 'adroit', 'toy'\]"),
    (["env.name=walker_walk"], r"env name 'walker_walk' must look like '<suite>/<task>'"),
    (["env.name=dmc/walker_walkk"], r"unknown DMC task 'walker_walkk'; valid tasks: \[.*'walker_walk'"),
    ([*RAINBOW_ATARI, "env.name=atari/Pongg"], r"unknown Atari game 'Pongg'.*Atari-100k games: \[.*'Pong'"),
    (["env.name=toy/reachh"], r"toy task='reachh' is not allowed; choose one of \['reach', 'reach_discrete'\]"),
    (["env.name=adroit/doorr"], r"adroit task='doorr' is not allowed; choose one of \[.*'door'"),
    (["agent=foo"], r"Could not find 'agent/foo'[\s\S]*drqv2[\s\S]*imagination[\s\S]*rainbow"),
    (["agent.name=foo"], r"agent.name='foo'; valid agents: \['drqv2', 'imagination', 'rainbow'\]"),
    (["objective=foo"], r"Could not find 'objective/foo'[\s\S]*repo[\s\S]*taco"),
    (["+agent.objectives.foo.name=foo"], r"unknown objective 'foo'; valid: \[.*'taco'\]"),
    (["module=[foo]"], r"Could not load 'module/foo'"),
    (["+agent.modules.foo.name=foo"], r"unknown module 'foo'; valid: \['drm', 'empowerment', 'sgfd', 'toy'\]"),
    ([*IMAGINATION, "world_model=foo"], r"Could not find 'world_model/foo'[\s\S]*storm"),
    ([*IMAGINATION, "agent.world_model.name=foo"], r"unknown world model 'foo'; valid: \['rssm', 'storm'\]"),
    (["+agent.lrr=1"], r"unknown DrQV2Config fields \['lrr'\]; valid: \['lr', "),
    (["agent.encoder_dtype=float16"], r"encoder_dtype='float16'; valid: \['float32', 'bfloat16'\]"),
    (["agent.stddev_schedule=foo"], r"bad schedule 'foo': expected a number, 'linear\("),
    ([*IMAGINATION, "agent.actor_critic.actor_dist=foo"], r"actor_dist='foo'; valid: \['tanh_normal'"),
    (["device=tpu"], r"device='tpu'; allowed: auto, cpu, gpu"),
    (["logger.wandb_mode=foo"], r"logger.wandb_mode='foo'; valid: \['offline', 'online', 'disabled'\]"),
    (["loop.seed_updates=foo"], r"loop.seed_updates='foo'; must be one of \('map', 'vmap'\)"),
    # ---- wrong types (Hydra's schema)
    (["agent.lr=abc"], r"agent.lr=abc"),
    (["loop.frames=many"], r"loop.frames=many"),
    (["seed=1.5"], r"seed=1.5"),
    # ---- out-of-range values
    (["agent.lr=0"], r"DrQV2Config.lr must be > 0, got 0\.0"),
    (["agent.lr=-1e-4"], r"DrQV2Config.lr must be > 0, got -0\.0001"),
    (["agent=rainbow", "agent.lr=0"], r"RainbowConfig.lr must be > 0, got 0\.0"),
    ([*IMAGINATION, "agent.model_lr=0"], r"ImaginationConfig.model_lr=0\.0; must be > 0"),
    ([*IMAGINATION, "agent.critic_lr=-1"], r"ImaginationConfig.critic_lr=-1\.0; must be > 0"),
    ([*IMAGINATION, "agent.horizon=0"], r"horizon=0; return_indexing='v1' needs horizon >= 2"),
    ([*IMAGINATION, "agent.length=0"], r"ImaginationConfig.length=0; must be >= 1"),
    (["agent.gamma=1.5"], r"DrQV2Config.gamma must be in \(0, 1\], got 1\.5"),
    (["agent.gamma=0"], r"DrQV2Config.gamma must be in \(0, 1\], got 0\.0"),
    (["agent=rainbow", "agent.gamma=-0.1"], r"RainbowConfig.gamma must be in \(0, 1\], got -0\.1"),
    ([*IMAGINATION, "agent.gamma=0"], r"ImaginationConfig.gamma=0\.0; must be in \(0\.0, 1\.0\]"),
    ([*IMAGINATION, "agent.return_lambda=1.5"], r"return_lambda=1\.5; must be in \[0\.0, 1\.0\]"),
    (["agent=rainbow", "agent.v_min=10"], r"needs v_min < v_max, got v_min=10\.0, v_max=10\.0"),
    (["loop.frames=0"], r"loop.frames=0; must be >= 1"),
    (["loop.eval_episodes=0"], r"loop.eval_episodes=0; must be >= 1"),
    (["loop.update_every=0"], r"loop.update_every=0; must be >= 1"),
    (["loop.warmup_frames=-1"], r"loop.warmup_frames=-1; must be >= 0"),
    (["loop.train_ratio=0"], r"loop.train_ratio=0\.0; must be > 0"),
    (["loop.replay_budget_gb=-1"], r"loop.replay_budget_gb=-1\.0; must be >= 0"),
    (["num_seeds=0"], r"num_seeds=0; must be >= 1"),
    (["env.num_envs=0"], r"env.num_envs=0; must be an int >= 1"),
    (["env.num_envs=2", "env.workers=0"], r"env.workers=0; must be an int >= 1"),
    (["env.action_repeat=0"], r"env.action_repeat must be a positive integer, got 0"),
    (["agent.batch_size=4096", "loop.replay_capacity=1000"],
     r"agent.batch_size=4096 is larger than loop.replay_capacity=1000"),
    ([*IMAGINATION, "agent.batch_size=64", "loop.replay_capacity=10"],
     r"agent.batch_size=64 is larger than loop.replay_capacity=10"),
    # ---- negative weights
    (["objective=taco", "agent.objectives.taco.loss_scales.taco=-1"],
     r"TacoConfig.loss_scales.taco=-1; must be >= 0"),
    ([*IMAGINATION, "agent.objectives.reconstruction.loss_scales.image=-2"],
     r"ReconstructionConfig.loss_scales.image=-2\.0; must be >= 0"),
    ([*IMAGINATION, "agent.world_model.loss_scales.kl=-1"], r"WorldModelConfig.loss_scales.kl=-1\.0"),
    ([*IMAGINATION, "module=[empowerment]", "agent.modules.empowerment.weight=-1"],
     r"EmpowermentConfig.weight must be >= 0, got -1\.0"),
    # ---- image sizes the encoder or world model cannot take; suite sizes
    (["env.size=4"], r"env.size=4; toy envs need at least 8 pixels"),
    (["env.size=8"], r"env.size=8: 8x8 images are too small for DrQ-v2's encoder.*env.size >= 15"),
    (["env=dmc/walker_walk", "agent.encoder_layers=30"], r"env.size=84: .*encoder_layers=30.*>= 119"),
    (["agent=rainbow", "env=toy/reach_discrete"], r"env.size=32: .*Rainbow's encoder.*env.size >= 36"),
    (["env=dmc/walker_walk", "env.size=100"], r"env.size=100 is not allowed; choose one of \[64, 84\]"),
    ([*RAINBOW_ATARI, "env.size=100"], r"size=100 is not allowed; choose one of \[64, 84\]"),
    ([*IMAGINATION, "env.size=16"], r"env.size=16 does not suit the world model \(rssm\)"),
    (["agent=imagination", "env.size=48"], r"env.size=48 .*decoder kernels \(5, 5, 6, 6\) give 64x64"),
    ([*STORM, "env=dmc/walker_walk", "env.size=84"], r"env.size=84 does not suit world_model=storm"),
    ([*STORM, "env=atari/Pong", "env.size=84"], r"env.size=84 does not suit world_model=storm"),
    # ---- incompatible combinations
    (["agent=rainbow", "env=dmc/walker_walk"],
     r"agent=rainbow needs discrete actions; env.name=dmc/walker_walk has continuous actions"),
    (["agent=rainbow", "env=adroit/door"], r"agent=rainbow needs discrete actions; env.name=adroit/door"),
    (["env=atari/Pong"], r"agent=drqv2 needs continuous actions; env.name=atari/Pong has discrete"),
    (["env=toy/reach_discrete"], r"agent=drqv2 needs continuous actions; env.name=toy/reach_discrete"),
    ([*RAINBOW_ATARI, "objective=taco"],
     r"objective 'taco' is not available for agent=rainbow; valid: \['latent_l2', 'spr'\]"),
    (["objective=spr"], r"objective 'spr' is not available for agent=drqv2; valid: \['latent_l2', 'taco'\]"),
    (["objective=reconstruction"], r"objective 'reconstruction' is not available for agent=drqv2"),
    (["agent=imagination", "objective=[repo,taco]"],
     r"objective=taco on a world model: CURL needs two augmented views.*loss_scales.curl=0"),
    ([*RAINBOW_ATARI, "objective=spr", "agent.objectives.spr.target_ema=0.5"],
     r"objective=spr with agent=rainbow .*got target_ema=0\.5"),
    ([*IMAGINATION, "module=[sgfd]"], r"module 'sgfd' runs on agent=drqv2, not agent=imagination"),
    ([*RAINBOW_ATARI, "module=[sgfd]"], r"module 'sgfd' runs on agent=drqv2, not agent=rainbow"),
    ([*IMAGINATION, "module=[drm]"],
     r"module 'drm' needs \['value_target'\], which agent=imagination does not provide"),
    ([*RAINBOW_ATARI, "module=[drm]"], r"module 'drm' needs \[.*'activations'.*\], which agent=rainbow"),
    (["world_model=storm"], r"Could not override 'world_model'"),
    (["+agent.world_model.name=storm"], r"agent=drqv2 has no world model .*agent=imagination"),
    (["env.convention=storm"], r"env.convention='storm' is not used by the 'toy' suite"),
    (["env=dmc/walker_walk", "env.convention=foo"],
     r"env.convention='foo' is not allowed; choose one of \['drqv2', 'planet', 'dreamer'\]"),
    ([*RAINBOW_ATARI, "env.convention=foo"], r"convention='foo' is not allowed; choose one of \['spr', 'storm'\]"),
    # ---- resume= that is not a run directory
    (["resume={tmp}/nothing"], r"resume='.*/nothing' is not a run directory .*does not exist.*resume=auto"),
    (["resume={tmp}/file"], r"resume='.*/file' is not a run directory .*not a directory"),
    (["resume={tmp}/empty"], r"resume='.*/empty': no config.yaml in .*/empty"),
    # ---- a rendering backend that is not installed (the library lookup is patched to fail)
    (["env=dmc/walker_walk", "MUJOCO_GL=osmesa"],
     r"MUJOCO_GL=osmesa but libOSMesa.so is not installed.*apt-get install libosmesa6"),
    (["env=adroit/door", "MUJOCO_GL=egl"], r"MUJOCO_GL=egl but libEGL.so is not installed.*libegl1"),
    (["env=dmc/walker_walk", "MUJOCO_GL=foo"], r"MUJOCO_GL='foo'.*valid backends: \['egl', 'osmesa'"),
]


def _id(case):
    return " ".join(case[0])


@pytest.fixture(scope="module")
def hydra():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        yield


def _forbidden(*args, **kwargs):
    raise AssertionError("an env was made before the config was checked")


@pytest.mark.parametrize("overrides,message", BAD, ids=[_id(c) for c in BAD])
def test_bad_config_is_refused_at_start_up(hydra, tmp_path, monkeypatch, overrides, message):
    (tmp_path / "file").write_text("")
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(registry, "make", _forbidden)
    monkeypatch.setattr(mujoco_render, "loadable", lambda name: True)
    overrides = [o.format(tmp=tmp_path) for o in overrides]
    for gl in [o for o in overrides if o.startswith("MUJOCO_GL=")]:
        monkeypatch.setenv("MUJOCO_GL", gl.split("=", 1)[1])
        monkeypatch.setattr(mujoco_render, "loadable", lambda name: False)
        overrides.remove(gl)
    with pytest.raises((ValueError, OSError, HydraException), match=message):
        config_lib.resolve(compose("config", overrides=[*overrides, f"run_dir={tmp_path}"]))


def test_the_table_is_large_enough():
    assert len(BAD) >= 40


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_preset_passes_the_checks(hydra, tmp_path, monkeypatch, experiment):
    monkeypatch.setattr(registry, "make", _forbidden)
    monkeypatch.setattr(mujoco_render, "loadable", lambda name: True)
    config_lib.resolve(compose("config", overrides=[f"experiment={experiment}",
                                                    f"run_dir={tmp_path}"]))


@pytest.mark.parametrize("overrides", [["agent=drqv2", "env=dmc/walker_walk"], [*RAINBOW_ATARI],
                                       ["agent=rainbow", "env=toy/reach_discrete", "env.size=64"],
                                       ["agent=imagination", "env=toy/reach_discrete"],
                                       [*STORM, "env=atari/Pong", "env.convention=storm"],
                                       ["resume=auto"]])
def test_good_combinations_pass_the_checks(hydra, tmp_path, monkeypatch, overrides):
    monkeypatch.setattr(registry, "make", _forbidden)
    monkeypatch.setattr(mujoco_render, "loadable", lambda name: True)
    cfg = compose("config", overrides=[*overrides, f"run_dir={tmp_path}"])
    if cfg.resume == "auto":   # accepted by the check; what "auto" resumes is train's to decide
        config_lib.check_resume(cfg.resume)
        return
    config_lib.resolve(cfg)
