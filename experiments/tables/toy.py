"""The toy suite: no paper, no published numbers; a table so sweeps on it aggregate the same
way (and the end-to-end test runs on it)."""
from __future__ import annotations

from experiments.tables import Table

TABLES = (
    Table("toy_reach", "toy/reach (no published numbers)", "toy", ("reach",), None, None,
          {"action repeat": 1, "eval episodes": "loop.eval_episodes"}),
)
