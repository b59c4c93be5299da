"""Moving backgrounds for distracted DMC (RePo's setting), generated procedurally.

No video can be downloaded here, so each "video" is a procedural clip: a drifting mixture of
low-frequency colour waves (a plasma-like texture) with a few bouncing discs over it. A pool is a
list of clip parameters drawn from a seeded generator; the ``train`` and ``test`` pools come from
different generator seeds and different palettes and disc counts, so a test clip is never a
train clip. Frames are a pure function of (pool, clip index, time), so runs are deterministic.

A second kind, ``NaturalDistractor`` (``distractor_pool="natural"``): grayscale crops of a
natural photograph that drift smoothly, as RePo's grayscale natural videos. scikit-image
(``skimage.data``) is not installed here and imageio's standard images download on first use
(no network), so the source is the one natural photo an installed package ships: matplotlib's
``sample_data/grace_hopper.jpg`` (US Navy portrait, public domain). The ``train`` pool crops
the photo, ``test`` its mirror image along other paths: a small pool, and the two share
content. Unlike the procedural clips, the stream is not restarted per episode: its phase comes
from the env's first reset seed and then runs on across episodes, like a video playing behind
the robot. (A resumed run rebuilds its envs, so its stream restarts from the restored episode's
seed: the physics replays exactly, the backgrounds after a resume do not.)

``composite(frame, background_mask, backdrop)`` puts the backdrop where the mask is true (sky
and floor, found with MuJoCo's segmentation rendering by ``background_mask``) and keeps the
robot's pixels. ``appearance_shift`` changes the robot's colours and brightness (adaptation
tests).
"""
from __future__ import annotations

import dataclasses

import numpy as np

POOLS = ("train", "test")
KINDS = ("procedural", "natural")     # DMCEnv's distractor_pool
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


# ---------------------------------------------------------------------------- natural images
_NATURAL_IMAGE = "grace_hopper.jpg"   # matplotlib's mpl-data/sample_data
_ZOOM = 2          # the photo is scaled so its short side is _ZOOM crops: a crop shows 1/_ZOOM^2
_PATHS = {"train": 12, "test": 34}   # generator seeds of each pool's crop paths


def natural_image(pool: str, size: int) -> np.ndarray:
    """The pool's grayscale photo as float32 ``[H, W]`` in [0, 1], short side ``_ZOOM * size``
    (``test``: mirrored left-right)."""
    import os

    import matplotlib
    from PIL import Image

    if pool not in POOLS:
        raise ValueError(f"distractor pool {pool!r}; valid: {list(POOLS)}")
    path = os.path.join(matplotlib.get_data_path(), "sample_data", _NATURAL_IMAGE)
    with Image.open(path) as image:
        gray = image.convert("L")      # ITU-R 601 luma, as RePo's grayscale videos
        scale = _ZOOM * size / min(gray.size)
        gray = gray.resize((round(gray.size[0] * scale), round(gray.size[1] * scale)),
                           Image.Resampling.LANCZOS)
        array = np.asarray(gray, np.float32) / 255.0
    return array[:, ::-1].copy() if pool == "test" else array


def _bounce(x: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Positions on a straight path folded back into ``[0, span]`` (reflection at both ends)."""
    span = np.asarray(span, np.float64)
    folded = span - np.abs(span - np.mod(x, 2 * np.maximum(span, 1)))
    return np.where(span > 0, folded, 0.0)


class NaturalDistractor:
    """Moving grayscale crops of a natural photo, one continuous stream per env.

    The crop's top-left corner drifts at a constant velocity (0.4 - 1.2 px per frame on each
    axis, per pool) and bounces off the photo's edges, so consecutive frames overlap like
    video frames. The first ``reset(seed)`` sets the stream's phase from the seed; later resets
    leave it running (see the module docstring)."""

    def __init__(self, pool: str, size: int):
        self.image = natural_image(pool, size)
        self.size = size
        rng = np.random.default_rng(_PATHS[pool])
        self.velocity = rng.uniform(0.4, 1.2, 2) * rng.choice([-1.0, 1.0], 2)
        self._t: int | None = None

    def reset(self, seed: int) -> None:
        if self._t is None:   # only the first episode picks the phase: the stream runs on
            self._t = int(np.random.default_rng(seed).integers(100_000))

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` of the stream as uint8 ``[size, size, 3]`` (three equal channels)."""
        height, width = self.image.shape
        spans = np.array([height - self.size, width - self.size])
        top, left = np.rint(_bounce(self.velocity * t, spans)).astype(int)
        crop = self.image[top:top + self.size, left:left + self.size]
        gray = (crop * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)

    def next_frame(self) -> np.ndarray:
        if self._t is None:
            raise RuntimeError("NaturalDistractor.reset(seed) must come before next_frame()")
        frame = self.frame(self._t)
        self._t += 1
        return frame


def make_distractor(kind: str, pool: str, size: int) -> "Distractor | NaturalDistractor":
    """A distractor of ``kind`` (``KINDS``) from ``pool`` (``POOLS``)."""
    if kind not in KINDS:
        raise ValueError(f"distractor_pool={kind!r}; valid: {list(KINDS)}")
    return Distractor(pool, size) if kind == "procedural" else NaturalDistractor(pool, size)
