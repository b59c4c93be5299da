"""The estimates behind ``experiments.aggregate``: per-task cells, rliable aggregates (IQM,
median, mean, optimality gap with stratified-bootstrap CIs), Student-t CIs over seeds and the
probability of improvement, for runs of any suite (``experiments.scores``). The tables and
plots that show them: ``experiments.report_tables``, ``experiments.plot_curves``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from typing import Iterator, Sequence

import numpy as np

from experiments import tables
from experiments.scores import (RunScore, load_runs, runs_from_dir, runs_from_file,  # noqa: F401
                                seed_order, write_score, SCORE_FILE, normalized_score)

METRICS = ("IQM", "Median", "Mean", "Optimality gap")


@dataclasses.dataclass
class TaskCell:
    """One method's runs on one task, as the table shows them."""

    scores: np.ndarray          # raw scores behind the cell (sorted by seed)
    frames: int                 # the frame they were scored at
    complete: bool              # at the table's budget (False: partial runs only)
    partial_runs: int = 0       # runs that stopped early, left out (complete cells only)


@dataclasses.dataclass
class MethodResult:
    method: str
    games: tuple[str, ...]              # tasks behind the aggregates (complete runs)
    runs_per_game: int                  # runs per task behind the aggregates
    frames: int                         # the budget the runs are held to
    episodes: tuple[int, ...]           # distinct evaluation-episode counts (empty: unknown)
    scores: dict[str, np.ndarray]       # task -> raw final scores of complete runs, by seed
    aggregates: dict[str, tuple[float, float, float]]
    suite: str = "atari"
    cells: dict[str, TaskCell] = dataclasses.field(default_factory=dict)   # every task
    matrix: np.ndarray | None = None    # [runs, games] normalised, what the aggregates use
    metric: str = "return"              # what the runs are scored by (scores.METRICS)


def by_method(runs: Sequence[RunScore]) -> dict[str, list[RunScore]]:
    out: dict[str, list[RunScore]] = {}
    for r in runs:
        out.setdefault(r.method, []).append(r)
    return out


def _task_order(suite: str, tasks: set[str], table: tables.Table | None) -> tuple[str, ...]:
    known = tuple(table.tasks) if table is not None and table.suite == suite else ()
    return tuple(t for t in known if t in tasks) + tuple(sorted(tasks - set(known)))


def score_matrix(runs: Sequence[RunScore], runs_per_game: int | str | None = None,
                 table: tables.Table | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """One method's normalised scores as rliable wants them: ``[runs, tasks]``, tasks in the
    table's order.

    The stratified bootstrap needs the same number of runs in every task. ``runs_per_game``:
    ``None`` requires it; an int ``n`` takes each task's first ``n`` runs (sorted by seed) and
    needs at least ``n`` in every task; ``"min"`` takes the smallest count. Runs are paired by
    their order within a task, which the bootstrap ignores (it resamples runs per task).
    """
    methods = {r.method for r in runs}
    if len(methods) != 1:
        raise ValueError(f"score_matrix takes the runs of one method, got {sorted(methods)}")
    method = methods.pop()
    per_task: dict[str, list[RunScore]] = {}
    for r in runs:
        per_task.setdefault(r.game, []).append(r)
    n = _runs_per_game(method, {g: len(v) for g, v in per_task.items()}, runs_per_game)
    suite = runs[0].suite
    games = _task_order(suite, set(per_task), table or _default_table(suite))
    columns = [[r.normalized for r in sorted(per_task[g], key=seed_order)[:n]] for g in games]
    return games, np.array(columns, dtype=np.float64).T


hns_matrix = score_matrix   # the Atari-only name it had


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
    """IQM, median, mean, optimality gap (gamma 1) of a ``[runs, tasks]`` matrix (median
    and mean over per-task means, IQM over all run-task scores, as rliable defines them)."""
    return dict(zip(METRICS, map(float, _aggregate_fn()(np.asarray(matrix, np.float64)))))


@contextlib.contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    # rliable's bootstraps draw their indices from numpy's global generator (its random_state
    # is not used for them), so a reproducible CI needs the global seed.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _check_reps(reps: int, confidence: float) -> None:
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def interval_estimates(matrix: np.ndarray, reps: int = 50_000, seed: int = 0,
                       confidence: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """``{metric: (point, low, high)}`` with stratified-bootstrap percentile CIs (rliable)."""
    from rliable import library as rly

    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(f"need a [runs, games] matrix with at least one of each, got shape "
                         f"{matrix.shape}")
    _check_reps(reps, confidence)
    with numpy_seed(seed):
        points, intervals = rly.get_interval_estimates(
            {"m": matrix}, _aggregate_fn(), reps=reps, confidence_interval_size=confidence)
    return {name: (float(points["m"][i]), float(intervals["m"][0, i]),
                   float(intervals["m"][1, i])) for i, name in enumerate(METRICS)}


def mean_ci(scores: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t CI over seeds (0 for one seed: no spread to
    measure; the table then says "1/N seeds")."""
    from scipy import stats

    scores = np.asarray(scores, np.float64)
    if len(scores) < 2:
        return float(scores.mean()), 0.0
    sem = scores.std(ddof=1) / np.sqrt(len(scores))
    return float(scores.mean()), float(stats.t.ppf(0.5 + confidence / 2, len(scores) - 1) * sem)


def _default_table(suite: str) -> tables.Table:
    return tables.default_for(suite)


def _suite_of(runs: Sequence[RunScore]) -> str:
    suites = sorted({r.suite for r in runs})
    if len(suites) != 1:
        raise ValueError(f"runs from several suites {suites}: aggregate one suite at a time")
    return suites[0]


def _value_at(run: RunScore, frames: int) -> float:
    """A run's eval return at ``frames`` (its last evaluation when it has no curve)."""
    if run.frames == frames or not run.curve:
        return run.score
    return dict(run.curve)[frames]


def task_cell(runs: Sequence[RunScore], budget: int) -> TaskCell:
    """One (method, task)'s cell: the complete runs (at the budget) if there are any, else the
    partial ones at the last evaluation all of them reached."""
    runs = sorted(runs, key=seed_order)
    complete = [r for r in runs if r.frames >= budget]
    if complete:
        return TaskCell(np.array([r.score for r in complete]), budget, True,
                        len(runs) - len(complete))
    common = set.intersection(*({f for f, _ in r.curve} | {r.frames} for r in runs))
    frames = max(f for f in common if f > 0) if any(f > 0 for f in common) else max(common)
    return TaskCell(np.array([_value_at(r, frames) for r in runs]), frames, False)


def budget_of(runs: Sequence[RunScore], table: tables.Table) -> int:
    """The table's frame budget, or (a table without one, e.g. toy) the runs' own."""
    return table.frames or max(r.budget or r.frames for r in runs)


def at_frames(runs: Sequence[RunScore], frames: int) -> list[RunScore]:
    """The runs held to ``frames``: a longer run is scored by its last evaluation at or before
    it (the cards' convention for reading published curves), a shorter one is left as it is."""
    out = []
    for r in runs:
        before = [(f, v) for f, v in r.curve if f <= frames]
        if r.frames <= frames:
            out.append(r)
        elif not before:
            raise ValueError(f"{r.source}: no evaluation at or before {frames:,} frames")
        else:
            out.append(dataclasses.replace(r, score=before[-1][1], frames=frames, episodes=None))
    return out


def aggregate(runs: Sequence[RunScore], reps: int = 50_000, seed: int = 0,
              confidence: float = 0.95, runs_per_game: int | str | None = None,
              table: tables.Table | None = None, frames: int | None = None
              ) -> list[MethodResult]:
    """One ``MethodResult`` per method. The aggregates use each method's complete runs (see
    ``task_cell``) and ``runs_per_game`` of them per task (see ``score_matrix``). ``frames``
    holds every run to that budget instead of the table's (``at_frames``)."""
    suite = _suite_of(runs)
    table = table or _default_table(suite)
    if table.suite != suite:
        raise ValueError(f"table {table.name!r} is {table.suite}; the runs are {suite}")
    if frames is not None:
        runs = at_frames(runs, frames)
    results = []
    for method, mruns in by_method(runs).items():
        budget = frames or budget_of(mruns, table)
        per_task: dict[str, list[RunScore]] = {}
        for r in mruns:
            per_task.setdefault(r.game, []).append(r)
        cells = {t: task_cell(per_task[t], budget)
                 for t in _task_order(suite, set(per_task), table)}
        complete = [r for r in mruns if r.frames >= budget]
        episodes = tuple(sorted({r.episodes for r in complete if r.episodes is not None}))
        if not complete:   # nothing at the budget: a table of partial cells, no aggregates
            results.append(MethodResult(method, (), 0, budget, episodes, {}, {}, suite, cells,
                                        metric=mruns[0].metric))
            continue
        games, matrix = score_matrix(complete, runs_per_game, table)
        scores = {g: cells[g].scores for g in games}
        results.append(MethodResult(method, games, matrix.shape[0], budget, episodes, scores,
                                    interval_estimates(matrix, reps, seed, confidence), suite,
                                    cells, matrix, mruns[0].metric))
    return results


def published_point_estimates(pub: tables.Published, suite: str, games: Sequence[str]
                              ) -> dict[str, float] | None:
    """Aggregates of a published column's per-task means over ``games`` (one "run" per task:
    no CI, and its IQM is over task means, not over runs); None if a task's number is missing."""
    if not games or any(pub.scores.get(g) is None for g in games):
        return None
    values = [float(normalized_score(suite, g, pub.scores[g].mean)) for g in games]
    return point_estimates(np.array(values)[None, :])


def probability_of_improvement(results: Sequence[MethodResult], reps: int = 2_000,
                               seed: int = 0, confidence: float = 0.95
                               ) -> list[tuple[str, str, int, float, float, float]]:
    """``(X, Y, tasks, P(X > Y), low, high)`` for every ordered pair of methods, over the tasks
    both have complete runs on (rliable's probability_of_improvement, independent stratified
    bootstrap CIs)."""
    from rliable import library as rly
    from rliable import metrics

    _check_reps(reps, confidence)
    out = []
    for x in results:
        for y in results:
            if x is y or x.matrix is None or y.matrix is None:
                continue
            common = [g for g in x.games if g in y.games]
            if not common:
                continue
            mx = x.matrix[:, [x.games.index(g) for g in common]]
            my = y.matrix[:, [y.games.index(g) for g in common]]
            with numpy_seed(seed):
                points, cis = rly.get_interval_estimates(
                    {"p": (mx, my)}, metrics.probability_of_improvement, reps=reps,
                    confidence_interval_size=confidence)
            out.append((x.method, y.method, len(common), float(np.squeeze(points["p"])),
                        float(np.squeeze(cis["p"][0])), float(np.squeeze(cis["p"][1]))))
    return out
