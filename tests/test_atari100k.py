"""Atari 100k as data (rl/envs/atari100k.py, experiments/tables/atari100k.py) and its
aggregation (experiments/aggregate.py)."""
import dataclasses
import json
import pathlib

import numpy as np
import pytest
import yaml

from experiments import aggregate as agg
from experiments.tables import atari100k as papers
from rl.envs import atari100k
from rl.envs.atari import AtariConfig

CONF = pathlib.Path(__file__).resolve().parents[1] / "conf" / "env" / "atari"


# ----------------------------------------------------------------------------- the data
def test_games_match_the_env_configs():
    names = {yaml.safe_load(p.read_text())["name"] for p in CONF.glob("*.yaml")}
    assert len(atari100k.GAMES) == 26 == len(set(atari100k.GAMES))
    assert names == {f"atari/{g}" for g in atari100k.GAMES}
    assert {p.stem for p in CONF.glob("*.yaml")} == set(atari100k.GAMES)
    for table in (atari100k.RANDOM_SCORES, atari100k.HUMAN_SCORES,
                  *papers.PUBLISHED.values()):
        assert tuple(table) == atari100k.GAMES


def test_hns_hand_computed():
    # Pong: random -20.7, human 14.6 -> (-5.9 + 20.7) / 35.3 (SPR's Pong)
    assert atari100k.human_normalized_score("Pong", -5.9) == pytest.approx(14.8 / 35.3)
    # Boxing: random 0.1, human 12.1 -> (35.8 - 0.1) / 12.0 (SPR's Boxing)
    assert atari100k.human_normalized_score("Boxing", 35.8) == pytest.approx(35.7 / 12.0)
    # Alien: random 227.8, human 7127.7 (not DreamerV2's 228.8)
    assert atari100k.human_normalized_score("Alien", 227.8) == 0.0
    assert atari100k.human_normalized_score("Alien", 7127.7) == pytest.approx(1.0)
    assert atari100k.human_normalized_score("atari/Freeway", 14.8) == pytest.approx(0.5)
    np.testing.assert_allclose(atari100k.human_normalized_score("Breakout", [1.7, 30.5]), [0, 1])


def test_published_aggregates_recomputed_from_per_game_scores():
    # a typo in any per-game cell would move these (printed to 3 decimals)
    for method, printed in papers.PUBLISHED_AGGREGATES.items():
        hns = papers.published_hns(method)
        assert hns.mean() == pytest.approx(printed["mean"], abs=1e-3), method
        assert np.median(hns) == pytest.approx(printed["median"], abs=1e-3), method
        assert int((hns > 1).sum()) == printed["above_human"], method


def test_protocol_matches_the_env_defaults():
    p, env = atari100k.PROTOCOL, AtariConfig.spr()
    assert (p.frames, p.max_episode_steps, p.eval_episodes) == (400_000, 27_000, 100)
    assert (env.frame_skip, env.max_episode_frames, env.noop_max, env.sticky_action_prob,
            env.terminal_on_life_loss) == (p.frame_skip, p.max_episode_frames, p.noop_max,
                                           p.sticky_action_prob, p.terminal_on_life_loss)


def test_bad_games_and_scores_are_named():
    with pytest.raises(ValueError, match="'Pacman'.*MsPacman"):
        atari100k.human_normalized_score("Pacman", 1.0)
    with pytest.raises(ValueError, match="'Pong'.*nan"):
        atari100k.human_normalized_score("Pong", float("nan"))
    with pytest.raises(ValueError, match="'EfficientZero'"):
        papers.published_hns("EfficientZero")


# ----------------------------------------------------------------------------- aggregation
# HNS 0 / 1 on Boxing (random 0.1, human 12.1) and 0.5 / 2 on Pong (random -20.7, human 14.6)
SYNTHETIC = [("Boxing", 1, 0.1), ("Boxing", 2, 12.1), ("Pong", 1, -3.05), ("Pong", 2, 49.9)]


def _runs(method="ours", frames=400_000):
    return [agg.RunScore(game=g, seed=s, method=method, score=x, frames=frames)
            for g, s, x in SYNTHETIC]


def test_aggregates_hand_checked():
    games, matrix = agg.hns_matrix(_runs())
    assert games == ("Boxing", "Pong")
    np.testing.assert_allclose(matrix, [[0.0, 0.5], [1.0, 2.0]], atol=1e-12)
    est = agg.point_estimates(matrix)
    # IQM: sorted 0, 0.5, 1, 2 -> drop one each end -> 0.75. Mean / median over game means
    # (0.5, 1.25) -> 0.875. Optimality gap: 1 - mean(min(x, 1)) = 1 - 2.5 / 4.
    assert est["IQM"] == pytest.approx(0.75)
    assert est["Mean"] == pytest.approx(0.875) and est["Median"] == pytest.approx(0.875)
    assert est["Optimality gap"] == pytest.approx(0.375)
    ci = agg.interval_estimates(matrix, reps=200, seed=0)
    for name, (point, low, high) in ci.items():
        assert point == pytest.approx(est[name]) and low <= point <= high, name
    assert ci == agg.interval_estimates(matrix, reps=200, seed=0)   # seeded: reproducible
    identical = agg.interval_estimates(np.full((3, 2), 0.4), reps=50)
    assert identical["IQM"] == pytest.approx((0.4, 0.4, 0.4))


def test_runs_sort_by_seed_in_numeric_order():
    seeds = [10, "2/seed_1", 2, "1/seed_0", "b", "2/seed_0", 1]
    runs = [agg.RunScore(game="Pong", seed=s, method="m", score=0.0, frames=1) for s in seeds]
    assert [r.seed for r in sorted(runs, key=agg.seed_order)] == [
        1, "1/seed_0", 2, "2/seed_0", "2/seed_1", 10, "b"]


def test_unequal_runs_per_game_use_each_games_first_runs():
    runs = _runs()[:3]                      # Boxing seeds 1, 2; Pong seed 1
    games, matrix = agg.hns_matrix(runs, runs_per_game="min")
    assert games == ("Boxing", "Pong")
    np.testing.assert_allclose(matrix, [[0.0, 0.5]], atol=1e-12)   # seed 1 of each game
    np.testing.assert_allclose(agg.hns_matrix(runs, runs_per_game=1)[1], matrix)
    (res,) = agg.aggregate(runs, reps=20, runs_per_game="min")
    assert res.runs_per_game == 1 and len(res.scores["Boxing"]) == 2   # the table keeps both
    assert res.aggregates["Mean"][0] == pytest.approx(0.25)
    text = agg.render_markdown([res], reps=20)
    assert "first 1 run(s) by seed, the per-game rows all 1–2" in text
    assert "| Boxing | 6.1 ± 76.2 (2/10 seeds) |" in text   # t(0.975, 1) 12.706 x 6.0
    with pytest.raises(ValueError, match=r"runs_per_game=2 but these games have fewer runs: "
                                         r"\{'Pong': 1\}"):
        agg.hns_matrix(runs, runs_per_game=2)
    with pytest.raises(ValueError, match="runs_per_game must be None, 'min' or a positive "
                                         "integer, got 'max'"):
        agg.hns_matrix(runs, runs_per_game="max")


def _fake_run(root, name, game, seed, ret, frames=400_000, num_seeds=1, objective=None):
    run = root / name
    run.mkdir(parents=True)
    agent = {"name": "rainbow", **({"objective": {"name": objective}} if objective else {})}
    cfg = {"env": {"name": f"atari/{game}"}, "agent": agent, "loop": {"frames": frames},
           "seed": seed, "num_seeds": num_seeds}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "final.json").write_text(json.dumps({"return": ret[0], "episodes": 100.0}))
    for k in range(num_seeds):
        logdir = run if num_seeds == 1 else run / f"seed_{k}"
        logdir.mkdir(exist_ok=True)
        rows = [{"step": frames // 2, "eval/return": -999.0},
                {"step": frames, "eval/return": ret[k], "eval/episodes": 100.0}]
        (logdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_load_runs_from_train_outputs_and_score_files(tmp_path):
    _fake_run(tmp_path / "a", "pong_s1", "Pong", 1, [-3.05], objective="spr")
    _fake_run(tmp_path / "a", "boxing_s1", "Boxing", 1, [0.1], objective="spr")
    _fake_run(tmp_path / "b", "vmapped", "Boxing", 7, [12.1, 6.1], num_seeds=2)
    (tmp_path / "a" / "multirun.yaml").write_text("{}")   # a sweep's own file: skipped
    agg.write_score(tmp_path / "c", "Pong", 2, "rainbow+spr", 49.9, 400_000, 100)
    runs = agg.load_runs([str(tmp_path / "a" / "*"), str(tmp_path / "b" / "vmapped"),
                          str(tmp_path / "c")])
    got = {(r.method, r.game, str(r.seed)): (r.score, r.frames, r.episodes) for r in runs}
    assert got == {("rainbow+spr", "Pong", "1"): (-3.05, 400_000, 100),
                   ("rainbow+spr", "Boxing", "1"): (0.1, 400_000, 100),
                   ("rainbow+spr", "Pong", "2"): (49.9, 400_000, 100),
                   ("rainbow", "Boxing", "7/seed_0"): (12.1, 400_000, 100),
                   ("rainbow", "Boxing", "7/seed_1"): (6.1, 400_000, 100)}
    relabelled = agg.load_runs([str(tmp_path / "b" / "vmapped")], method="der")
    assert {r.method for r in relabelled} == {"der"}


def test_cli_writes_markdown_and_csv(tmp_path):
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps([r.to_json() for r in _runs()]))
    paths = agg.main([str(scores), "--out", str(tmp_path / "out" / "atari"), "--reps", "100"])
    md, per_game, per_run, aggregates, tex, poi = paths[:6]
    text = md.read_text()
    # mean ± 95% Student-t CI over the 2 seeds (12.706 x 26.475), 2 of SPR's 10 seeds
    assert "| Pong | 23.4 ± 336.4 (2/10 seeds) | 1.250 | -5.9 | -19.3 | -20.7 | 14.6 |" in text
    assert r"Pong & 23.4 $\pm$ 336.4 (2/10 seeds) & 1.250 & -5.9 & -19.3" in tex.read_text()
    assert poi.read_text().splitlines()[0] == "x,y,tasks,p_x_better,ci_low,ci_high"
    assert {p.name for p in paths[6:]} == {"atari_profile.png"}   # score files: no curves
    assert "| ours | 2 | 2 | 0.750 [" in text and "SPR (paper, per-game means) | 2 |" in text
    rows = per_game.read_text().splitlines()
    assert rows[0].startswith("method,game,runs") and len(rows) == 3
    assert len(per_run.read_text().splitlines()) == 5
    iqm = [r for r in aggregates.read_text().splitlines() if ",IQM," in r]
    assert iqm and iqm[0].startswith("ours,2,2,400000,IQM,0.75,")


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="'Pacman'"):
        agg.RunScore(game="Pacman", seed=1, method="x", score=1.0, frames=400_000)
    with pytest.raises(ValueError, match="score must be a finite number, got nan"):
        agg.RunScore(game="Pong", seed=1, method="x", score=float("nan"), frames=400_000)
    with pytest.raises(ValueError, match="frames must be a positive integer, got 0"):
        agg.RunScore(game="Pong", seed=1, method="x", score=1.0, frames=0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"game": "Pong", "seed": 1, "method": "x", "scor": 1.0,
                               "frames": 1}))
    with pytest.raises(ValueError, match=r"bad.json.*missing fields \['score'\].*\['scor'\]"):
        agg.load_runs([str(bad)])
    with pytest.raises(ValueError, match="no run directory or score file matches"):
        agg.load_runs([str(tmp_path / "nothing_*")])
    with pytest.raises(ValueError, match="config.yaml: expected a run directory or a .json"):
        agg.load_runs([str(_fake_run(tmp_path, "pong", "Pong", 1, [0.0]) / "config.yaml")])
    _fake_run(tmp_path, "other", "Pong", 1, [0.0])
    (tmp_path / "other" / "config.yaml").write_text(yaml.safe_dump(
        {"env": {"name": "mujoco/walker"}, "agent": {"name": "drqv2"}, "seed": 1}))
    with pytest.raises(ValueError, match="config.yaml: env.name 'mujoco/walker' is not"):
        agg.load_runs([str(tmp_path / "other")])
    unstarted = _fake_run(tmp_path, "unstarted", "Pong", 1, [0.0])
    (unstarted / "final.json").unlink()
    (unstarted / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="unstarted: no final.json and no evaluation"):
        agg.load_runs([str(unstarted)])
    with pytest.raises(ValueError, match="'ours', game 'Pong', seed 1 appears twice"):
        agg.load_runs([str(_dump(tmp_path / "dup.json", _runs() + _runs()[2:3]))])
    with pytest.raises(ValueError, match=r"runs per game: \{'Boxing': 2, 'Pong': 1\}"):
        agg.aggregate(_runs()[:3], reps=10)
    with pytest.raises(ValueError, match="reps must be a positive integer, got 0"):
        agg.interval_estimates(np.zeros((2, 2)), reps=0)


def _dump(path, runs):
    path.write_text(json.dumps([r.to_json() for r in runs]))
    return path


def test_partial_runs_are_labelled_and_left_out_of_the_aggregates(tmp_path):
    # a run stopped early (no final.json): scored by its last evaluation, labelled partial
    stopped = _fake_run(tmp_path, "stopped", "Pong", 1, [0.0])
    (stopped / "final.json").unlink()
    (stopped / "metrics.jsonl").write_text(json.dumps(
        {"step": 200_000, "eval/return": -7.0, "eval/episodes": 100.0}) + "\n")
    (run,) = agg.load_runs([str(stopped)])
    assert (run.score, run.frames, run.budget) == (-7.0, 200_000, 400_000)
    mixed = _runs()[:2] + _runs(frames=100_000)[2:]    # Boxing complete, Pong at 100k only
    (res,) = agg.aggregate(mixed, reps=10)
    assert res.games == ("Boxing",) and res.aggregates["Mean"][0] == pytest.approx(0.5)
    assert not res.cells["Pong"].complete and res.cells["Pong"].frames == 100_000
    text = agg.render_markdown([res], reps=10)
    assert "partial: 100k/400k frames" in text
    assert "partial (left out of the aggregates): Pong" in text
    more = mixed + [agg.RunScore(game="Boxing", seed=3, method="ours", score=5.0, frames=50_000)]
    (res,) = agg.aggregate(more, reps=10)
    assert res.cells["Boxing"].partial_runs == 1 and len(res.scores["Boxing"]) == 2
    assert "+1 partial, left out" in agg.render_markdown([res], reps=10)


def test_a_sweep_dir_reads_its_jobs_and_skips_unstarted_ones(tmp_path, capsys):
    sweep = tmp_path / "multirun" / "0800"
    _fake_run(sweep, "0_pong_s1", "Pong", 1, [-3.0])
    queued = _fake_run(sweep, "1_pong_s2", "Pong", 2, [0.0])
    (queued / "final.json").unlink()
    (queued / "metrics.jsonl").write_text("")
    (sweep / "multirun.yaml").write_text("{}")
    (run,) = agg.load_runs([str(sweep)])
    assert (run.seed, run.score) == (1, -3.0)
    assert "skipped: " in capsys.readouterr().out


def test_frames_holds_longer_runs_to_their_evaluation_at_that_budget():
    runs = [agg.RunScore(game="Pong", seed=s, method="m", score=9.0, frames=400_000,
                         curve=((100_000, float(s)), (400_000, 9.0))) for s in (1, 2)]
    short = agg.RunScore(game="Boxing", seed=1, method="m", score=0.1, frames=100_000)
    held = agg.at_frames(runs + [short], 250_000)   # the eval at or before: 100k
    assert [(r.score, r.frames) for r in held] == [(1.0, 250_000), (2.0, 250_000),
                                                   (0.1, 100_000)]
    (res,) = agg.aggregate(runs + [short, dataclasses.replace(short, seed=2)], reps=10,
                           frames=250_000)
    assert res.frames == 250_000 and res.games == ("Pong",)
    assert list(res.scores["Pong"]) == [1.0, 2.0] and not res.cells["Boxing"].complete
