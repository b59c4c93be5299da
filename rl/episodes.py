"""Statistics of finished training episodes, kept apart per seed until the next log row."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rl.core.types import TimeStep

if TYPE_CHECKING:
    from rl.agents.seed_stack import SeedLayout


class EpisodeStats:
    """Returns, lengths and successes of finished training episodes, per seed (env block of
    ``seeds``)."""

    def __init__(self, seeds: SeedLayout):
        self.seeds = seeds
        self.rows: list[dict[str, list[float]]] = [
            {"episode_return": [], "episode_length": [], "success": []}
            for _ in range(seeds.num_seeds)]

    def add(self, ts: TimeStep) -> int:
        """Records the episodes that ended at ``ts``; returns how many did."""
        finished = np.flatnonzero(ts.is_last)
        for i in finished:
            row = self.rows[self.seeds.seed_of_env(i)]
            row["episode_return"].append(float(ts.info["episode_return"][i]))
            row["episode_length"].append(float(ts.info["episode_length"][i]))
            if "episode_success" in ts.info:
                row["success"].append(float(ts.info["episode_success"][i]))
        return len(finished)

    def pop(self, seed_index: int) -> dict[str, float]:
        """Seed ``seed_index``'s means since the last pop (``train/...``), then forgets them."""
        row = self.rows[seed_index]
        out = {f"train/{k}": float(np.mean(v)) for k, v in row.items() if v}
        for v in row.values():
            v.clear()
        return out
