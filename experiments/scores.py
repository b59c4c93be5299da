"""Reading runs into scores: one ``RunScore`` per (method, task, seed), from any suite.

A run's score is read from its ``score.json`` (``write_score``) if it has one; otherwise from
what ``experiments.train`` leaves behind: ``config.yaml`` (suite and task from ``env.name``,
seed, method = the agent's name ``+`` its objectives ``+`` its modules, the frame budget
``loop.frames``), ``final.json`` (the final evaluation's mean return) and ``metrics.jsonl`` (the
evaluation curve; its last evaluation gives the frames). A run without ``final.json`` (stopped
early) is scored by its last evaluation and labelled partial by the report. A run with vmapped
seeds gives one score per ``seed_<k>/``. The score file format, one run per file (or a JSON list
of such records; ``suite`` defaults to ``atari``, ``episodes`` is optional)::

    {"game": "Pong", "seed": 1, "method": "spr", "score": -5.9, "frames": 400000, "episodes": 100}

``game`` is the task within its suite (an Atari game, ``walker_walk``, ``door``, ``reach``).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
import pathlib
import re
from typing import Any, Sequence

import numpy as np

from experiments.config import method_name as method_of  # noqa: F401  (one naming)
from experiments.tables import SUITES
from rl.envs import atari100k

SCORE_FILE = "score.json"
# What a run is scored by: the eval return, or the eval success rate ("success": the share of
# evaluation episodes with a goal frame; logged where the env reports success, e.g. adroit and
# toy; DrM's Adroit success needs > 25 goal frames (pen > 20), a stricter count)
METRICS = ("return", "success")


class NotStarted(ValueError):
    """A run directory with no evaluation yet (a sweep skips it, a named run is an error)."""


@dataclasses.dataclass(frozen=True)
class RunScore:
    """The final score of one run (one method, one task, one seed)."""

    game: str                 # the task within its suite (historical name: Atari came first)
    seed: int | str
    method: str
    score: float
    frames: int
    episodes: int | None = None
    source: str = ""          # where it was read from (not written to score files)
    suite: str = "atari"
    budget: int | None = None                    # the run's own loop.frames, if known
    curve: tuple[tuple[int, float], ...] = ()    # (frames, eval score) of every evaluation
    metric: str = "return"    # or "success": the eval success rate (experiments/scores.py)

    def __post_init__(self):
        where = f" ({self.source})" if self.source else ""
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite!r}{where}; suites: {list(SUITES)}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}{where}")
        if self.suite == "atari":
            object.__setattr__(self, "game", _checked(atari100k.check_game, self.game, where))
        elif not isinstance(self.game, str) or not self.game:
            raise ValueError(f"task must be a non-empty string, got {self.game!r}{where}")
        elif self.game.startswith(f"{self.suite}/"):
            object.__setattr__(self, "game", self.game.split("/", 1)[1])
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a non-empty string, got {self.method!r}{where}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, str)):
            raise ValueError(f"seed must be an int or a string, got {self.seed!r}{where}")
        if (isinstance(self.score, bool) or not isinstance(self.score, (int, float))
                or not math.isfinite(self.score)):
            raise ValueError(f"score must be a finite number, got {self.score!r}{where}")
        for name in ("frames", "episodes", "budget"):
            value = getattr(self, name)
            if value is None and name != "frames":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}{where}")

    @property
    def task(self) -> str:
        return self.game

    @property
    def normalized(self) -> float:
        if self.metric == "success":   # a rate already
            return float(self.score)
        return normalized_score(self.suite, self.game, self.score)

    @property
    def hns(self) -> float:
        return atari100k.human_normalized_score(self.game, self.score)

    def to_json(self) -> dict[str, Any]:
        record = {k: getattr(self, k) for k in ("game", "seed", "method", "score", "frames")}
        if self.episodes is not None:
            record["episodes"] = self.episodes
        if self.suite != "atari":
            record["suite"] = self.suite
        return record


def normalized_score(suite: str, task: str, score: float | np.ndarray) -> float | np.ndarray:
    """What rliable aggregates: Atari HNS, DMC return / 1000, Adroit and toy raw returns
    (``experiments.tables.NORMALISATION`` says so in every report)."""
    if suite == "atari":
        return atari100k.human_normalized_score(task, score)
    return np.asarray(score, np.float64) / 1000.0 if suite == "dmc" else np.asarray(score, float)


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
    fields = {"game", "seed", "method", "score", "frames", "episodes", "suite"}
    required = fields - {"episodes", "suite"}
    missing, unknown = sorted(required - set(record)), sorted(set(record) - fields)
    if missing or unknown:
        raise ValueError(f"{source}: score record {record} has missing fields {missing} / "
                         f"unknown fields {unknown}; fields: {sorted(fields)}")
    values = {k: _integral(v) if k in ("frames", "episodes") else v for k, v in record.items()}
    return RunScore(**values, source=source)


def write_score(run_dir: str | pathlib.Path, game: str, seed: int | str, method: str,
                score: float, frames: int, episodes: int | None = None,
                suite: str = "atari") -> pathlib.Path:
    """Writes ``<run_dir>/score.json`` (validated first), e.g.
    ``write_score(run_dir, "Pong", cfg.seed, "spr", final["return"], frames, 100)``."""
    record = RunScore(game=game, seed=seed, method=method, score=float(score), frames=frames,
                      episodes=episodes, source=str(run_dir), suite=suite)
    path = pathlib.Path(run_dir) / SCORE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.to_json(), indent=2) + "\n")
    return path


def _read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def eval_curve(log_dir: pathlib.Path, metric: str = "return") -> tuple[tuple[int, float], ...]:
    """(frames, eval return or success) of every evaluation in ``<log_dir>/metrics.jsonl``."""
    path = log_dir / "metrics.jsonl"
    if not path.exists():
        return ()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    key = f"eval/{metric}"
    return tuple((int(r["step"]), float(r[key])) for r in rows if key in r)


def _last_eval(log_dir: pathlib.Path) -> dict | None:
    path = log_dir / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "eval/return" in r]
    return evals[-1] if evals else None


def runs_from_dir(run_dir: pathlib.Path, method: str | None = None, metric: str = "return"
                  ) -> list[RunScore]:
    """The score(s) of one run directory (see the module docstring)."""
    if (run_dir / SCORE_FILE).exists():
        if metric != "return":
            raise ValueError(f"{run_dir}/{SCORE_FILE} holds returns only, not {metric!r}")
        return runs_from_file(run_dir / SCORE_FILE, method)
    if (re.fullmatch(r"seed_\d+", run_dir.name) and not (run_dir / "config.yaml").exists()
            and (run_dir.parent / "config.yaml").exists()):   # one vmapped copy of a run
        return [r for r in runs_from_dir(run_dir.parent, method, metric)
                if pathlib.Path(r.source).name == run_dir.name]
    if not (run_dir / "config.yaml").exists():
        raise ValueError(f"{run_dir}: neither {SCORE_FILE} nor config.yaml; not a run directory")
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    env_name = (cfg.get("env") or {}).get("name", "")
    suite, _, task = env_name.partition("/")
    if suite not in SUITES or not task:
        raise ValueError(f"{run_dir}/config.yaml: env.name {env_name!r} is not "
                         f"'<suite>/<task>' with a suite in {list(SUITES)}")
    method = method or method_of(cfg)
    budget = (cfg.get("loop") or {}).get("frames")
    num_seeds = int(cfg.get("num_seeds", 1))
    finished = (run_dir / "final.json").exists()
    runs = []
    for k in range(num_seeds):   # vmapped copies: each logs its evaluations in seed_<k>/
        log_dir = run_dir if num_seeds == 1 else run_dir / f"seed_{k}"
        last, curve = _last_eval(log_dir), eval_curve(log_dir, metric)
        if last is not None and f"eval/{metric}" not in last:
            raise ValueError(f"{log_dir}: its evaluations log no eval/{metric} (success is "
                             f"logged only where the env reports it)")
        if num_seeds == 1 and finished:
            final = _read_json(run_dir / "final.json")
            score, episodes = final[metric], final.get("episodes")
            frames = int(last["step"]) if last else int(budget)
        elif last is None:
            raise NotStarted(f"{log_dir}: no final.json and no evaluation in metrics.jsonl "
                             f"(the run has not reached its first evaluation)")
        else:   # a run that stopped early (or a vmapped copy): its last evaluation
            score, episodes, frames = last[f"eval/{metric}"], last.get("eval/episodes"), last["step"]
        seed = cfg["seed"] if num_seeds == 1 else f"{cfg['seed']}/seed_{k}"
        runs.append(RunScore(game=task, seed=seed, method=method, score=float(score),
                             frames=int(frames), episodes=_integral(episodes), source=str(log_dir),
                             suite=suite, budget=_integral(budget), curve=curve, metric=metric))
    return runs


def runs_from_file(path: pathlib.Path, method: str | None = None) -> list[RunScore]:
    """Score records from a JSON file (one record or a list); ``method`` overrides theirs."""
    data = _read_json(path)
    records = data if isinstance(data, list) else [data]
    runs = [from_record(r, str(path)) for r in records]
    return [dataclasses.replace(r, method=method) for r in runs] if method else runs


def _is_run(path: pathlib.Path) -> bool:
    return ((path / "config.yaml").exists() or (path / SCORE_FILE).exists()
            or (re.fullmatch(r"seed_\d+", path.name) is not None
                and (path.parent / "config.yaml").exists()))


def load_runs(paths: Sequence[str], method: str | None = None, unique: bool = True,
              metric: str = "return") -> list[RunScore]:
    """Every run named by ``paths`` (run directories, JSON files, globs of them, or a sweep
    directory whose job folders are runs); a pattern that matches nothing, or (``unique``: for
    tables) the same (method, suite, task, seed) twice, is an error. Curves take repeats of a
    seed as more samples (``unique=False``): GPU runs of one seed differ."""
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
            if match.is_dir() and not _is_run(match):   # a sweep dir: its job folders
                jobs = sorted(p for p in match.iterdir() if p.is_dir() and _is_run(p))
                if not jobs:
                    raise ValueError(f"{match}: neither a run directory nor a sweep of runs")
                for job in jobs:
                    try:
                        runs += runs_from_dir(job, method, metric)
                    except NotStarted as e:   # a sweep's queued or crashed job: say so, go on
                        print(f"skipped: {e}")
            elif match.is_dir():
                runs += runs_from_dir(match, method, metric)
            elif match.suffix == ".json":
                runs += runs_from_file(match, method)
            else:
                raise ValueError(f"{match}: expected a run directory or a .json score file")
    if not runs:
        raise ValueError(f"no runs in {list(paths)}")
    seen: dict[tuple, str] = {}
    for r in runs if unique else ():
        key = (r.method, r.suite, r.game, str(r.seed))
        if key in seen:
            raise ValueError(f"method {r.method!r}, game {r.game!r}, seed {r.seed!r} appears "
                             f"twice: {seen[key]} and {r.source}")
        seen[key] = r.source
    return runs


def seed_order(run: RunScore) -> tuple:
    """Sort key: seeds in numeric order, vmapped copies after their run's seed ("2" <
    "2/seed_1" < "10"), where plain string order would put "10" before "2"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", str(run.seed)) if part)
