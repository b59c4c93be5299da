"""Moving backgrounds for distracted DMC (RePo's setting), generated procedurally.

No video can be downloaded here, so each "video" is a procedural clip: a drifting mixture of
low-frequency colour waves (a plasma-like texture) with a few bouncing discs over it. A pool is a
list of clip parameters drawn from a seeded generator; the ``train`` and ``test`` pools come from
different generator seeds and different palettes and disc counts, so a test clip is never a
train clip. Frames are a pure function of (pool, clip index, time), so runs are deterministic.

``composite(frame, background_mask, backdrop)`` puts the backdrop where the mask is true (sky
and floor, found with MuJoCo's segmentation rendering by ``background_mask``) and keeps the
robot's pixels. ``appearance_shift`` changes the robot's colours and brightness (adaptation
tests).
"""
from __future__ import annotations

import dataclasses

import numpy as np

POOLS = ("train", "test")
APPEARANCE_SHIFTS = ("none", "color")
POOL_SIZE = 32
_POOL_SEEDS = {"train": 12345, "test": 67890}
_WAVES = 6


@dataclasses.dataclass(frozen=True)
class Clip:
    """One procedural clip: waves (frequencies [K, 2], speeds [K], phases [K], colour mix [K, 3],
    base colour [3]) and discs (centres [D, 2], velocities [D, 2], radii [D], colours [D, 3])."""

    freqs: np.ndarray
    speeds: np.ndarray
    phases: np.ndarray
    mix: np.ndarray
    base: np.ndarray
    centres: np.ndarray
    velocities: np.ndarray
    radii: np.ndarray
    colours: np.ndarray


def make_pool(pool: str, size: int = POOL_SIZE) -> list[Clip]:
    """The clips of the ``train`` or ``test`` pool (disjoint generators and palettes)."""
    if pool not in POOLS:
        raise ValueError(f"distractor pool {pool!r}; valid: {list(POOLS)}")
    rng = np.random.default_rng(_POOL_SEEDS[pool])
    # The test pool is warmer and has more discs: a shift in the distractor distribution too.
    tint = np.array([0.2, 0.3, 0.6]) if pool == "train" else np.array([0.6, 0.35, 0.15])
    discs = 3 if pool == "train" else 5
    clips = []
    for _ in range(size):
        clips.append(Clip(
            freqs=rng.uniform(-3.0, 3.0, (_WAVES, 2)),
            speeds=rng.uniform(0.05, 0.3, _WAVES) * rng.choice([-1.0, 1.0], _WAVES),
            phases=rng.uniform(0.0, 2 * np.pi, _WAVES),
            mix=rng.uniform(0.0, 1.0, (_WAVES, 3)) * 0.5 / _WAVES ** 0.5,
            base=np.clip(tint + rng.normal(0.0, 0.1, 3), 0.05, 0.95),
            centres=rng.uniform(0.0, 1.0, (discs, 2)),
            velocities=rng.uniform(-0.02, 0.02, (discs, 2)),
            radii=rng.uniform(0.05, 0.15, discs),
            colours=rng.uniform(0.0, 1.0, (discs, 3)),
        ))
    return clips


def clip_frame(clip: Clip, t: int, size: int) -> np.ndarray:
    """Frame ``t`` of ``clip`` as uint8 ``[size, size, 3]``."""
    grid = (np.arange(size) + 0.5) / size
    y, x = np.meshgrid(grid, grid, indexing="ij")
    # waves: [K, H, W] -> colours through the mix
    angle = 2 * np.pi * (clip.freqs[:, 0, None, None] * x + clip.freqs[:, 1, None, None] * y)
    waves = np.sin(angle + clip.speeds[:, None, None] * t + clip.phases[:, None, None])
    image = clip.base + np.einsum("khw,kc->hwc", waves, clip.mix)
    # discs bounce inside the unit square (reflection of a straight path)
    pos = clip.centres + clip.velocities * t
    pos = 1.0 - np.abs(1.0 - np.mod(pos, 2.0))
    for (cy, cx), r, colour in zip(pos, clip.radii, clip.colours):
        inside = (y - cy) ** 2 + (x - cx) ** 2 < r ** 2
        image[inside] = colour
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def composite(frame: np.ndarray, background: np.ndarray, backdrop: np.ndarray) -> np.ndarray:
    """``backdrop`` where ``background`` ([H, W] bool) is true, ``frame`` elsewhere."""
    return np.where(background[..., None], backdrop, frame)


def shift_appearance(frame: np.ndarray, foreground: np.ndarray, shift: str) -> np.ndarray:
    """Recolour the robot's pixels: ``"color"`` rotates the colour channels and dims them."""
    if shift not in APPEARANCE_SHIFTS:
        raise ValueError(f"appearance_shift {shift!r}; valid: {list(APPEARANCE_SHIFTS)}")
    if shift == "none":
        return frame
    recoloured = (frame[..., [2, 0, 1]].astype(np.float32) * 0.7).astype(np.uint8)
    return np.where(foreground[..., None], recoloured, frame)


class Distractor:
    """Picks a clip per episode (from the reset seed) and gives its frame at each step."""

    def __init__(self, pool: str, size: int):
        self.clips = make_pool(pool)
        self.size = size
        self._clip: Clip | None = None
        self._t = 0

    def reset(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._clip = self.clips[int(rng.integers(len(self.clips)))]
        self._t = int(rng.integers(1000))   # start somewhere inside the clip

    def next_frame(self) -> np.ndarray:
        if self._clip is None:
            raise RuntimeError("Distractor.reset(seed) must come before next_frame()")
        frame = clip_frame(self._clip, self._t, self.size)
        self._t += 1
        return frame
