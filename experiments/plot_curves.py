"""Sample-efficiency curves (mean eval return over seeds, with stratified-bootstrap CIs at each
evaluation frame, rliable) and performance profiles, as PNG + CSV.

    python -m experiments.plot_curves results/drqv2_dmc/curves.png <run or sweep dirs> ... \
        [--table drqv2_dmc] [--title "DrQ-v2"] [--ref "cartpole_swingup:100000=626,250000=818"]

Runs are grouped by method (agent + objectives + modules, from ``config.yaml``) and task (one
panel each). The curve is solid, with its CI band, over the frames every seed of its group
evaluated at, and dashed beyond, where only the longer runs count (the CSV's ``seeds`` column
says how many); repeats of one seed (GPU runs differ) count as more samples. ``--group-by dir``
groups by run directory name instead (less its ``_s<seed>`` suffix), for runs of one method that
differ in a setting (e.g. fp32 against tf32). The table's published numbers are stars at its
budget; ``--ref task:frames=value,...`` adds other published points. ``experiments.aggregate``
writes the same plots (``<out>_curves.png``, ``<out>_profile.png``) through ``write_plots``: one
plotting path.
"""
from __future__ import annotations

import argparse
import csv
import glob
import pathlib
import re
from typing import Sequence

import numpy as np

from experiments import tables
from experiments.scores import RunScore, load_runs, normalized_score


def curve_groups(runs: Sequence[RunScore]) -> dict[str, dict[str, list[RunScore]]]:
    """task -> method -> its runs with a curve."""
    out: dict[str, dict[str, list[RunScore]]] = {}
    for r in runs:
        if r.curve:
            out.setdefault(r.game, {}).setdefault(r.method, []).append(r)
    return out


def curve_estimates(runs: Sequence[RunScore], reps: int = 2_000, seed: int = 0,
                    confidence: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(frames, mean, [2, frames] CI, seeds)`` over the runs (one task, one method) at every
    frame any of them evaluated at; ``seeds`` counts the runs behind each point (the plot
    dashes the points with fewer than all, rather than averaging them in unmarked)."""
    from rliable import library as rly
    from rliable import metrics

    from experiments.estimates import numpy_seed

    curves = [dict(r.curve) for r in runs]
    frames = sorted(set().union(*curves))
    means, cis, seeds = [], [], []
    with numpy_seed(seed):
        for f in frames:
            values = np.array([c[f] for c in curves if f in c])[:, None]   # [runs, 1 task]
            points, intervals = rly.get_interval_estimates(
                {"m": values}, lambda x: np.array([metrics.aggregate_mean(x)]), reps=reps,
                confidence_interval_size=confidence)
            means.append(float(points["m"][0]))
            cis.append(intervals["m"][:, 0])
            seeds.append(len(values))
    return np.array(frames), np.array(means), np.array(cis).T, np.array(seeds)


def _colors(methods: Sequence[str]) -> dict[str, str]:
    return {m: f"C{i}" for i, m in enumerate(methods)}


def plot_curves(out: pathlib.Path, runs: Sequence[RunScore], table: tables.Table | None = None,
                refs: dict[str, list[tuple[float, float]]] | None = None, title: str = "",
                reps: int = 2_000, seed: int = 0, confidence: float = 0.95
                ) -> list[pathlib.Path]:
    """``out`` (PNG, one panel per task) and ``out``'s ``.csv``: per method, task and frame the
    mean, CI and seed count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    groups = curve_groups(runs)
    if not groups:
        raise ValueError("no run has an evaluation curve (metrics.jsonl)")
    tasks = sorted(groups)
    methods = sorted({m for g in groups.values() for m in g})
    colors = _colors(methods)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 4.2), squeeze=False)
    csv_path = out.with_suffix(".csv")
    pct = round(confidence * 100)
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "task", "frames", "seeds", "eval_return_mean",
                         f"ci{pct}_low", f"ci{pct}_high"])
        for ax, task in zip(axes[0], tasks):
            for method, mruns in sorted(groups[task].items()):
                frames, mean, ci, seeds = curve_estimates(mruns, reps, seed, confidence)
                full = seeds == len(mruns)
                last = int(np.max(np.nonzero(full)[0])) + 1 if full.any() else 1
                label = f"{method} ({len(mruns)} seed{'s' * (len(mruns) > 1)}" + (
                    "; dashed: fewer" if last < len(frames) else "") + ")"
                plot_utils.plot_sample_efficiency_curve(
                    frames[:last], {label: mean[:last]}, {label: ci[:, :last]},
                    colors={label: colors[method]}, ax=ax, xlabel="env frames",
                    ylabel=f"eval {mruns[0].metric} (mean, {pct}% CI)", labelsize="medium",
                    ticklabelsize="small", marker=".")
                if last < len(frames):   # points behind only the seeds that got that far
                    tail = slice(last - 1, None)
                    ax.plot(frames[tail], mean[tail], linestyle="--", color=colors[method])
                    ax.fill_between(frames[tail], ci[0, tail], ci[1, tail], alpha=0.08,
                                    color=colors[method])
                writer.writerows([method, task, int(x), int(n), round(float(y), 3),
                                  round(float(lo), 3), round(float(hi), 3)]
                                 for x, y, lo, hi, n in zip(frames, mean, ci[0], ci[1], seeds))
            if table is not None and table.frames:
                for k, pub in enumerate(table.published):
                    cell = pub.scores.get(task)
                    if cell is not None:
                        ax.plot([table.frames], [cell.mean], marker="*", markersize=11,
                                linestyle="none", color=f"C{len(methods) + k}",
                                label=f"{pub.method} (paper)")
            for x, y in (refs or {}).get(task, []):
                ax.plot([x], [y], "k*", markersize=10)
            ax.set_title(task)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=7)
    if title:   # one title for the figure; each panel is named by its task
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out, csv_path]


def plot_profile(out: pathlib.Path, score_dict: dict[str, np.ndarray], xlabel: str,
                 reps: int = 2_000, seed: int = 0, confidence: float = 0.95) -> pathlib.Path:
    """Performance profiles (fraction of runs above tau, with CIs) of ``[runs, tasks]``
    normalised score matrices, one per method (rliable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import plot_utils

    from experiments.estimates import numpy_seed

    top = max(float(np.max(m)) for m in score_dict.values())
    taus = np.linspace(min(0.0, min(float(np.min(m)) for m in score_dict.values())),
                       max(top, 1e-6) * 1.05, 81)
    with numpy_seed(seed):
        profiles, cis = rly.create_performance_profile(score_dict, taus, reps=reps,
                                                       confidence_interval_size=confidence)
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, ax=ax,
                                         colors=_colors(sorted(score_dict)), xlabel=xlabel,
                                         labelsize="medium", ticklabelsize="small")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def iqm_curves(results: Sequence, runs: Sequence[RunScore], reps: int = 2_000, seed: int = 0,
               confidence: float = 0.95) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per method with complete runs: ``(frames, IQM, [2, frames] CI)`` of the normalised scores
    over its aggregated tasks and runs (rliable's sample-efficiency recipe), at the frames every
    one of those runs evaluated at."""
    from rliable import library as rly
    from rliable import metrics

    from experiments.estimates import numpy_seed
    from experiments.scores import seed_order

    out = {}
    for res in results:
        if res.matrix is None:
            continue
        per_task = [sorted((r for r in runs if r.method == res.method and r.game == g
                            and r.frames >= res.frames and r.curve), key=seed_order)
                    [:res.runs_per_game] for g in res.games]
        if any(len(t) < res.runs_per_game for t in per_task):
            continue   # a complete run without a curve (a score file): no curve to draw
        frames = sorted(set.intersection(*(set(dict(r.curve)) for t in per_task for r in t)))
        if not frames:
            continue

        def norm(r: RunScore, f: int) -> float:
            value = dict(r.curve)[f]
            return value if r.metric == "success" else float(
                normalized_score(r.suite, r.game, value))

        scores = np.array([[[norm(r, f) for f in frames] for r in t] for t in per_task])
        scores = scores.transpose(1, 0, 2)   # [runs, tasks, frames]

        def iqm(x: np.ndarray) -> np.ndarray:
            return np.array([metrics.aggregate_iqm(x[..., i]) for i in range(x.shape[-1])])

        with numpy_seed(seed):
            points, cis = rly.get_interval_estimates({"m": scores}, iqm, reps=reps,
                                                     confidence_interval_size=confidence)
        out[res.method] = (np.array(frames), points["m"], cis["m"])
    return out


def plot_iqm_curves(out: pathlib.Path, curves: dict, ylabel: str) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    colors = _colors(sorted(curves))
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, (frames, points, cis) in sorted(curves.items()):
        plot_utils.plot_sample_efficiency_curve(
            frames, {method: points}, {method: cis}, colors={method: colors[method]}, ax=ax,
            xlabel="env frames", ylabel=ylabel, labelsize="medium", ticklabelsize="small",
            marker=".")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_plots(out: str | pathlib.Path, runs: Sequence[RunScore], results: Sequence,
                table: tables.Table, reps: int = 2_000, seed: int = 0,
                confidence: float = 0.95) -> list[pathlib.Path]:
    """``experiments.aggregate``'s plots: ``<out>_curves.png`` (+ .csv) and, for methods with
    complete runs, ``<out>_iqm_curve.png`` (IQM over tasks by frame) and ``<out>_profile.png``."""
    out = pathlib.Path(out)
    stem = out.with_suffix("") if out.suffix in (".md", ".csv", ".tex") else out
    paths = []
    if any(r.curve for r in runs):
        paths += plot_curves(stem.with_name(stem.name + "_curves.png"), runs, table,
                             title=table.title, reps=reps, seed=seed, confidence=confidence)
    curves = iqm_curves(results, runs, reps, seed, confidence)
    if curves:
        what = ("success rate" if any(r.metric == "success" for r in runs)
                else tables.NORMALISATION_SHORT[table.suite])
        paths.append(plot_iqm_curves(stem.with_name(stem.name + "_iqm_curve.png"), curves,
                                     f"IQM over tasks and runs ({what})"))
    matrices = {r.method: r.matrix for r in results if r.matrix is not None}
    if matrices:
        paths.append(plot_profile(stem.with_name(stem.name + "_profile.png"), matrices,
                                  f"tau ({tables.NORMALISATION_SHORT[table.suite]})", reps, seed,
                                  confidence))
    return paths


def _refs(specs: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
    refs: dict[str, list[tuple[float, float]]] = {}
    for spec in specs:
        task, points = spec.split(":", 1)
        refs[task] = [tuple(float(x) for x in p.split("=")) for p in points.split(",")]
    return refs


def _dir_method(path: str) -> str:
    """``drqv2_fp32_cartpole_swingup_s3`` -> ``drqv2_fp32_cartpole_swingup`` (``_s1x3``: 3
    vmapped seeds from seed 1)."""
    return re.sub(r"_s\d+(x\d+)?$", "", pathlib.Path(path).absolute().name)


def _load(paths: Sequence[str], group_by: str) -> list[RunScore]:
    if group_by == "method":
        return load_runs(paths, unique=False)
    expanded = [m for p in paths for m in (sorted(glob.glob(p)) if glob.has_magic(p) else [p])]
    return [r for p in expanded for r in load_runs([p], _dir_method(p), unique=False)]


def main(argv: Sequence[str] | None = None) -> list[pathlib.Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG path; a CSV with the same stem is written beside it")
    parser.add_argument("runs", nargs="+", help="run or sweep directories, or globs")
    parser.add_argument("--table", default=None, choices=tables.names(),
                        help="draw this table's published numbers at its budget")
    parser.add_argument("--ref", action="append", default=[], help="task:frames=value,...")
    parser.add_argument("--title", default="")
    parser.add_argument("--group-by", choices=("method", "dir"), default="method",
                        help="method: agent+objectives+modules from config.yaml; dir: the run "
                             "directory's name less its _s<seed> suffix")
    parser.add_argument("--reps", type=int, default=2_000, help="bootstrap replications")
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)
    runs = _load(args.runs, args.group_by)
    paths = plot_curves(pathlib.Path(args.out), runs,
                        tables.get(args.table) if args.table else None, _refs(args.ref),
                        args.title, args.reps, confidence=args.confidence)
    print("wrote " + ", ".join(map(str, paths)))
    return paths


if __name__ == "__main__":
    main()
