"""The Atari 100k benchmark as data: its 26 games, the random and human reference scores and
the training/evaluation protocol.

Game names are the ones our env names use (``atari/<Game>``, ``conf/env/atari/<Game>.yaml``).
All numbers are from ``shared/design/cards/reference_numbers.md`` section 7 (sources there):

- random / human: CURL Table 2 = A-LIX App. Table 5 = back-solved from BBF's ``RR8_BBF.csv``
  (all three agree exactly). NB DreamerV2's ``baselines.json`` has Alien random 228.8: another
  table, not used.
- the published per-game results (SPR, DER, STORM, ...) are paper tables:
  ``experiments/tables/atari100k.py``.

HNS (human-normalised score) = (score - random) / (human - random).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from rl.envs.atari import ATARI_100K_GAMES

GAMES: tuple[str, ...] = ATARI_100K_GAMES

# (random, human) per game.
_REFERENCE: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3),
    "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5),
    "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5),
    "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4),
    "DemonAttack": (152.1, 1971.0),
    "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7),
    "Gopher": (257.6, 2412.5),
    "Hero": (1027.0, 30826.4),
    "Jamesbond": (29.0, 302.8),
    "Kangaroo": (52.0, 3035.0),
    "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3),
    "MsPacman": (307.3, 6951.6),
    "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0),
    "RoadRunner": (11.5, 7845.0),
    "Seaquest": (68.4, 42054.7),
    "UpNDown": (533.4, 11693.2),
}
RANDOM_SCORES: Mapping[str, float] = {g: r for g, (r, _) in _REFERENCE.items()}
HUMAN_SCORES: Mapping[str, float] = {g: h for g, (_, h) in _REFERENCE.items()}

if tuple(_REFERENCE) != GAMES:   # an import-time guard against an edit that drops a game
    raise AssertionError(f"atari100k: random/human scores cover {sorted(_REFERENCE)}, "
                         f"not {GAMES}")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Atari 100k as DER/SPR run it (card ``repo_spr_taco_infopower.md`` 2(d)); the env side is
    ``rl.envs.atari.AtariConfig.spr()`` (tested to agree)."""

    agent_steps: int = 100_000          # interaction budget
    frame_skip: int = 4                 # so the budget is 400k frames
    max_episode_frames: int = 108_000   # episode cap = 27k agent steps (30 min of play)
    sticky_action_prob: float = 0.0
    noop_max: int = 30
    terminal_on_life_loss: bool = True  # training only; evaluation plays whole games
    eval_episodes: int = 100            # final agent only, no evaluation during training
    eval_epsilon: float = 0.001         # SPR evaluates epsilon-greedy with this epsilon
    seeds: int = 10                     # per game in the SPR paper

    @property
    def frames(self) -> int:
        return self.agent_steps * self.frame_skip

    @property
    def max_episode_steps(self) -> int:
        return self.max_episode_frames // self.frame_skip


PROTOCOL = Protocol()


def check_game(game: str) -> str:
    """``game`` if it is one of the 26 (``atari/<Game>`` env names are accepted too)."""
    name = game[len("atari/"):] if isinstance(game, str) and game.startswith("atari/") else game
    if name not in _REFERENCE:
        raise ValueError(f"unknown Atari 100k game {game!r}; the 26 games are: {list(GAMES)}")
    return name


def human_normalized_score(game: str, score: float | np.ndarray) -> float | np.ndarray:
    """(score - random) / (human - random) with the published references; a float for a scalar
    score, an array for an array of scores (e.g. one per seed)."""
    name = check_game(game)
    values = np.asarray(score, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"human_normalized_score({game!r}): score must be finite, got {score!r}")
    random, human = _REFERENCE[name]
    hns = (values - random) / (human - random)
    return float(hns) if hns.ndim == 0 else hns
