"""The Atari 100k benchmark as data: its 26 games, the random and human reference scores, the
published per-game scores we compare against, and the training/evaluation protocol.

Game names are the ones our env names use (``atari/<Game>``, ``conf/env/atari/<Game>.yaml``).
All numbers are from ``shared/design/cards/reference_numbers.md`` section 7 (sources there):

- random / human: CURL Table 2 = A-LIX App. Table 5 = back-solved from BBF's ``RR8_BBF.csv``
  (all three agree exactly). NB DreamerV2's ``baselines.json`` has Alien random 228.8: another
  table, not used.
- per-game results of SPR (10 seeds), DER, OTRainbow, CURL, DrQ and SimPLe: SPR Table 1 as
  reproduced in A-LIX App. Table 5 (the SPR column also in an EfficientZero-Table-1
  transcription); ``PUBLISHED_AGGREGATES`` holds the HNS mean / median printed there.

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

# Published per-game scores (end of training, 100k agent steps), one column per method.
PUBLISHED_METHODS: tuple[str, ...] = ("SPR", "DER", "OTRainbow", "CURL", "DrQ", "SimPLe")
_PUBLISHED_ROWS: dict[str, tuple[float, ...]] = {
    #                  SPR       DER      OTRainbow  CURL      DrQ      SimPLe
    "Alien":          (801.5,    739.9,   824.7,    558.2,    771.2,   616.9),
    "Amidar":         (176.3,    188.6,   82.8,     142.1,    102.8,   88.0),
    "Assault":        (571.0,    431.2,   351.9,    600.6,    452.4,   527.2),
    "Asterix":        (977.8,    470.8,   628.5,    734.5,    603.5,   1128.3),
    "BankHeist":      (380.9,    51.0,    182.1,    131.6,    168.9,   34.2),
    "BattleZone":     (16651.0,  10124.6, 4060.6,   14870.0,  12954.0, 5184.4),
    "Boxing":         (35.8,     0.2,     2.5,      1.2,      6.0,     9.1),
    "Breakout":       (17.1,     1.9,     9.8,      4.9,      16.1,    16.4),
    "ChopperCommand": (974.8,    861.8,   1033.3,   1058.5,   780.3,   1246.9),
    "CrazyClimber":   (42923.6,  16185.3, 21327.8,  12146.5,  20516.5, 62583.6),
    "DemonAttack":    (545.2,    508.0,   711.8,    817.6,    1113.4,  208.1),
    "Freeway":        (24.4,     27.9,    25.0,     26.7,     9.8,     20.3),
    "Frostbite":      (1821.5,   866.8,   231.6,    1181.3,   331.1,   254.7),
    "Gopher":         (715.2,    349.5,   778.0,    669.3,    636.3,   771.0),
    "Hero":           (7019.2,   6857.0,  6458.8,   6279.3,   3736.3,  2656.6),
    "Jamesbond":      (365.4,    301.6,   112.3,    471.0,    236.0,   125.3),
    "Kangaroo":       (3276.4,   779.3,   605.4,    872.5,    940.6,   323.1),
    "Krull":          (3688.9,   2851.5,  3277.9,   4229.6,   4018.1,  4539.9),
    "KungFuMaster":   (13192.7,  14346.1, 5722.2,   14307.8,  9111.0,  17257.2),
    "MsPacman":       (1313.2,   1204.1,  941.9,    1465.5,   960.5,   1480.0),
    "Pong":           (-5.9,     -19.3,   1.3,      -16.5,    -8.5,    12.8),
    "PrivateEye":     (124.0,    97.8,    100.0,    218.4,    -13.6,   58.3),
    "Qbert":          (669.1,    1152.9,  509.3,    1042.4,   854.4,   1288.8),
    "RoadRunner":     (14220.5,  9600.0,  2696.7,   5661.0,   8895.1,  5640.6),
    "Seaquest":       (583.1,    354.1,   286.9,    384.5,    301.2,   683.3),
    "UpNDown":        (28138.5,  2877.4,  2847.6,   2955.2,   3180.8,  3350.3),
}
PUBLISHED: Mapping[str, Mapping[str, float]] = {
    m: {g: row[i] for g, row in _PUBLISHED_ROWS.items()} for i, m in enumerate(PUBLISHED_METHODS)}
SPR_SCORES: Mapping[str, float] = PUBLISHED["SPR"]
DER_SCORES: Mapping[str, float] = PUBLISHED["DER"]

# HNS mean / median / games above human over the 26 games, as printed (A-LIX Table 5).
PUBLISHED_AGGREGATES: Mapping[str, Mapping[str, float]] = {
    "SPR": {"mean": 0.704, "median": 0.415, "above_human": 7},
    "DER": {"mean": 0.285, "median": 0.161, "above_human": 2},
    "OTRainbow": {"mean": 0.264, "median": 0.204, "above_human": 1},
    "CURL": {"mean": 0.381, "median": 0.175, "above_human": 2},
    "DrQ": {"mean": 0.357, "median": 0.268, "above_human": 2},
    "SimPLe": {"mean": 0.443, "median": 0.144, "above_human": 2},
}
PUBLISHED_SEEDS: Mapping[str, int] = {"SPR": 10}

for _table, _what in ((_REFERENCE, "random/human scores"), (_PUBLISHED_ROWS, "published scores")):
    if tuple(_table) != GAMES:   # an import-time guard against an edit that drops a game
        raise AssertionError(f"atari100k: {_what} cover {sorted(_table)}, not {GAMES}")


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


def published_hns(method: str, games: tuple[str, ...] | list[str] = GAMES) -> np.ndarray:
    """A published method's per-game HNS over ``games`` (in that order)."""
    if method not in PUBLISHED:
        raise ValueError(f"no published Atari 100k scores for method {method!r}; "
                         f"known: {list(PUBLISHED_METHODS)}")
    return np.array([human_normalized_score(g, PUBLISHED[method][check_game(g)]) for g in games])
