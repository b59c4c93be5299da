"""Writing ``experiments.aggregate``'s results: the paper-layout table in Markdown and LaTeX
(per task our mean ± 95% CI over seeds beside the published numbers, then the rliable
aggregates and probabilities of improvement) and the CSVs."""
from __future__ import annotations

import csv
import pathlib
from typing import Sequence

from experiments import tables
from experiments.estimates import (METRICS, MethodResult, TaskCell, mean_ci,
                                   published_point_estimates)
from experiments.scores import RunScore, normalized_score
from rl.envs import atari100k

Poi = Sequence[tuple[str, str, int, float, float, float]]


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _k(frames: int) -> str:
    return f"{frames / 1e6:g}M" if frames >= 1_000_000 else f"{frames / 1e3:g}k"


def cell_text(cell: TaskCell | None, table: tables.Table, budget: int,
              confidence: float = 0.95, digits: int = 1) -> str:
    """``mean ± CI`` with its labels: "(3/5 seeds)", "(+1 partial)", "(partial: 60k/100k
    frames)"."""
    if cell is None:
        return "—"
    mean, half = mean_ci(cell.scores, confidence)
    text = _fmt(mean, digits) + (f" ± {_fmt(half, digits)}" if len(cell.scores) > 1 else "")
    labels = []
    if table.seeds and len(cell.scores) < table.seeds:
        labels.append(f"{len(cell.scores)}/{table.seeds} seeds")
    elif not table.seeds:
        labels.append(f"{len(cell.scores)} seed{'s' * (len(cell.scores) > 1)}")
    if cell.partial_runs:
        labels.append(f"+{cell.partial_runs} partial, left out")
    if not cell.complete:
        labels.append(f"partial: {_k(cell.frames)}/{_k(budget)} frames")
    return text + (f" ({'; '.join(labels)})" if labels else "")


def _pub_text(pub: tables.Published, task: str, suite: str) -> str:
    cell = pub.scores.get(task)
    if cell is None:
        return "n/a"
    return cell.text(0 if suite == "dmc" else 1)   # as printed: DMC returns are integers


def _tasks(results: Sequence[MethodResult], table: tables.Table) -> list[str]:
    ours = {t for r in results for t in r.cells}
    return [t for t in table.tasks] + sorted(ours - set(table.tasks))


def _rows(results: Sequence[MethodResult], table: tables.Table, confidence: float
          ) -> tuple[list[str], list[list[str]]]:
    """The per-task table as header and rows of text (shared by Markdown and LaTeX)."""
    atari = table.suite == "atari"
    header = ["Game" if atari else "Task", *[r.method for r in results],
              *([f"{r.method} HNS" for r in results] if atari else []),
              *[f"{p.method} (paper)" for p in table.published],
              *(["Random", "Human"] if atari else [])]
    rows = []
    for t in _tasks(results, table):   # every task of the paper's table, run or not
        ours = [cell_text(r.cells.get(t), table, r.frames, confidence,
                          3 if r.metric == "success" else 1) for r in results]
        hns = ([_fmt(atari100k.human_normalized_score(t, float(r.cells[t].scores.mean())), 3)
                if t in r.cells else "—" for r in results] if atari else [])
        refs = ([_fmt(atari100k.RANDOM_SCORES[t]), _fmt(atari100k.HUMAN_SCORES[t])]
                if atari else [])
        pubs = [_pub_text(p, t, table.suite) for p in table.published]
        rows.append([t, *ours, *hns, *pubs, *refs])
    return header, rows


def _aggregate_rows(results: Sequence[MethodResult], table: tables.Table) -> list[list[str]]:
    rows = []
    for r in results:
        if r.aggregates:
            rows.append([r.method, str(len(r.games)), str(r.runs_per_game),
                         *[f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in
                           (r.aggregates[m] for m in METRICS)]])
    for games in dict.fromkeys(r.games for r in results if r.games):
        for pub in table.published:
            est = published_point_estimates(pub, table.suite, games)
            if est is not None:
                rows.append([f"{pub.method} (paper, per-game means)", str(len(games)),
                             f"{pub.seeds or '—'} (means only)",
                             *[f"{est[k]:.3f}" for k in METRICS]])
    return rows


def _protocol(table: tables.Table) -> str:
    items = [f"{k} {v}" for k, v in table.protocol.items()]
    budget = f"{table.frames:,} frames" if table.frames else "each run's own loop.frames"
    seeds = (f"{table.seeds} seeds per task" if table.seeds else
             "the paper's seed count is not in the cards" if table.published else "no paper")
    return f"Protocol: {budget}, {seeds}; " + ", ".join(items) + "."


def render_markdown(results: Sequence[MethodResult], confidence: float = 0.95,
                    reps: int = 50_000, table: tables.Table | None = None,
                    poi: Poi = ()) -> str:
    table = table or tables.default_for(results[0].suite)
    pct = round(confidence * 100)
    success = any(r.metric == "success" for r in results)
    over = ("eval success rate (the share of evaluation episodes with a goal frame; the "
            "papers' numbers are not this metric)" if success else table.normalisation)
    lines = [f"# {table.title}", "", _protocol(table), "",
             f"Aggregates over: {over}." + (f" {table.note}." if table.note else ""), ""]
    for res in results:
        notes = []
        if table.frames and res.frames != table.frames:
            notes.append(f"**not the table's {table.frames:,}**")
        eval_eps = table.protocol.get("eval episodes")
        if res.episodes and isinstance(eval_eps, int) and res.episodes != (eval_eps,):
            notes.append(f"eval episodes {', '.join(map(str, res.episodes))} "
                         f"(protocol {eval_eps})")
        counts = sorted({len(s) for s in res.scores.values()})
        if counts and counts != [res.runs_per_game]:
            spread = f"{counts[0]}–{counts[-1]}" if len(counts) > 1 else f"{counts[0]}"
            notes.append(f"the aggregates use each game's first {res.runs_per_game} run(s) by "
                         f"seed, the per-game rows all {spread}")
        partial = [t for t, c in res.cells.items() if not c.complete]
        if partial:
            notes.append(f"partial (left out of the aggregates): {', '.join(partial)}")
        lines.append(f"- `{res.method}`: {len(res.games)}/{len(table.tasks)} tasks complete, "
                     f"{res.runs_per_game} run(s) per task, {res.frames:,} frames"
                     + (f" ({'; '.join(notes)})" if notes else ""))
    header, rows = _rows(results, table, confidence)
    lines += ["", f"## Per task (ours: mean ± {pct}% CI over seeds, Student t; papers: as "
                  f"printed, mean ± std)", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", f"## Aggregates ({pct}% stratified-bootstrap CIs, {reps:,} reps, rliable)", "",
              "| Method | Tasks | Runs/task | " + " | ".join(METRICS) + " |",
              "|---|---|---|" + "---|" * len(METRICS)]
    lines += ["| " + " | ".join(row) + " |" for row in _aggregate_rows(results, table)]
    if not any(r.aggregates for r in results):
        lines.append("| (no method has runs at the budget: no aggregates) |" + " |" * 6)
    lines += ["", "The paper rows apply the same estimators to the published per-task means "
              "(no CIs; their IQM trims task means, ours trims runs)."]
    printed = [f"{p.method} " + ", ".join(f"{k} {v:g}" for k, v in p.printed.items())
               for p in table.published if p.printed]
    if printed:
        lines.append("Printed in the papers, over all their tasks: " + "; ".join(printed) + ".")
    if poi:
        lines += ["", f"## Probability of improvement ({pct}% CIs, rliable)", "",
                  "| X | Y | Tasks | P(X > Y) |", "|---|---|---|---|"]
        lines += [f"| {x} | {y} | {n} | {p:.3f} [{lo:.3f}, {hi:.3f}] |"
                  for x, y, n, p, lo, hi in poi]
    lines += ["", "## Sources", ""] if table.published else []
    for pub in table.published:
        missing = pub.missing(table.tasks)
        lines.append(f"- {pub.method}: {pub.source}"
                     + (f"; {pub.seeds} seeds" if pub.seeds else "")
                     + (f"; {pub.note}" if pub.note else "")
                     + (f"; missing (cards lack it): {', '.join(missing)}" if missing else ""))
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    return (text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
            .replace("&", r"\&").replace("#", r"\#").replace("±", r"$\pm$")
            .replace("—", "--").replace("–", "--").replace(">", r"$>$"))


def render_latex(results: Sequence[MethodResult], table: tables.Table,
                 confidence: float = 0.95) -> str:
    """The per-task table and the aggregates as two LaTeX tabulars (booktabs)."""
    header, rows = _rows(results, table, confidence)
    pct = round(confidence * 100)
    out = [f"% {table.title}: ours mean $\\pm$ {pct}\\% CI over seeds; papers as printed",
           r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
           " & ".join(map(_tex, header)) + r" \\", r"\midrule"]
    out += [" & ".join(map(_tex, row)) + r" \\" for row in rows]
    out += [r"\bottomrule", r"\end{tabular}", "",
            f"% aggregates over {_tex(table.normalisation)}; {pct}\\% stratified-bootstrap CIs",
            r"\begin{tabular}{lrr" + "r" * len(METRICS) + "}", r"\toprule",
            " & ".join(map(_tex, ["Method", "Tasks", "Runs/task", *METRICS])) + r" \\",
            r"\midrule"]
    out += [" & ".join(map(_tex, row)) + r" \\" for row in _aggregate_rows(results, table)]
    out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


def write_outputs(out: str | pathlib.Path, runs: Sequence[RunScore],
                  results: Sequence[MethodResult], table: tables.Table | None = None,
                  poi: Poi = (), confidence: float = 0.95, reps: int = 50_000
                  ) -> list[pathlib.Path]:
    """``<out>.md``, ``<out>.csv`` (per method and task), ``<out>_runs.csv``,
    ``<out>_aggregates.csv``, ``<out>.tex``, ``<out>_poi.csv``; returns their paths."""
    table = table or tables.default_for(results[0].suite)
    out = pathlib.Path(out)
    stem = out.with_suffix("") if out.suffix in (".md", ".csv", ".tex") else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + s) for s in (".md", ".csv", "_runs.csv",
                                                      "_aggregates.csv", ".tex", "_poi.csv")]
    paths[0].write_text(render_markdown(results, confidence, reps, table, poi))
    paths[4].write_text(render_latex(results, table, confidence))
    pubs = table.published
    with open(paths[1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "game", "runs", "frames", "complete", "score_mean",
                    f"score_ci{round(confidence * 100)}", "normalized",
                    *[f"{p.method}_paper" for p in pubs]])
        for r in results:
            for g, cell in r.cells.items():
                mean, half = mean_ci(cell.scores, confidence)
                w.writerow([r.method, g, len(cell.scores), cell.frames, cell.complete,
                            round(mean, 4), round(half, 4),
                            round(mean if r.metric == "success"
                                  else float(normalized_score(r.suite, g, mean)), 5),
                            *["" if p.scores.get(g) is None else p.scores[g].mean
                              for p in pubs]])
    with open(paths[2], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "suite", "game", "seed", "frames", "episodes", "score",
                    "normalized", "source"])
        for run in runs:
            w.writerow([run.method, run.suite, run.game, run.seed, run.frames,
                        run.episodes or "", run.score, round(float(run.normalized), 5),
                        run.source])
    with open(paths[3], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "games", "runs_per_game", "frames", "metric", "point", "ci_low",
                    "ci_high", "confidence", "reps"])
        for r in results:
            for m in METRICS if r.aggregates else ():
                w.writerow([r.method, len(r.games), r.runs_per_game, r.frames, m,
                            *[round(v, 5) for v in r.aggregates[m]], confidence, reps])
    with open(paths[5], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "tasks", "p_x_better", "ci_low", "ci_high"])
        w.writerows([x, y, n, round(p, 5), round(lo, 5), round(hi, 5)]
                    for x, y, n, p, lo, hi in poi)
    return paths
