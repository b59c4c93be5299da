"""Atari 100k results: per-game means, human-normalised scores and rliable aggregates (IQM,
median, mean, optimality gap with stratified-bootstrap CIs), beside the published numbers.

    python -m experiments.aggregate 'runs/atari/*' --out results/atari100k_spr

writes ``<out>.md`` (per game: ours, SPR and DER as published, random, human; then the
aggregates), ``<out>.csv`` (per method and game), ``<out>_runs.csv`` (per run) and
``<out>_aggregates.csv``.

Each argument is a run directory, a glob of them, or a JSON score file. A run's score is read
from its ``score.json`` (``write_score``) if it has one; otherwise from what
``experiments.train`` leaves behind: ``config.yaml`` (game, seed, method = the agent's name,
``+objective`` if any) and ``final.json`` (the final evaluation's mean return), with frames from
the last evaluation in ``metrics.jsonl``. A run with vmapped seeds gives one score per
``seed_<k>/`` (its last evaluation). The score file format, one run per file (or a JSON list of
such records)::

    {"game": "Pong", "seed": 1, "method": "spr", "score": -5.9, "frames": 400000, "episodes": 100}

``episodes`` (evaluation episodes behind ``score``) is optional.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import glob
import json
import math
import pathlib
import re
from typing import Any, Iterator, Sequence

import numpy as np

from rl.envs import atari100k

SCORE_FILE = "score.json"
METRICS = ("IQM", "Median", "Mean", "Optimality gap")
REFERENCE_METHODS = ("SPR", "DER")   # published columns shown in the per-game table


@dataclasses.dataclass(frozen=True)
class RunScore:
    """The final score of one run (one method, one game, one seed)."""

    game: str
    seed: int | str
    method: str
    score: float
    frames: int
    episodes: int | None = None
    source: str = ""      # where it was read from (not written to score files)

    def __post_init__(self):
        where = f" ({self.source})" if self.source else ""
        object.__setattr__(self, "game", _checked(atari100k.check_game, self.game, where))
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a non-empty string, got {self.method!r}{where}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, str)):
            raise ValueError(f"seed must be an int or a string, got {self.seed!r}{where}")
        if (isinstance(self.score, bool) or not isinstance(self.score, (int, float))
                or not math.isfinite(self.score)):
            raise ValueError(f"score must be a finite number, got {self.score!r}{where}")
        for name in ("frames", "episodes"):
            value = getattr(self, name)
            if value is None and name == "episodes":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}{where}")

    @property
    def hns(self) -> float:
        return atari100k.human_normalized_score(self.game, self.score)

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record.pop("source")
        if record["episodes"] is None:
            record.pop("episodes")
        return record


def _checked(fn, value, where):
    try:
        return fn(value)
    except ValueError as e:
        raise ValueError(f"{e}{where}") from None


def _integral(value: Any) -> Any:
    """JSON/YAML numbers such as 400000.0 (final.json's ``episodes``) as ints."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def from_record(record: Any, source: str) -> RunScore:
    """A ``RunScore`` from one parsed score-file record; errors name the file and field."""
    if not isinstance(record, dict):
        raise ValueError(f"{source}: a score record must be a JSON object, got {record!r}")
    fields = {f.name for f in dataclasses.fields(RunScore)} - {"source"}
    required = fields - {"episodes"}
    missing, unknown = sorted(required - set(record)), sorted(set(record) - fields)
    if missing or unknown:
        raise ValueError(f"{source}: score record {record} has missing fields {missing} / "
                         f"unknown fields {unknown}; fields: {sorted(fields)}")
    values = {k: _integral(v) if k in ("frames", "episodes") else v for k, v in record.items()}
    return RunScore(**values, source=source)


def write_score(run_dir: str | pathlib.Path, game: str, seed: int | str, method: str,
                score: float, frames: int, episodes: int | None = None) -> pathlib.Path:
    """Writes ``<run_dir>/score.json`` (validated first); what a training or evaluation script
    calls after its final evaluation, e.g.
    ``write_score(run_dir, "Pong", cfg.seed, "spr", final["return"], frames, 100)``."""
    record = RunScore(game=game, seed=seed, method=method, score=float(score), frames=frames,
                      episodes=episodes, source=str(run_dir))
    path = pathlib.Path(run_dir) / SCORE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.to_json(), indent=2) + "\n")
    return path


# ----------------------------------------------------------------------------- reading runs
def _read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _method_of(cfg: dict) -> str:
    agent = cfg.get("agent") or {}
    objectives = agent.get("objectives") or {}
    if isinstance(agent.get("objective"), dict):   # runs from before the objective lists
        objectives = {"objective": agent["objective"]}
    names = [o["name"] for o in objectives.values() if isinstance(o, dict) and o.get("name")]
    return "+".join([agent.get("name", "?"), *names])


def _last_eval(run_dir: pathlib.Path) -> dict | None:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "eval/return" in r]
    return evals[-1] if evals else None


def runs_from_dir(run_dir: pathlib.Path, method: str | None = None) -> list[RunScore]:
    """The score(s) of one run directory (see the module docstring)."""
    if (run_dir / SCORE_FILE).exists():
        return runs_from_file(run_dir / SCORE_FILE, method)
    if not (run_dir / "config.yaml").exists():
        raise ValueError(f"{run_dir}: neither {SCORE_FILE} nor config.yaml; not a run directory")
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    env_name = cfg.get("env", {}).get("name", "")
    game = _checked(atari100k.check_game, env_name, f" ({run_dir}/config.yaml: env.name)")
    method = method or _method_of(cfg)
    if not (run_dir / "final.json").exists():
        raise ValueError(f"{run_dir}: no final.json, so the run has not finished")
    num_seeds = int(cfg.get("num_seeds", 1))
    if num_seeds == 1:
        final = _read_json(run_dir / "final.json")
        last = _last_eval(run_dir)
        frames = int(last["step"]) if last else int(cfg["loop"]["frames"])
        return [RunScore(game=game, seed=cfg["seed"], method=method, score=final["return"],
                         frames=frames, episodes=_integral(final.get("episodes")),
                         source=str(run_dir))]
    runs = []
    for k in range(num_seeds):   # vmapped copies: each logs its evaluations in seed_<k>/
        last = _last_eval(run_dir / f"seed_{k}")
        if last is None:
            raise ValueError(f"{run_dir}/seed_{k}: no evaluation in metrics.jsonl")
        runs.append(RunScore(game=game, seed=f"{cfg['seed']}/seed_{k}", method=method,
                             score=last["eval/return"], frames=int(last["step"]),
                             episodes=_integral(last.get("eval/episodes")),
                             source=f"{run_dir}/seed_{k}"))
    return runs


def runs_from_file(path: pathlib.Path, method: str | None = None) -> list[RunScore]:
    """Score records from a JSON file (one record or a list); ``method`` overrides theirs."""
    data = _read_json(path)
    records = data if isinstance(data, list) else [data]
    runs = [from_record(r, str(path)) for r in records]
    return [dataclasses.replace(r, method=method) for r in runs] if method else runs


def load_runs(paths: Sequence[str], method: str | None = None) -> list[RunScore]:
    """Every run named by ``paths`` (directories, JSON files or globs of them); a pattern that
    matches nothing, or the same (method, game, seed) twice, is an error."""
    runs: list[RunScore] = []
    for pattern in paths:
        if glob.has_magic(pattern):   # a glob's other files (e.g. multirun.yaml) are skipped
            matches = [pathlib.Path(m) for m in sorted(glob.glob(pattern))]
            matches = [m for m in matches if m.is_dir() or m.suffix == ".json"]
        else:
            matches = [pathlib.Path(pattern)] if pathlib.Path(pattern).exists() else []
        if not matches:
            raise ValueError(f"no run directory or score file matches {pattern!r}")
        for match in matches:
            if match.is_dir():
                runs += runs_from_dir(match, method)
            elif match.suffix == ".json":
                runs += runs_from_file(match, method)
            else:
                raise ValueError(f"{match}: expected a run directory or a .json score file")
    if not runs:
        raise ValueError(f"no runs in {list(paths)}")
    seen: dict[tuple, str] = {}
    for r in runs:
        key = (r.method, r.game, str(r.seed))
        if key in seen:
            raise ValueError(f"method {r.method!r}, game {r.game!r}, seed {r.seed!r} appears "
                             f"twice: {seen[key]} and {r.source}")
        seen[key] = r.source
    return runs


# ----------------------------------------------------------------------------- aggregation
def by_method(runs: Sequence[RunScore]) -> dict[str, list[RunScore]]:
    out: dict[str, list[RunScore]] = {}
    for r in runs:
        out.setdefault(r.method, []).append(r)
    return out


def seed_order(run: RunScore) -> tuple:
    """Sort key: seeds in numeric order, vmapped copies after their run's seed ("2" <
    "2/seed_1" < "10"), where plain string order would put "10" before "2"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", str(run.seed)) if part)


def hns_matrix(runs: Sequence[RunScore], runs_per_game: int | str | None = None
               ) -> tuple[tuple[str, ...], np.ndarray]:
    """One method's HNS as rliable wants it: ``[runs, games]``, games in benchmark order.

    The stratified bootstrap needs the same number of runs in every game. ``runs_per_game``:
    ``None`` requires it; an int ``n`` takes each game's first ``n`` runs (sorted by seed) and
    needs at least ``n`` in every game; ``"min"`` takes the smallest count. Runs are paired by
    their order within a game, which the bootstrap ignores (it resamples runs per game).
    """
    methods = {r.method for r in runs}
    if len(methods) != 1:
        raise ValueError(f"hns_matrix takes the runs of one method, got {sorted(methods)}")
    method = methods.pop()
    per_game: dict[str, list[RunScore]] = {}
    for r in runs:
        per_game.setdefault(r.game, []).append(r)
    counts = {g: len(v) for g, v in per_game.items()}
    n = _runs_per_game(method, counts, runs_per_game)
    games = tuple(g for g in atari100k.GAMES if g in per_game)
    columns = [[r.hns for r in sorted(per_game[g], key=seed_order)[:n]]
               for g in games]
    return games, np.array(columns, dtype=np.float64).T


def _runs_per_game(method: str, counts: dict[str, int], wanted: int | str | None) -> int:
    if wanted is None:
        if len(set(counts.values())) != 1:
            raise ValueError(f"method {method!r}: every game needs the same number of runs "
                             f"for the stratified bootstrap; runs per game: {counts}. Pass "
                             f"runs_per_game (--runs-per-game) 'min' or a number to use each "
                             f"game's first runs by seed")
        return next(iter(counts.values()))
    if wanted == "min":
        return min(counts.values())
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        raise ValueError(f"runs_per_game must be None, 'min' or a positive integer, "
                         f"got {wanted!r}")
    short = {g: c for g, c in counts.items() if c < wanted}
    if short:
        raise ValueError(f"method {method!r}: runs_per_game={wanted} but these games have "
                         f"fewer runs: {short}")
    return wanted


def _aggregate_fn():
    from rliable import metrics

    return lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x),
                               metrics.aggregate_mean(x), metrics.aggregate_optimality_gap(x)])


def point_estimates(matrix: np.ndarray) -> dict[str, float]:
    """IQM, median, mean, optimality gap (gamma 1) of a ``[runs, games]`` HNS matrix (median
    and mean over per-game means, IQM over all run-game scores, as rliable defines them)."""
    return dict(zip(METRICS, map(float, _aggregate_fn()(np.asarray(matrix, np.float64)))))


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    # rliable's StratifiedBootstrap draws its indices from numpy's global generator (its
    # random_state is not used for them), so a reproducible CI needs the global seed.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def interval_estimates(matrix: np.ndarray, reps: int = 50_000, seed: int = 0,
                       confidence: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """``{metric: (point, low, high)}`` with stratified-bootstrap percentile CIs (rliable)."""
    from rliable import library as rly

    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(f"need a [runs, games] matrix with at least one of each, got shape "
                         f"{matrix.shape}")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    with _numpy_seed(seed):
        points, intervals = rly.get_interval_estimates(
            {"m": matrix}, _aggregate_fn(), reps=reps, confidence_interval_size=confidence)
    return {name: (float(points["m"][i]), float(intervals["m"][0, i]),
                   float(intervals["m"][1, i])) for i, name in enumerate(METRICS)}


@dataclasses.dataclass
class MethodResult:
    method: str
    games: tuple[str, ...]
    runs_per_game: int                  # runs per game behind the aggregates
    frames: int
    episodes: tuple[int, ...]           # distinct evaluation-episode counts (empty: unknown)
    scores: dict[str, np.ndarray]       # game -> raw final scores, sorted by seed
    aggregates: dict[str, tuple[float, float, float]]


def aggregate(runs: Sequence[RunScore], reps: int = 50_000, seed: int = 0,
              confidence: float = 0.95, runs_per_game: int | str | None = None
              ) -> list[MethodResult]:
    """One ``MethodResult`` per method; a method's runs must share one frame budget. The
    per-game scores keep every run; the aggregates use ``runs_per_game`` (see ``hns_matrix``)."""
    results = []
    for method, mruns in by_method(runs).items():
        frames = sorted({r.frames for r in mruns})
        if len(frames) != 1:
            raise ValueError(f"method {method!r}: runs at different budgets {frames} frames; "
                             f"aggregate one budget at a time")
        games, matrix = hns_matrix(mruns, runs_per_game)
        scores = {g: np.array([r.score for r in sorted(mruns, key=seed_order)
                               if r.game == g]) for g in games}
        episodes = tuple(sorted({r.episodes for r in mruns if r.episodes is not None}))
        results.append(MethodResult(method, games, matrix.shape[0], frames[0], episodes, scores,
                                    interval_estimates(matrix, reps, seed, confidence)))
    return results


def published_point_estimates(method: str, games: Sequence[str]) -> dict[str, float]:
    """Aggregates of a published method's per-game means over ``games`` (one "run" per game:
    no CI, and its IQM is over game means, not over runs)."""
    return point_estimates(atari100k.published_hns(method, tuple(games))[None, :])


# ----------------------------------------------------------------------------- output
def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def render_markdown(results: Sequence[MethodResult], confidence: float = 0.95,
                    reps: int = 50_000) -> str:
    protocol = atari100k.PROTOCOL
    lines = ["# Atari 100k", ""]
    lines.append(f"Protocol: {protocol.agent_steps:,} agent steps = {protocol.frames:,} frames "
                 f"(frame skip {protocol.frame_skip}), final agent evaluated on "
                 f"{protocol.eval_episodes} episodes, {protocol.seeds} seeds per game in SPR. "
                 "HNS = (score − random) / (human − random).")
    lines.append("")
    for res in results:
        notes = []
        if res.frames != protocol.frames:
            notes.append(f"**not the protocol's {protocol.frames:,}**")
        if res.episodes and res.episodes != (protocol.eval_episodes,):
            notes.append(f"eval episodes {', '.join(map(str, res.episodes))} "
                         f"(protocol {protocol.eval_episodes})")
        counts = sorted({len(s) for s in res.scores.values()})
        if counts != [res.runs_per_game]:
            spread = f"{counts[0]}–{counts[-1]}" if len(counts) > 1 else f"{counts[0]}"
            notes.append(f"the aggregates use each game's first {res.runs_per_game} run(s) by "
                         f"seed, the per-game rows all {spread}")
        lines.append(f"- `{res.method}`: {len(res.games)}/{len(atari100k.GAMES)} games, "
                     f"{res.runs_per_game} run(s) per game, {res.frames:,} frames"
                     + (f" ({'; '.join(notes)})" if notes else ""))
    lines += ["", "## Per game (mean ± std over runs; HNS of the mean)", ""]
    methods = [r.method for r in results]
    header = ["Game", *[f"{m}" for m in methods], *[f"{m} HNS" for m in methods],
              *[f"{m} (paper)" for m in REFERENCE_METHODS], "Random", "Human"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    games = [g for g in atari100k.GAMES if any(g in r.games for r in results)]
    for g in games:
        ours, hns = [], []
        for r in results:
            if g in r.scores:
                s = r.scores[g]
                ours.append(f"{_fmt(s.mean())} ± {_fmt(s.std())}" if len(s) > 1
                            else _fmt(s.mean()))
                hns.append(_fmt(atari100k.human_normalized_score(g, float(s.mean())), 3))
            else:
                ours.append("—")
                hns.append("—")
        refs = [_fmt(atari100k.PUBLISHED[m][g]) for m in REFERENCE_METHODS]
        lines.append("| " + " | ".join([g, *ours, *hns, *refs, _fmt(atari100k.RANDOM_SCORES[g]),
                                         _fmt(atari100k.HUMAN_SCORES[g])]) + " |")
    pct = round(confidence * 100)
    lines += ["", f"## Aggregates (HNS; {pct}% stratified-bootstrap CIs, {reps:,} reps, rliable)",
              "", "| Method | Games | Runs/game | " + " | ".join(METRICS) + " |",
              "|---|---|---|" + "---|" * len(METRICS)]
    for r in results:
        cells = [f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in
                 (r.aggregates[m] for m in METRICS)]
        lines.append(f"| {r.method} | {len(r.games)} | {r.runs_per_game} | "
                     + " | ".join(cells) + " |")
    for games in dict.fromkeys(r.games for r in results):
        for m in REFERENCE_METHODS:
            est = published_point_estimates(m, games)
            lines.append(f"| {m} (paper, per-game means) | {len(games)} | "
                         f"{atari100k.PUBLISHED_SEEDS.get(m, '—')} (means only) | "
                         + " | ".join(f"{est[k]:.3f}" for k in METRICS) + " |")
    lines += ["", "The paper rows apply the same estimators to the published per-game means "
              "(no CIs; their IQM trims game means, ours trims runs). Printed in the papers, "
              "over all 26 games: " + "; ".join(
                  f"{m} mean {atari100k.PUBLISHED_AGGREGATES[m]['mean']:.3f}, median "
                  f"{atari100k.PUBLISHED_AGGREGATES[m]['median']:.3f}" for m in REFERENCE_METHODS)
              + ".", ""]
    return "\n".join(lines)


def write_outputs(out: str | pathlib.Path, runs: Sequence[RunScore],
                  results: Sequence[MethodResult], confidence: float = 0.95,
                  reps: int = 50_000) -> list[pathlib.Path]:
    """``<out>.md``, ``<out>.csv`` (per method and game), ``<out>_runs.csv``,
    ``<out>_aggregates.csv``; returns their paths."""
    out = pathlib.Path(out)
    stem = out.with_suffix("") if out.suffix in (".md", ".csv") else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + s) for s in (".md", ".csv", "_runs.csv",
                                                      "_aggregates.csv")]
    paths[0].write_text(render_markdown(results, confidence, reps))
    with open(paths[1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "game", "runs", "frames", "score_mean", "score_std", "hns",
                    *[f"{m.lower()}_paper" for m in REFERENCE_METHODS], "random", "human"])
        for r in results:
            for g in r.games:
                s = r.scores[g]
                w.writerow([r.method, g, len(s), r.frames, round(float(s.mean()), 4),
                            round(float(s.std()), 4),
                            round(atari100k.human_normalized_score(g, float(s.mean())), 5),
                            *[atari100k.PUBLISHED[m][g] for m in REFERENCE_METHODS],
                            atari100k.RANDOM_SCORES[g], atari100k.HUMAN_SCORES[g]])
    with open(paths[2], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "game", "seed", "frames", "episodes", "score", "hns", "source"])
        for run in runs:
            w.writerow([run.method, run.game, run.seed, run.frames, run.episodes or "",
                        run.score, round(run.hns, 5), run.source])
    with open(paths[3], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "games", "runs_per_game", "frames", "metric", "point", "ci_low",
                    "ci_high", "confidence", "reps"])
        for r in results:
            for m in METRICS:
                w.writerow([r.method, len(r.games), r.runs_per_game, r.frames, m,
                            *[round(v, 5) for v in r.aggregates[m]], confidence, reps])
    return paths


def _runs_per_game_arg(text: str) -> int | str:
    if text == "min":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'min' or an integer, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> list[pathlib.Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories, score JSON files, or globs")
    parser.add_argument("--out", required=True,
                        help="output prefix: writes <out>.md, <out>.csv, <out>_runs.csv, "
                             "<out>_aggregates.csv")
    parser.add_argument("--method", default=None,
                        help="label every run with this method (default: from each run)")
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap replications")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--runs-per-game", type=_runs_per_game_arg, default=None,
                        help="games with unequal runs: 'min' or N uses each game's first runs "
                             "by seed for the aggregates (default: all, equal counts required)")
    args = parser.parse_args(argv)
    runs = load_runs(args.runs, args.method)
    results = aggregate(runs, args.reps, args.seed, args.confidence, args.runs_per_game)
    paths = write_outputs(args.out, runs, results, args.confidence, args.reps)
    for r in results:
        iqm, lo, hi = r.aggregates["IQM"]
        print(f"{r.method}: {len(r.games)} games x {r.runs_per_game} runs, IQM {iqm:.3f} "
              f"[{lo:.3f}, {hi:.3f}]")
    print("wrote " + ", ".join(map(str, paths)))
    return paths


if __name__ == "__main__":
    main()
