"""The issue's done-when: a tiny CPU -m sweep (2 methods x 2 seeds on toy/reach), then
experiments.aggregate on the sweep dir writes the table (Markdown, LaTeX), the curves with CIs
and a profile plot, and the table's numbers are the means of the runs' final.json returns."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import yaml
from scipy import stats

from experiments import aggregate as agg, report
from wandb_files import wandb_run_record

# DrQ-v2 with and without the toy module (it only counts updates here: the cheapest second
# method); 300 frames, evaluated at 0 and at the end
TINY = ["hydra/launcher=basic", "module=[],[toy]", "seed=1,2", "experiment=quickstart",
        "agent.hidden_dim=32", "agent.feature_dim=8", "agent.encoder_channels=8",
        "agent.encoder_layers=2", "agent.batch_size=8", "agent.num_expl_steps=0",
        "loop.frames=300", "loop.warmup_frames=250", "loop.eval_every_frames=300",
        "loop.eval_episodes=2", "loop.progress=false", "loop.checkpoints=false",
        "loop.video_every_evals=0", "logger.wandb_mode=offline", "device=cpu"]


def test_sweep_then_aggregate_writes_the_table_curves_and_profile(tmp_path):
    sweep = tmp_path / "sweep"
    # the 4 jobs run in one process but build new jitted functions: the persistent compilation
    # cache and cheap XLA flags of conftest.py (inherited) let jobs 3-4 reuse jobs 1-2's
    done = subprocess.run([sys.executable, "-m", "experiments.train", "-m", *TINY,
                           f"hydra.sweep.dir={sweep}"], env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    finals: dict[str, list[float]] = {}
    successes: dict[str, list[float]] = {}
    for job in sorted(p for p in sweep.iterdir() if (p / "final.json").exists()):
        cfg = yaml.safe_load((job / "config.yaml").read_text())
        method = "drqv2+toy" if cfg["agent"].get("modules") else "drqv2"
        final = json.loads((job / "final.json").read_text())
        finals.setdefault(method, []).append(final["return"])
        successes.setdefault(method, []).append(final["success"])
    assert {m: len(v) for m, v in finals.items()} == {"drqv2": 2, "drqv2+toy": 2}

    # W&B (offline): the seeds of a method share one group, each run tagged with its seed
    jobs = sorted(p for p in sweep.iterdir() if (p / "final.json").exists())
    records = [wandb_run_record(job) for job in jobs]
    groups = {}
    for record in records:
        groups.setdefault(record.run_group, set()).add(
            next(t for t in record.tags if t.startswith("seed:")))
        assert {"method:" + record.run_group.split("-")[-1], "env:toy/reach", "suite:toy",
                "experiment:quickstart"} <= set(record.tags), record.tags
    assert groups == {"quickstart-toy-reach-drqv2": {"seed:1", "seed:2"},
                      "quickstart-toy-reach-drqv2+toy": {"seed:1", "seed:2"}}
    spec = report.report_spec(report.find_runs([str(sweep / "*")]))
    assert [g["groups"] for g in spec["grids"]] == [sorted(groups)]
    assert len(report.offline_sync_commands(report.find_runs([str(sweep / "*")]))) == 4
    # the online report (built, not sent): a panel grid whose run set is the sweep's groups
    model = json.dumps(report.build_report(spec)._to_model().model_dump(by_alias=True),
                       default=str)
    assert '"filters": [{"key": {"section": "config", "name": "group"}, "op": "IN", "value": ' \
           + json.dumps(sorted(groups)) in model, model
    assert '"grouping": [{"section": "run", "name": "group"}]' in model

    out = tmp_path / "report" / "toy"
    paths = agg.main([str(sweep), "--out", str(out), "--reps", "200", "--curve-reps", "100"])
    assert {p.name for p in paths} >= {"toy.md", "toy.tex", "toy.csv", "toy_aggregates.csv",
                                       "toy_poi.csv", "toy_curves.png", "toy_curves.csv",
                                       "toy_iqm_curve.png", "toy_profile.png"}
    assert all(p.stat().st_size > 0 for p in paths)
    text, tex = out.with_suffix(".md").read_text(), out.with_suffix(".tex").read_text()
    rows = {r["method"]: r for r in csv.DictReader(open(out.with_suffix(".csv")))}
    for method, returns in finals.items():
        mean = float(np.mean(returns))
        half = stats.t.ppf(0.975, 1) * np.std(returns, ddof=1) / np.sqrt(2)
        assert float(rows[method]["score_mean"]) == round(mean, 4)
        assert rows[method]["complete"] == "True" and rows[method]["runs"] == "2"
        cell = f"{mean:,.1f} ± {half:,.1f} (2 seeds)"
        assert f"| {cell} |" in text or f"| {cell} " in text, (cell, text)
        assert cell.replace("±", r"$\pm$") in tex
        curve = [r for r in csv.DictReader(open(out.with_name("toy_curves.csv")))
                 if r["method"] == method]
        assert [int(r["frames"]) for r in curve] == [0, 300]
        assert float(curve[-1]["eval_return_mean"]) == round(mean, 3)
        assert float(curve[-1]["ci95_low"]) <= mean + 1e-3 <= float(curve[-1]["ci95_high"]) + 2e-3
    assert "| drqv2 | 1 | 2 |" in text and "| drqv2+toy | 1 | 2 |" in text   # the aggregates
    poi = list(csv.DictReader(open(out.with_name("toy_poi.csv"))))
    assert {(r["x"], r["y"]) for r in poi} == {("drqv2", "drqv2+toy"), ("drqv2+toy", "drqv2")}

    # scored by the eval success rate instead (toy and adroit log it)
    out = tmp_path / "report" / "toy_success"
    agg.main([str(sweep), "--out", str(out), "--reps", "50", "--metric", "success", "--no-plots"])
    rows = {r["method"]: r for r in csv.DictReader(open(out.with_suffix(".csv")))}
    for method, rates in successes.items():
        assert float(rows[method]["score_mean"]) == round(float(np.mean(rates)), 4)
    assert "Aggregates over: eval success rate" in out.with_suffix(".md").read_text()
