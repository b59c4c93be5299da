"""experiments.plot_curves: per method and task the mean over seeds with bootstrap CIs (the
CSV it writes), points behind fewer seeds counted, and --group-by dir."""
import csv
import json

import pytest
import yaml

from experiments import plot_curves


def _fake_run(root, session, name, env, seed, returns, agent="drqv2"):
    run = root / session / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"env": {"name": env}, "agent": {"name": agent}, "seed": seed,
         "loop": {"frames": returns[-1][0]}}))
    with open(run / "metrics.jsonl", "w") as f:
        for frames, ret in returns:
            f.write(json.dumps({"step": frames, "eval/return": ret, "eval/return_std": 1.0}) + "\n")
    return run


def _rows(path):
    return [(r["method"], r["task"], int(r["frames"]), int(r["seeds"]),
             float(r["eval_return_mean"]), float(r["ci95_low"]), float(r["ci95_high"]))
            for r in csv.DictReader(open(path.with_suffix(".csv")))]


def test_curves_are_means_over_seeds_with_cis(tmp_path):
    a = _fake_run(tmp_path, "s1", "drqv2_walker_s1", "dmc/walker_walk", 1, [(0, 1.0), (1000, 4.0)])
    b = _fake_run(tmp_path, "s1", "drqv2_walker_s2", "dmc/walker_walk", 2,
                  [(0, 3.0), (1000, 8.0), (2000, 9.0)])
    c = _fake_run(tmp_path, "s2", "dreamer_cheetah_s1", "dmc/cheetah_run", 1, [(500, 2.0)],
                  agent="imagination")
    out = tmp_path / "curves.png"
    plot_curves.main([str(out), str(a), str(b), str(c), "--reps", "200",
                      "--table", "drqv2_dmc"])
    assert out.stat().st_size > 0
    rows = _rows(out)
    assert [r[:5] for r in rows] == [
        ("imagination", "cheetah_run", 500, 1, 2.0),
        ("drqv2", "walker_walk", 0, 2, 2.0), ("drqv2", "walker_walk", 1000, 2, 6.0),
        ("drqv2", "walker_walk", 2000, 1, 9.0)]   # only seed 2 got there: counted, dashed
    for *_, mean, low, high in rows:
        assert low <= mean <= high
    _, _, _, _, _, low, high = rows[2]
    assert (low, high) == pytest.approx((4.0, 8.0))   # bootstrap of two seeds: their range


def test_group_by_dir_and_vmapped_copies(tmp_path):
    runs = [_fake_run(tmp_path, "s", f"drqv2_{kind}_cartpole_s{seed}", "dmc/cartpole_swingup",
                      seed, [(100, seed * 1.0)]) for kind in ("fp32", "tf32") for seed in (1, 2)]
    out = tmp_path / "ab.png"
    plot_curves.main([str(out), *map(str, runs), "--group-by", "dir", "--reps", "50"])
    assert {(r[0], r[3], r[4]) for r in _rows(out)} == {("drqv2_fp32_cartpole", 2, 1.5),
                                                        ("drqv2_tf32_cartpole", 2, 1.5)}
    vmapped = tmp_path / "v" / "spr_Pong_s1x2"
    vmapped.mkdir(parents=True)
    (vmapped / "config.yaml").write_text(yaml.safe_dump(
        {"env": {"name": "atari/Pong"}, "agent": {"name": "rainbow"}, "seed": 1, "num_seeds": 2}))
    for k in range(2):
        (vmapped / f"seed_{k}").mkdir()
        (vmapped / f"seed_{k}" / "metrics.jsonl").write_text(
            json.dumps({"step": 400, "eval/return": float(k)}) + "\n")
    out = tmp_path / "pong.png"
    plot_curves.main([str(out), str(vmapped / "seed_1"), "--reps", "50"])   # one copy
    assert [r[2:5] for r in _rows(out)] == [(400, 1, 1.0)]
