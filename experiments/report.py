"""A comparison report for a sweep: a W&B report when online, the same plots as files offline.

    python -m experiments.report 'multirun/2026-12-08/*/*' --out results/my_sweep
    python -m experiments.report 'multirun/2026-12-08/*/*' --online --title "TACO vs DrQ-v2"

Runs are grouped as W&B groups them (``RunConfig.wandb_group``: experiment-env-method, so the
seeds of a sweep are one group). Offline (the default) writes what ``experiments.aggregate``
writes (table, curves with CIs over seeds, profiles) and prints the ``wandb sync`` commands of
the runs' offline W&B folders. ``--online`` needs the W&B report API (``pip install
wandb-workspaces``; in the dev extra) and a login; it saves one report with a panel grid per
env: the groups' eval-return curves (mean over seeds, range = standard error) and a run
comparer.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import pathlib
from typing import Any, Sequence

from experiments import config as config_lib

METRIC = "eval/return"


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a report needs of one run directory."""

    path: pathlib.Path
    group: str
    method: str
    env: str
    experiment: str | None
    project: str
    entity: str | None


def read_run(run_dir: str | pathlib.Path) -> RunInfo:
    run_dir = pathlib.Path(run_dir)
    run = config_lib.resolve_saved(config_lib.saved_config(run_dir, f"run {run_dir}"))
    return RunInfo(path=run_dir, group=run.wandb_group, method=run.method, env=run.env.name,
                   experiment=run.experiment, project=run.logger.project,
                   entity=run.logger.entity)


def find_runs(patterns: Sequence[str]) -> list[RunInfo]:
    """The run directories (with a config.yaml) that ``patterns`` (dirs or globs) name."""
    dirs = sorted({pathlib.Path(p) for pattern in patterns for p in glob.glob(pattern)
                   if (pathlib.Path(p) / "config.yaml").exists()})
    if not dirs:
        raise FileNotFoundError(f"no run directory (with a config.yaml) matches {list(patterns)}")
    return [read_run(d) for d in dirs]


def report_spec(runs: Sequence[RunInfo], title: str | None = None) -> dict[str, Any]:
    """The report as plain data: one panel grid per env, each comparing that env's groups."""
    projects = sorted({(r.project, r.entity or "") for r in runs})
    if len(projects) != 1:
        raise ValueError(f"the runs log to several W&B projects {projects}; report one at a time")
    project, entity = projects[0]
    envs = sorted({r.env for r in runs})
    grids = [{"env": env, "groups": sorted({r.group for r in runs if r.env == env}),
              "x": "Step", "y": METRIC} for env in envs]
    experiments = sorted({r.experiment or "none" for r in runs})
    return {"project": project, "entity": entity or None,
            "title": title or f"{', '.join(experiments)}: {len(runs)} runs on {len(envs)} envs",
            "grids": grids}


def offline_sync_commands(runs: Sequence[RunInfo]) -> list[str]:
    """``wandb sync`` for every offline W&B folder of the runs (vmapped copies included)."""
    folders = sorted(str(p) for r in runs for p in r.path.glob("**/wandb/offline-run-*"))
    return [f"wandb sync {folder}" for folder in folders]


def build_report(spec: dict[str, Any]) -> Any:
    """The W&B report of ``spec`` (``wandb_workspaces`` object; nothing is sent)."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as err:
        raise SystemExit("--online needs the W&B report API: pip install wandb-workspaces "
                         f"(then `wandb login`); {err}") from err
    blocks = [wr.H1(spec["title"])]
    for grid in spec["grids"]:
        runset = wr.Runset(project=spec["project"], entity=spec["entity"] or "",
                           name=grid["env"], filters=f"Config('group') in {grid['groups']!r}",
                           groupby=["run.group"])
        blocks += [wr.H2(grid["env"]), wr.PanelGrid(runsets=[runset], panels=[
            wr.LinePlot(title=f"{grid['env']}: {grid['y']}", x=grid["x"], y=[grid["y"]],
                        groupby="Group", groupby_aggfunc="mean", groupby_rangefunc="stderr"),
            wr.RunComparer(diff_only="split")])]
    return wr.Report(project=spec["project"], entity=spec["entity"] or "", title=spec["title"],
                     blocks=blocks)


def push_online(spec: dict[str, Any]) -> str:
    """Saves the report to W&B (needs a login); returns its URL."""
    report = build_report(spec)
    report.save()
    return report.url


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories or globs of them")
    parser.add_argument("--out", default=None, help="offline: the aggregate's output prefix")
    parser.add_argument("--online", action="store_true", help="save a W&B report")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    runs = find_runs(args.runs)
    spec = report_spec(runs, args.title)
    if args.online:
        print(push_online(spec))
        return
    from experiments import aggregate

    for path in aggregate.main([*args.runs, "--out", args.out or "report"]):
        print(f"wrote {path}")
    for command in offline_sync_commands(runs):
        print(command)


if __name__ == "__main__":
    main()
