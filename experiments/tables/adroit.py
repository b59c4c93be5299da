"""Adroit (door, hammer, pen from pixels, no demonstrations): DrM's claim, with DrQ-v2 as the
base agent. The cards hold no per-task numbers (DrM reports success-rate curves)."""
from __future__ import annotations

from experiments.tables import Published, Table

_TASKS = ("door", "hammer", "pen")

TABLES = (
    Table("drm_adroit", "DrM on Adroit (6.1M frames)", "adroit", _TASKS, 6_100_000, 4,
          {"action repeat": 2, "batch": 256, "eval episodes": 10, "frame stack": "3 (DrM: 1 "
           "plus proprioception, not ported)", "metric": "paper: success rate"},
          (Published("DrM", "DrM ICLR'24 figures (no per-task numbers in the cards)",
                     {t: None for t in _TASKS}, seeds=4),),
          preset="table_drm_adroit",
          note="ours: the eval return, or with --metric success the share of eval episodes "
               "with any goal frame (DrM counts success as > 25 goal frames, pen > 20: not "
               "logged yet)"),
)
