"""Paper tables as data: per method, the suite, tasks, frame budget, seeds, protocol and the
published numbers with their source, one small module per paper family.

Every number is from ``shared/design/cards/reference_numbers.md`` (or the algorithm cards it
points to); a task the cards have no number for is ``None`` (shown as "n/a (cards lack it)"),
never filled in. ``Cell.verified=False`` marks numbers the cards tag ``[unverified]``.

    from experiments import tables
    t = tables.get("spr_atari100k"); t.published[0].scores["Pong"]   # Cell(-5.9)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

SUITES = ("dmc", "atari", "adroit", "toy")
NORMALISATION = {   # what rliable aggregates over, per suite (named in every report)
    "atari": "human-normalised score (score - random) / (human - random)",
    "dmc": "raw return / 1000 (DMC returns lie in [0, 1000])",
    "adroit": "raw eval return (no normaliser, so the optimality gap, to 1, means nothing; "
              "--metric success scores by the eval success rate instead)",
    "toy": "raw eval return (no normaliser, so the optimality gap, to 1, means nothing)",
}

NORMALISATION_SHORT = {"atari": "human-normalised score", "dmc": "return / 1000",
                       "adroit": "raw eval return", "toy": "raw eval return"}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One published number: mean (and std over seeds where printed)."""

    mean: float
    std: float | None = None
    verified: bool = True      # False: the cards mark it [unverified]

    def text(self, digits: int = 1) -> str:
        body = f"{self.mean:,.{digits}f}" + ("" if self.std is None
                                               else f" ± {self.std:,.{digits}f}")
        return body + ("" if self.verified else " (unverified)")


@dataclasses.dataclass(frozen=True)
class Published:
    """One published column: a method's numbers on a table's tasks at the table's budget."""

    method: str
    source: str                           # paper table / figure / score file (the cards' tag)
    scores: Mapping[str, Cell | None]     # task -> number; None: the cards lack it
    seeds: int | None = None
    printed: Mapping[str, float] = dataclasses.field(default_factory=dict)  # aggregates as printed
    note: str = ""

    def missing(self, tasks: tuple[str, ...]) -> list[str]:
        return [t for t in tasks if self.scores.get(t) is None]


@dataclasses.dataclass(frozen=True)
class Table:
    """A paper's table: what to run (``preset``: ``experiment=<preset>`` sweeps it with ``-m``)
    and what to compare against."""

    name: str
    title: str
    suite: str
    tasks: tuple[str, ...]                # task names without the suite, in the paper's order
    frames: int | None                    # budget in env frames; None: whatever the runs ran
    seeds: int | None                     # seeds per task in the paper; None: cards lack it
    protocol: Mapping[str, Any]           # action repeat, batch, evaluation episodes, ...
    published: tuple[Published, ...] = ()
    preset: str | None = None             # conf/experiment/<preset>.yaml
    note: str = ""

    def __post_init__(self):
        if self.suite not in SUITES:
            raise ValueError(f"table {self.name!r}: suite {self.suite!r} not in {SUITES}")
        for pub in self.published:
            unknown = sorted(set(pub.scores) - set(self.tasks))
            if unknown:
                raise ValueError(f"table {self.name!r}: {pub.method} has scores for tasks "
                                 f"{unknown} that the table does not list")

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(f"{self.suite}/{t}" for t in self.tasks)

    @property
    def normalisation(self) -> str:
        return NORMALISATION[self.suite]


def _registry() -> dict[str, Table]:
    from experiments.tables import adroit, atari100k, dmc, toy

    out: dict[str, Table] = {}
    for module in (atari100k, dmc, adroit, toy):
        for table in module.TABLES:
            if table.name in out:
                raise AssertionError(f"two tables named {table.name!r}")
            out[table.name] = table
    return out


def names() -> list[str]:
    return sorted(_registry())


def get(name: str) -> Table:
    tables = _registry()
    if name not in tables:
        raise ValueError(f"unknown table {name!r}; tables: {sorted(tables)}")
    return tables[name]


DEFAULT_FOR_SUITE = {"atari": "spr_atari100k", "dmc": "drqv2_dmc", "adroit": "drm_adroit",
                     "toy": "toy_reach"}


def default_for(suite: str) -> Table:
    """The table ``experiments.aggregate`` compares a suite's runs with unless told (--table)."""
    if suite not in DEFAULT_FOR_SUITE:
        raise ValueError(f"unknown suite {suite!r}; suites: {list(SUITES)}")
    return get(DEFAULT_FOR_SUITE[suite])
