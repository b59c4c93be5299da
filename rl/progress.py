"""The loop's progress bar (tqdm), or none."""
from __future__ import annotations

import sys


class _NoBar:
    def update(self, n): pass
    def set_postfix(self, **kw): pass
    def close(self): pass


def progress_bar(enabled: bool, total: int, initial: int = 0):
    """A frame counter on stderr (refreshed every 30 s when stderr is not a terminal)."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="frame", unit_scale=True, dynamic_ncols=True,
                mininterval=1.0 if sys.stderr.isatty() else 30.0)
