"""The procedural world's vocabulary and the description of one clip (``ClipSpec``).

Geometry is in *image sides*: lengths are fractions of the image's shorter side, positions are measured from
the image centre (x to the right, y downwards). The centred square of one side is visible at every aspect
ratio, and every clip keeps its object inside that square (with a margin), so a spec looks the same at any
size. A clip is one event of ``CLIP_SECONDS`` seconds; rendering it with ``frames`` frames samples it at
``frames / CLIP_SECONDS`` frames per second, frame ``i`` at clip time ``u_i = i / frames``.
"""

from __future__ import annotations

import colorsys
import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np

CLIP_SECONDS = 2.0  # 16 frames at 8 fps, the release's frame rate (higen.md §4)

# Object colours (sRGB). Each pair is at least ~45 Delta E apart in CIELAB (tests check it).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (250, 140, 20),
    "yellow": (240, 215, 40),
    "green": (40, 170, 60),
    "blue": (30, 95, 230),
    "purple": (175, 45, 175),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
DIRECTIONS = ("left", "right", "up", "down", "still")
CHANGES = ("none", "colour", "grow", "shrink")

# Backgrounds: (top colour, bottom colour), interpolated linearly down the image; plain ones have equal ends.
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "black": ((15, 15, 15), (15, 15, 15)),
    "white": ((240, 240, 240), (240, 240, 240)),
    "gray": ((128, 128, 128), (128, 128, 128)),
    "navy": ((20, 30, 90), (20, 30, 90)),
    "gradient": ((35, 35, 35), (185, 185, 185)),
}
# A background is never of the object's colour family (navy is a dark blue).
EXCLUDED_BACKGROUNDS: dict[str, frozenset[str]] = {"blue": frozenset({"navy"})}

# Speeds in image sides per second. Caption words cover disjoint bands with gaps between them, so a judge
# with thresholds in the gaps can name every ground-truth speed correctly.
SPEED_BANDS: dict[str, tuple[float, float]] = {"slow": (0.07, 0.11), "medium": (0.14, 0.18), "fast": (0.21, 0.25)}
# Half-extent of the object at its smallest, in image sides; "small" / "large" are said only in the outer bands.
SIZE_RANGE = (0.12, 0.16)
SIZE_BANDS: dict[str, tuple[float, float]] = {"small": (0.12, 0.133), "large": (0.147, 0.16)}
# A growing (shrinking) object's extent changes by this factor over the clip. Sizes and growth are as large as
# the fastest clip allows: 2 s at 0.25 sides/s travels 0.5, and 2 * 0.16 * 1.4 + 0.5 = 0.948 <= 1 - 2 * MARGIN.
# (Objects of 12-18 px at 64 px were too small for a 4x-down autoencoder to keep stars' points.)
GROWTH = 1.4
CHANGE_RAMP = (0.25, 0.75)  # appearance changes happen between these clip times; the ends are steady
MARGIN = 0.02  # free space kept between the object and the visible square's edge


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines a world clip.

    ``speed`` is in image sides per second (0 when ``direction`` is ``"still"``); ``size`` is the object's
    half-extent at its smallest (its largest is ``size * GROWTH ** change_strength`` when growing or
    shrinking); ``start`` is the object's centre (area centroid) at clip time 0. ``change_strength`` scales
    the appearance change (1 in the world; other values render intermediate changes, e.g. for tests).
    """

    shape: str
    colour: str
    background: str
    direction: str
    speed: float
    change: str
    size: float
    start: tuple[float, float]
    end_colour: str | None = None
    change_strength: float = 1.0

    def __post_init__(self) -> None:
        _check_name("shape", self.shape, SHAPES)
        _check_name("colour", self.colour, COLOURS)
        _check_name("background", self.background, BACKGROUNDS)
        _check_name("direction", self.direction, DIRECTIONS)
        _check_name("change", self.change, CHANGES)
        if (self.change == "colour") != (self.end_colour is not None):
            raise ValueError("end_colour is given exactly when change is 'colour'")
        if self.end_colour is not None:
            _check_name("end_colour", self.end_colour, COLOURS)
        if self.speed < 0 or (self.direction == "still") != (self.speed == 0):
            raise ValueError(f"speed {self.speed} does not fit direction {self.direction!r} (still means speed 0)")
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")

    # ------------------------------------------------------------------ the clip over time
    def velocity(self) -> tuple[float, float]:
        """Image sides per second, (x, y) with y downwards."""
        dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}[self.direction]
        return dx * self.speed, dy * self.speed

    def centre(self, u: np.ndarray) -> np.ndarray:
        """Object centre ``n 2`` (x, y) at clip times ``u`` in [0, 1)."""
        u = np.asarray(u, dtype=np.float64)
        v = np.array(self.velocity()) * CLIP_SECONDS
        return np.array(self.start)[None] + u[:, None] * v[None]

    def extent(self, u: np.ndarray) -> np.ndarray:
        """Object half-extent (image sides) at clip times ``u``."""
        p = change_progress(u) * self.change_strength
        if self.change == "grow":
            return self.size * GROWTH**p
        if self.change == "shrink":
            return self.size * GROWTH ** (self.change_strength - p)
        return np.full_like(p, self.size)

    def rgb(self, u: np.ndarray) -> np.ndarray:
        """Object colour ``n 3`` (sRGB, float 0..255) at clip times ``u``.

        A colour change turns the hue along the shorter way round the HSV wheel (saturation and value
        interpolated linearly): a straight line in RGB or Lab between complementary colours passes through
        gray, where the object would vanish into a gray background mid-clip.
        """
        u = np.atleast_1d(np.asarray(u, dtype=np.float64))
        a = np.array(colorsys.rgb_to_hsv(*(np.array(COLOURS[self.colour]) / 255.0)))
        if self.change != "colour":
            return np.repeat(np.array(COLOURS[self.colour], dtype=np.float64)[None], len(u), axis=0)
        b = np.array(colorsys.rgb_to_hsv(*(np.array(COLOURS[self.end_colour]) / 255.0)))
        b[0] = a[0] + (b[0] - a[0] + 0.5) % 1.0 - 0.5  # the nearer turn of the hue
        p = change_progress(u) * self.change_strength
        hsv = a[None] + p[:, None] * (b - a)[None]
        return 255.0 * np.array([colorsys.hsv_to_rgb(h % 1.0, s, v) for h, s, v in hsv])

    def max_extent(self) -> float:
        return self.size * (GROWTH**self.change_strength if self.change in ("grow", "shrink") else 1.0)

    def fits_in_frame(self) -> bool:
        """Whether the object stays inside the visible square (less the margin) for the whole clip."""
        limit = 0.5 - MARGIN - self.max_extent()
        ends = self.centre(np.array([0.0, 1.0]))
        return bool(np.all(np.abs(ends) <= limit + 1e-9))

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["start"] = list(self.start)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "ClipSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown clip spec fields: {', '.join(unknown)}")
        return cls(**{**d, "start": tuple(float(x) for x in d["start"])})


def change_progress(u: np.ndarray) -> np.ndarray:
    """How far (0..1) an appearance change has gone at clip times ``u``: a linear ramp over ``CHANGE_RAMP``."""
    lo, hi = CHANGE_RAMP
    return np.clip((np.atleast_1d(np.asarray(u, dtype=np.float64)) - lo) / (hi - lo), 0.0, 1.0)


def _check_name(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {field} {value!r}; choose one of: {', '.join(allowed)}")


# ---------------------------------------------------------------------------- held-out combinations
def _held_out_triples() -> frozenset[tuple[str, str, str]]:
    """(colour, shape, direction) triples never seen in training: those whose indices sum to 0 mod 6.

    30 of the 180 triples (1/6). For every (colour, shape) pair at most one of its five directions is held
    out, and for every (colour, direction) and (shape, direction) pair exactly one of six partners, so every
    colour, shape, direction and every pair of them still appears in training: the held-out clips test
    composition, not unseen words.
    """
    return frozenset(
        (c, s, d)
        for ci, c in enumerate(COLOURS)
        for si, s in enumerate(SHAPES)
        for di, d in enumerate(DIRECTIONS)
        if (ci + si + di) % 6 == 0
    )


HELD_OUT = _held_out_triples()
SPLITS = ("train", "heldout", "all")


def is_held_out(spec: ClipSpec) -> bool:
    return (spec.colour, spec.shape, spec.direction) in HELD_OUT


def sample_spec(rng: np.random.Generator, split: str = "train") -> ClipSpec:
    """Draw a clip. ``train`` never yields a held-out (colour, shape, direction) triple, ``heldout`` only
    those, ``all`` anything. Deterministic given the generator's state."""
    _check_name("split", split, SPLITS)
    if split == "heldout":
        colour, shape, direction = sorted(HELD_OUT)[rng.integers(len(HELD_OUT))]
    else:
        while True:
            colour, shape, direction = (str(rng.choice(v)) for v in (list(COLOURS), SHAPES, DIRECTIONS))
            if split == "all" or (colour, shape, direction) not in HELD_OUT:
                break
    change = str(rng.choice(CHANGES, p=[0.4, 0.2, 0.2, 0.2]))
    end_colour = str(rng.choice([c for c in COLOURS if c != colour])) if change == "colour" else None
    excluded = EXCLUDED_BACKGROUNDS.get(colour, frozenset()) | EXCLUDED_BACKGROUNDS.get(end_colour, frozenset())
    background = str(rng.choice([b for b in BACKGROUNDS if b not in excluded]))
    speed = 0.0 if direction == "still" else float(rng.uniform(*SPEED_BANDS[str(rng.choice(list(SPEED_BANDS)))]))
    size = float(rng.uniform(*SIZE_RANGE))
    spec = ClipSpec(shape, colour, background, direction, speed, change, size, (0.0, 0.0), end_colour)
    return dataclasses.replace(spec, start=_start_position(spec, rng))


def _start_position(spec: ClipSpec, rng: np.random.Generator) -> tuple[float, float]:
    """A start drawn uniformly among those that keep the object in frame for the whole clip."""
    limit = 0.5 - MARGIN - spec.max_extent()
    travel = np.array(spec.velocity()) * CLIP_SECONDS
    lo = -limit - np.minimum(travel, 0.0)
    hi = limit - np.maximum(travel, 0.0)
    if np.any(hi < lo):
        raise ValueError(f"a {spec.direction} clip at speed {spec.speed} with extent {spec.max_extent():.3f} cannot stay in frame")
    x, y = rng.uniform(lo, hi)
    return float(x), float(y)
