"""Atari through ale-py + gymnasium (``atari/<Game>``), with the Atari-100k preprocessing.

The ALE is made with ``gymnasium.make("ALE/<Game>-v5", frameskip=1, ...)`` (seeding, ROM
loading) and then driven directly through its ``ale`` handle, so that frames that are skipped
are never converted to observations.

Per agent step: the action is repeated ``frame_skip`` times (rewards summed, raw: clipping is the
agent's job), the observation is the pixel-wise max of the last two frames (Atari sprites
flicker), resized with ``cv2.INTER_AREA`` to ``size x size``, grayscale (ALE luminance, as
Dopamine/rlpyt) or RGB.

Life loss (``terminal_on_life_loss``, training only, as DER/SPR/Dopamine): a lost life ends the
episode with ``terminated=True`` (the agent sees a terminal), but the game is not restarted: the
next ``reset`` continues the same game (a "soft reset": no no-ops, the seed is ignored,
``info["soft_reset"]`` is True). ``life_loss_reset="noop"`` (default, SPR's rlpyt env) first
plays one NOOP frame to leave the lost-life state (its reward dropped, as rlpyt's
``_life_reset``) and observes that frame; ``"soft"`` returns the current frame unchanged. A real game over or the frame cap gives a hard
reset (ROM reloaded with the new seed, then 0..``noop_max`` no-ops drawn from the seed). Every
info carries ``life_loss``, ``game_over`` and ``game_return`` (the score of the whole game, NaN
until the game ends), so an eval env (life loss off) and STORM-style agents, which store the
life-loss flag without ending the episode, can use them.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from rl.envs.base import Info, check_choice, check_positive_int, check_seed
from rl.core.types import ActionSpec, EnvSpec

# The 26 games of the Atari-100k benchmark (any ALE game can be made; these are listed offline).
ATARI_100K_GAMES: tuple[str, ...] = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout",
    "ChopperCommand", "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero",
    "Jamesbond", "Kangaroo", "Krull", "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert",
    "RoadRunner", "Seaquest", "UpNDown",
)
SIZES = (64, 84)
CONVENTIONS = ("spr", "storm")
LIFE_LOSS_RESETS = ("noop", "soft")
_SCREEN = (210, 160)


@dataclasses.dataclass(frozen=True)
class AtariConfig:
    """The Atari protocol. Defaults = DER/SPR training (Atari-100k, Dopamine-style)."""

    frame_skip: int = 4
    max_pool: bool = True               # max over the last two frames of each skip
    grayscale: bool = True              # (84, 84, 1); False gives RGB (size, size, 3)
    size: int = 84
    sticky_action_prob: float = 0.0     # ALE v5 default is 0.25 (STORM); DER/SPR use 0
    terminal_on_life_loss: bool = True  # training only; build the eval env with False
    noop_max: int = 30                  # 0..noop_max no-ops after each hard reset
    life_loss_reset: str = "noop"       # after a life-loss terminal: one NOOP frame (rlpyt) | "soft"
    max_episode_frames: int = 108_000   # = 27k agent steps at frame skip 4
    full_action_space: bool = False

    def __post_init__(self):
        check_positive_int("frame_skip", self.frame_skip)
        check_choice("size", self.size, SIZES)
        check_choice("life_loss_reset", self.life_loss_reset, LIFE_LOSS_RESETS)
        if not 0.0 <= self.sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {self.sticky_action_prob}")
        noop_max = self.noop_max
        if isinstance(noop_max, bool) or not isinstance(noop_max, int) or noop_max < 0:
            raise ValueError(f"noop_max must be a non-negative integer, got {self.noop_max!r}")
        check_positive_int("max_episode_frames", self.max_episode_frames)

    @staticmethod
    def spr(**overrides: Any) -> "AtariConfig":
        """DER/SPR/Dopamine Atari-100k: grayscale 84, no sticky actions, 30 no-ops, life loss
        terminal during training."""
        return AtariConfig(**overrides)

    @staticmethod
    def storm(**overrides: Any) -> "AtariConfig":
        """STORM: RGB 64, ALE v5 sticky actions (0.25), no no-ops; life loss is only a flag in
        ``info`` (the episode goes on)."""
        fields = dict(grayscale=False, size=64, sticky_action_prob=0.25,
                      terminal_on_life_loss=False, noop_max=0)
        return AtariConfig(**{**fields, **overrides})

    @staticmethod
    def for_convention(convention: str, **overrides: Any) -> "AtariConfig":
        check_choice("convention", convention, CONVENTIONS)
        valid = [f.name for f in dataclasses.fields(AtariConfig)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(f"unknown Atari option(s) {unknown}; valid options: {valid}")
        return getattr(AtariConfig, convention)(**overrides)


def _rom_id(game: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower()


def available_games() -> list[str]:
    """Every game the installed ale-py registers (imports ale-py and gymnasium)."""
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    games = {key[len("ALE/"):-len("-v5")] for key in gymnasium.registry
             if key.startswith("ALE/") and key.endswith("-v5")}
    return sorted(g for g in games if not g.endswith("-ram"))


class AtariEnv:
    """One Atari game as an ``Env`` with discrete actions (the minimal action set by default)."""

    info_keys: tuple[str, ...] = ("life_loss", "game_over", "game_return")

    def __init__(self, game: str, config: AtariConfig = AtariConfig()):
        import ale_py
        import cv2  # noqa: F401  (fail at construction, not at the first step)
        import gymnasium

        games = available_games()
        if game not in games:
            raise ValueError(f"unknown Atari game {game!r}; valid games: {games}")
        self.config = cfg = config
        gymnasium.register_envs(ale_py)
        self._env = gymnasium.make(
            f"ALE/{game}-v5", frameskip=1, repeat_action_probability=cfg.sticky_action_prob,
            full_action_space=cfg.full_action_space,
            max_num_frames_per_episode=cfg.max_episode_frames)
        self._ale = self._env.unwrapped.ale
        self._actions = (self._ale.getLegalActionSet() if cfg.full_action_space
                         else self._ale.getMinimalActionSet())
        shape = _SCREEN if cfg.grayscale else (*_SCREEN, 3)
        self._screens = np.zeros((2, *shape), np.uint8)
        channels = 1 if cfg.grayscale else 3
        self.spec = EnvSpec(name=f"atari/{game}", obs_shape=(cfg.size, cfg.size, channels),
                            action=ActionSpec.categorical(len(self._actions)),
                            action_repeat=cfg.frame_skip,
                            max_episode_frames=cfg.max_episode_frames)
        self._lives = 0
        self._game_return = 0.0
        self._obs: np.ndarray | None = None
        self._ended_by_life_loss = False   # the last episode ended on a life loss: soft reset
        self._running = False              # an episode is in progress

    # -------------------------------------------------------------- pixels
    def _grab(self, out: np.ndarray) -> None:
        if self.config.grayscale:
            self._ale.getScreenGrayscale(out)
        else:
            self._ale.getScreenRGB(out)

    def _observation(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        size = self.config.size
        obs = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        return obs[..., None] if self.config.grayscale else obs

    # -------------------------------------------------------------- protocol
    def reset(self, seed: int) -> tuple[np.ndarray, Info]:
        seed = check_seed(seed)
        info: Info = {"life_loss": False, "game_over": False, "game_return": float("nan")}
        if self._ended_by_life_loss:
            self._ended_by_life_loss = False
            self._running = True
            if self.config.life_loss_reset == "noop":
                self._ale.act(self._actions[0])   # NOOP is first in both action sets
                self._grab(self._screens[0])
                self._obs = self._observation(self._screens[0])
                self._lives = self._ale.lives()
            return self._obs, {**info, "soft_reset": True}
        self._env.reset(seed=seed)
        noops = int(np.random.default_rng(seed).integers(0, self.config.noop_max + 1))
        for _ in range(noops):
            self._ale.act(self._actions[0])  # NOOP is first in both action sets
            if self._ale.game_over():
                self._ale.reset_game()
        self._grab(self._screens[0])
        self._obs = self._observation(self._screens[0])
        self._lives = self._ale.lives()
        self._game_return = 0.0
        self._running = True
        return self._obs, {**info, "soft_reset": False}

    def _action_index(self, action: Any) -> int:
        a = np.asarray(action)
        if a.shape != () or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{self.spec.name}: action must be an integer scalar, got {action!r}")
        if not 0 <= int(a) < len(self._actions):
            raise ValueError(f"{self.spec.name}: action {int(a)} is outside "
                             f"[0, {len(self._actions)})")
        return int(a)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, Info]:
        if not self._running:
            raise RuntimeError(f"{self.spec.name}: call reset(seed) before step()")
        ale_action = self._actions[self._action_index(action)]
        ale, reward, frames = self._ale, 0.0, 0
        for frame in range(self.config.frame_skip):
            reward += ale.act(ale_action)
            self._grab(self._screens[frame % 2])
            frames += 1
            if ale.game_over():  # with truncation: also stops at the frame cap
                break
        if self.config.max_pool and frames >= 2:
            frame = np.maximum(self._screens[0], self._screens[1])
        else:
            frame = self._screens[(frames - 1) % 2]
        self._obs = self._observation(frame)

        game_over = ale.game_over(with_truncation=False)
        capped = ale.game_truncated() and not game_over
        lives = ale.lives()
        life_loss = bool(lives < self._lives)
        self._lives = lives
        self._game_return += reward
        life_terminal = self.config.terminal_on_life_loss and life_loss and not (
            game_over or capped)
        terminated = bool(game_over or life_terminal)
        truncated = bool(capped)
        self._ended_by_life_loss = life_terminal
        self._running = not (terminated or truncated)
        info: Info = {"life_loss": life_loss, "game_over": bool(game_over or capped),
                      "game_return": self._game_return if (game_over or capped) else float("nan")}
        return self._obs, float(reward), terminated, truncated, info

    def close(self) -> None:
        self._env.close()
