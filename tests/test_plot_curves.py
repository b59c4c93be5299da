"""experiments.plot_curves: the CSV it writes, and one colour per method under --color-by-method."""
import csv
import json
import sys

import pytest

from experiments import plot_curves


def _fake_run(root, session, name, env, returns):
    run = root / session / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"env:\n  name: {env}\n")
    with open(run / "metrics.jsonl", "w") as f:
        for frames, ret in returns:
            f.write(json.dumps({"step": frames, "eval/return": ret, "eval/return_std": 1.0}) + "\n")
    return run


def test_method_looks_share_a_colour_per_method_and_vary_the_style():
    labels = ["s1/repo_walker_s1", "s1/dreamer_walker_s1", "s2/repo_walker_s2",
              "s3/spr_Pong_s1x3/seed_0", "s3/spr_Pong_s1x3/seed_1", "s4/spr_Boxing_s1"]
    looks = plot_curves.method_looks(labels)
    assert looks["s1/repo_walker_s1"]["color"] == looks["s2/repo_walker_s2"]["color"]
    assert looks["s1/repo_walker_s1"]["linestyle"] != looks["s2/repo_walker_s2"]["linestyle"]
    assert looks["s1/dreamer_walker_s1"]["color"] != looks["s1/repo_walker_s1"]["color"]
    # vmapped copies belong to their run's method, not to a method called "seed"
    assert looks["s3/spr_Pong_s1x3/seed_0"]["color"] == looks["s4/spr_Boxing_s1"]["color"]
    copies = [looks[f"s3/spr_Pong_s1x3/seed_{k}"]["linestyle"] for k in range(2)]
    assert copies[0] != copies[1]
    assert len({look["color"] for look in looks.values()}) == 3


@pytest.mark.parametrize("by_method", [False, True])
def test_main_writes_one_csv_row_per_evaluation(tmp_path, monkeypatch, by_method):
    repo = _fake_run(tmp_path, "s1", "repo_walker_s1", "dmc/walker_walk", [(0, 1.0), (1000, 5.5)])
    dreamer = _fake_run(tmp_path, "s1", "dreamer_cheetah_s1", "dmc/cheetah_run", [(0, 2.0)])
    out = tmp_path / "curves.png"
    monkeypatch.setattr(sys, "argv", ["plot_curves", str(out), str(repo), str(dreamer)]
                        + (["--color-by-method"] if by_method else []))
    plot_curves.main()
    assert out.stat().st_size > 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [(r["run"], r["env"], r["frames"], r["eval_return_mean"]) for r in rows] == [
        ("s1/dreamer_cheetah_s1", "dmc/cheetah_run", "0", "2.0"),
        ("s1/repo_walker_s1", "dmc/walker_walk", "0", "1.0"),
        ("s1/repo_walker_s1", "dmc/walker_walk", "1000", "5.5")]
