"""Where a run's code came from: the git commit and whether the tree had uncommitted changes.

Written into every run directory (``source.json``) and the W&B config, so a number in a table
can be traced to the code that made it.
"""
from __future__ import annotations

import pathlib
import subprocess
from typing import Any

SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None   # no git on this machine
    return done.stdout.strip() if done.returncode == 0 else None


def source_info() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout this code runs from
    (None where it is not a git checkout, e.g. an installed wheel)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}
