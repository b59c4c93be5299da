"""A soak run: train with the given overrides in a subprocess and sample the host memory (RSS of
the process and its env workers) over time, to show it stays flat over a long run.

    python -m experiments.soak --out results/soak/drqv2_toy --every 5 -- \
        experiment=quickstart loop.frames=200000 loop.update_every=50

writes ``<out>.csv`` (seconds, frames from the run's log, RSS in MiB) and ``<out>.png``, and
prints the RSS growth between the first and last quarter of the run.
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Sequence

import psutil


def tree_rss_mib(proc: psutil.Process) -> float:
    """Resident memory of ``proc`` and its children (env workers), MiB."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def last_frames(run_dir: pathlib.Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


def soak(overrides: Sequence[str], out: pathlib.Path, every: float = 5.0) -> list[tuple]:
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="soak_"))
    cmd = [sys.executable, "-m", "experiments.train", *overrides, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps, start, samples = psutil.Process(proc.pid), time.time(), []
    while proc.poll() is None:
        samples.append((round(time.time() - start, 1), last_frames(run_dir), tree_rss_mib(ps)))
        time.sleep(every)
    if proc.returncode != 0:
        raise SystemExit(f"soak run failed ({proc.returncode}): {proc.stderr.read()[-3000:]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seconds", "frames", "rss_mib"])
        writer.writerows(samples)
    _plot(samples, out.with_suffix(".png"))
    return samples


def _plot(samples: Sequence[tuple], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([s[1] for s in samples], [s[2] for s in samples])
    ax.set_xlabel("env frames")
    ax.set_ylabel("host RSS (MiB)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output prefix (.csv, .png)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("overrides", nargs="*", help="experiments.train overrides")
    args = parser.parse_args(argv)
    samples = soak(args.overrides, pathlib.Path(args.out), args.every)
    quarter = max(1, len(samples) // 4)
    first = sum(s[2] for s in samples[:quarter]) / quarter
    last = sum(s[2] for s in samples[-quarter:]) / quarter
    print(f"{len(samples)} samples over {samples[-1][0]:.0f} s, {samples[-1][1]} frames: RSS "
          f"{first:.0f} MiB (first quarter) -> {last:.0f} MiB (last quarter)")


if __name__ == "__main__":
    main()
