"""Paper tables as data (experiments/tables) and their experiment=table_<name> presets: each
preset's -m sweep lists the table's tasks and seeds, and every task's job composes."""
import pathlib

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments import config as config_lib
from experiments import tables

CONF = pathlib.Path(__file__).parents[1] / "conf"
config_lib.register()
PRESETS = sorted(t.preset for t in map(tables.get, tables.names()) if t.preset)


def test_every_table_is_well_formed_and_marks_what_the_cards_lack():
    assert {"spr_atari100k", "der_atari100k", "storm_atari100k", "drqv2_dmc", "dreamer_dmc",
            "taco_dmc", "repo_distracted_dmc", "drm_dmc_hard", "drm_adroit"} <= set(tables.names())
    assert tables.get("spr_atari100k").published[0].scores["Pong"].mean == -5.9
    assert tables.get("dreamer_dmc").published[0].scores["cheetah_run"].text(0) == "570 ± 253"
    assert not tables.get("taco_dmc").published[0].scores["hopper_hop"].verified
    assert tables.get("drm_adroit").published[0].missing(("door", "hammer", "pen")) == [
        "door", "hammer", "pen"]
    assert tables.get("storm_atari100k").published[1].scores["Freeway"] is None
    for suite in tables.SUITES:
        assert tables.default_for(suite).suite == suite
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        tables.get("nope")


@pytest.mark.parametrize("preset", PRESETS)
def test_table_presets_sweep_the_tables_tasks_and_every_job_composes(preset):
    table = next(t for t in map(tables.get, tables.names()) if t.preset == preset)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        params = compose("config", overrides=[f"experiment={preset}"],
                         return_hydra_config=True).hydra.sweeper.params
        # the jobs the basic sweeper launches from hydra.sweeper.params (as -m would)
        swept = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
        launched = [job for batch in BasicSweeper.split_arguments(swept, None) for job in batch]
        envs = params["env"].split(",")
        # a few jobs per preset keep this cheap (~0.3 s a compose): the first, middle and last
        # task; the env configs themselves are one name each (tests/test_atari100k.py)
        picked = list(dict.fromkeys([envs[0], envs[len(envs) // 2], envs[-1]]))
        jobs = [compose("config", overrides=[f"experiment={preset}", *job, "run_dir=/tmp/x"])
                for job in launched if job[0].split("=")[1] in picked
                and job[1] == f"seed={params['seed'].split(',')[-1]}"]
    seeds = params["seed"].split(",")
    assert set(envs) <= set(table.env_names) and len(envs) == len(set(envs))
    assert seeds == [str(s) for s in range(1, len(seeds) + 1)]
    assert len(launched) == len(envs) * len(seeds)
    assert table.seeds is None or len(seeds) == table.seeds
    assert len(jobs) == len(picked)
    for env, job in zip(picked, jobs):   # seeds change only the seed
        run = config_lib.resolve(job)
        assert (run.env.name, run.seed) == (env, int(seeds[-1]))
        if table.frames:
            assert run.loop.frames == table.frames, preset
