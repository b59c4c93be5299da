"""Tables and curves for a sweep, any suite: per task our mean ± 95% CI over seeds beside the
published numbers (Markdown and LaTeX), rliable aggregates (IQM, median, mean, optimality gap
with stratified-bootstrap CIs), probability of improvement between methods, performance
profiles and sample-efficiency curves (mean over seeds with bootstrap CIs at each evaluation).

    python -m experiments.aggregate multirun/2026-12-08/120000 --out results/x/scores \
        [--table spr_atari100k]

writes ``<out>.md`` / ``<out>.tex`` (the paper's layout), ``<out>.csv`` (per method and task),
``<out>_runs.csv``, ``<out>_aggregates.csv``, ``<out>_poi.csv``, ``<out>_curves.png`` (+ .csv;
per task), ``<out>_iqm_curve.png`` (IQM over tasks by frame) and ``<out>_profile.png``. Each argument is a run directory, a sweep directory, a glob of them
or a JSON score file (experiments/scores.py says what is read). The table (experiments/tables)
defaults to the suite's (``tables.DEFAULT_FOR_SUITE``). Rliable aggregates normalised scores:
Atari human-normalised, DMC return / 1000, Adroit and toy raw returns (the report says which).

Partial sweeps are labelled, never averaged in silently: a task with fewer seeds than the table
asks for reads "3/5 seeds"; runs that stopped before the budget are left out of the task's mean
and the aggregates (listed as "+k partial"); a task with only such runs is scored at the last
evaluation all of them reached and labelled "partial: 60k/100k frames".
"""
from __future__ import annotations

import argparse
import pathlib
from typing import Sequence

from experiments import plot_curves, report_tables, tables
# the estimates and score readers, importable from here as before
from experiments.estimates import *  # noqa: F401,F403
from experiments.estimates import (_default_table, _suite_of, aggregate, load_runs,
                                   probability_of_improvement)
from experiments.report_tables import render_markdown  # noqa: F401


def _runs_per_game_arg(text: str) -> int | str:
    if text == "min":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'min' or an integer, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> list[pathlib.Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run or sweep directories, score JSON files, "
                                                "or globs")
    parser.add_argument("--out", required=True, help="output prefix (see the module doc)")
    parser.add_argument("--table", default=None, choices=tables.names(),
                        help="the paper table to compare with (default: the suite's)")
    parser.add_argument("--method", default=None,
                        help="label every run with this method (default: from each run)")
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap replications")
    parser.add_argument("--curve-reps", type=int, default=2_000,
                        help="bootstrap replications per curve point, profile and P(X > Y)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--runs-per-game", type=_runs_per_game_arg, default=None,
                        help="tasks with unequal runs: 'min' or N uses each task's first runs "
                             "by seed for the aggregates (default: all, equal counts required)")
    parser.add_argument("--metric", choices=("return", "success"), default="return",
                        help="score runs by eval return or eval success rate (adroit, toy)")
    parser.add_argument("--frames", type=int, default=None,
                        help="hold runs to this budget instead of the table's (longer runs: "
                             "their last evaluation at or before it)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    runs = load_runs(args.runs, args.method, metric=args.metric)
    table = tables.get(args.table) if args.table else _default_table(_suite_of(runs))
    results = aggregate(runs, args.reps, args.seed, args.confidence, args.runs_per_game, table,
                        args.frames)
    poi = probability_of_improvement(results, args.curve_reps, args.seed, args.confidence)
    paths = report_tables.write_outputs(args.out, runs, results, table, poi, args.confidence,
                                        args.reps)
    if not args.no_plots:
        paths += plot_curves.write_plots(args.out, runs, results, table, args.curve_reps,
                                         args.seed, args.confidence)
    for r in results:
        if r.aggregates:
            iqm, lo, hi = r.aggregates["IQM"]
            print(f"{r.method}: {len(r.games)} tasks x {r.runs_per_game} runs, IQM {iqm:.3f} "
                  f"[{lo:.3f}, {hi:.3f}]")
        else:
            print(f"{r.method}: no run reached {r.frames:,} frames (partial cells only)")
    print("wrote " + ", ".join(map(str, paths)))
    return paths


if __name__ == "__main__":
    main()
