"""Learning curves from run directories, with published reference points, as PNG + CSV.

    python -m experiments.plot_curves results/drqv2_dmc/curves.png runs/a runs/b ... \
        --ref "cartpole_swingup:100000=626,250000=818" --title "DrQ-v2"

Each run directory's ``metrics.jsonl`` gives ``eval/return`` by env frame; runs are grouped into
one panel per env (from ``config.yaml``) and labelled by their directory name.
``--ref task:frames=value,...`` adds published points to that task's panel.
``--color-by-method`` gives every run of one method (its directory name up to the first ``_``,
e.g. ``repo`` or ``dreamer``) one colour, and its runs (seeds, sessions) different line styles.
"""
from __future__ import annotations

import argparse
import csv
import pathlib

from rl.logging import read_metrics


def eval_curve(run_dir: pathlib.Path) -> tuple[str, list[tuple[int, float, float]]]:
    import yaml

    config = run_dir / "config.yaml"
    if not config.exists():   # seed_<k>/ of a run with vmapped seeds: the config is one up
        config = run_dir.parent / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    rows = [r for r in read_metrics(run_dir) if "eval/return" in r]
    return cfg["env"]["name"], [(r["step"], r["eval/return"], r["eval/return_std"]) for r in rows]


def _label(run_dir: pathlib.Path) -> str:
    """``<batch>/<run>`` (the parent folder names the batch of runs, e.g. ``session9``), or
    ``<run>/seed_<k>`` for one copy of a run with vmapped seeds."""
    run_dir = run_dir.absolute()
    return f"{run_dir.parent.name}/{run_dir.name}"


def _method(label: str) -> str:
    """The method a run belongs to: its directory name up to the first ``_`` (for
    ``<run>/seed_<k>``, the run's)."""
    parts = label.split("/")
    name = parts[-2] if parts[-1].startswith("seed_") and len(parts) > 1 else parts[-1]
    return name.split("_", 1)[0]


def method_looks(labels: list[str]) -> dict[str, dict[str, str]]:
    """Matplotlib line looks for ``--color-by-method``: one colour per method, and the runs of a
    method (in the given order) cycle through line styles."""
    methods = sorted({_method(label) for label in labels})
    styles = ["-", "--", ":", "-."]
    seen: dict[str, int] = {}
    looks = {}
    for label in labels:
        method = _method(label)
        k = seen[method] = seen.get(method, -1) + 1
        looks[label] = {"color": f"C{methods.index(method)}", "linestyle": styles[k % len(styles)]}
    return looks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG path; a CSV with the same stem is written beside it")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--ref", action="append", default=[], help="task:frames=value,...")
    parser.add_argument("--ref-label", default="published")
    parser.add_argument("--title", default="")
    parser.add_argument("--color-by-method", action="store_true",
                        help="one colour per method, one line style per run of it")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(_label(pathlib.Path(r)), *eval_curve(pathlib.Path(r))) for r in args.runs]
    refs = {}
    for spec in args.ref:
        task, points = spec.split(":", 1)
        refs[task] = [tuple(float(x) for x in p.split("=")) for p in points.split(",")]
    envs = sorted({name for _, name, _ in curves})
    looks = (method_looks([run for run, _, _ in curves]) if args.color_by_method
             else {run: {} for run, _, _ in curves})
    # legends go under the panels (inside, they hid the curves once a panel had many runs)
    most_lines = max(sum(name == env for _, name, _ in curves) for env in envs) + bool(refs)
    fig, axes = plt.subplots(1, len(envs), figsize=(4.6 * len(envs), 3.6 + 0.14 * most_lines),
                             squeeze=False)
    out = pathlib.Path(args.out)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "env", "frames", "eval_return_mean", "eval_return_std"])
        for ax, env_name in zip(axes[0], envs):
            for run, name, points in curves:
                if name != env_name:
                    continue
                xs, ys, ss = zip(*points)
                line, = ax.plot(xs, ys, marker=".", label=run, **looks[run])
                ax.fill_between(xs, [y - s for y, s in zip(ys, ss)],
                                [y + s for y, s in zip(ys, ss)], alpha=0.15, color=line.get_color())
                writer.writerows([run, name, x, round(y, 2), round(s, 2)] for x, y, s in points)
            task = env_name.split("/", 1)[1]
            if task in refs:
                rx, ry = zip(*refs[task])
                ax.plot(rx, ry, "k*", markersize=10, label=args.ref_label)
            ax.set_title(env_name)
            ax.set_xlabel("env frames")
            ax.set_ylabel("eval return (10 episodes)")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7)
    if args.title:  # one title for the figure; each panel is named by its task
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out} and {out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
