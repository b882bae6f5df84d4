"""Drawing world clips with numpy: shapes, anti-aliased by supersampling, over plain or gradient backgrounds.

Every shape is defined in a unit frame whose origin is the shape's area centroid (so a growing or shrinking
object does not drift) and whose largest coordinate is 1 (so an object of half-extent ``e`` fits in a box of
``2e`` around its centre). Pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)`` in pixel units.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from einops import reduce

from higen.world.spec import BACKGROUNDS, ClipSpec


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(arm: float = 0.34) -> np.ndarray:
    a = arm
    return np.array([(a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a), (-a, -1)], dtype=np.float64)


# Vertices (x, y), y downwards: triangles and stars point up. Normalised by ``_normalise``.
_RAW_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64),
    "triangle": np.array([(0, -1), (math.sqrt(3) / 2, 0.5), (-math.sqrt(3) / 2, 0.5)]),
    "diamond": np.array([(0, -1), (0.7, 0), (0, 1), (-0.7, 0)], dtype=np.float64),
    "star": _star(),
    "cross": _cross(),
}


def _signed_area_and_centroid(v: np.ndarray) -> tuple[float, np.ndarray]:
    """Shoelace formula: signed area and area centroid of a simple polygon."""
    x, y = v[:, 0], v[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    centroid = np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6 * area)
    return float(area), centroid


def _normalise(v: np.ndarray) -> np.ndarray:
    _, centroid = _signed_area_and_centroid(v)
    v = v - centroid
    return v / np.abs(v).max()


POLYGONS: dict[str, np.ndarray] = {name: _normalise(v) for name, v in _RAW_POLYGONS.items()}


@lru_cache(maxsize=None)
def unit_area(shape: str) -> float:
    """Area of the unit-frame shape (half-extent 1): a drawn object's area is ``unit_area * extent**2``."""
    if shape == "circle":
        return math.pi
    return abs(_signed_area_and_centroid(POLYGONS[shape])[0])


def inside(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether unit-frame points lie inside ``shape`` (boolean, broadcast shape of ``x`` and ``y``)."""
    if shape == "circle":
        return x * x + y * y <= 1.0
    # Even-odd rule: a point is inside when a ray to +x crosses the boundary an odd number of times.
    v = POLYGONS[shape]
    result = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y)), dtype=bool)
    for (x1, y1), (x2, y2) in zip(v, np.roll(v, -1, axis=0)):
        if y1 == y2:
            continue
        straddles = (y1 > y) != (y2 > y)
        crossing_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        result ^= straddles & (x < crossing_x)
    return result


def coverage(shape: str, cx: float, cy: float, extent: float, height: int, width: int, supersample: int = 4) -> tuple[np.ndarray, int, int]:
    """Fraction of each pixel covered by a shape centred at pixel coordinates ``(cx, cy)``.

    Only the shape's bounding box is evaluated: returns ``(alpha, row0, col0)`` where ``alpha`` (float, ``r c``)
    covers rows ``row0 : row0 + r`` and columns ``col0 : col0 + c`` of the image (possibly empty).
    ``supersample`` x ``supersample`` points per pixel give the anti-aliased edge.
    """
    r0, r1 = max(0, math.floor(cy - extent)), min(height, math.ceil(cy + extent) + 1)
    c0, c1 = max(0, math.floor(cx - extent)), min(width, math.ceil(cx + extent) + 1)
    if r1 <= r0 or c1 <= c0:
        return np.zeros((0, 0)), r0, c0
    offsets = (np.arange(supersample) + 0.5) / supersample
    ys = (np.arange(r0, r1)[:, None] + offsets[None]).reshape(-1, 1)
    xs = (np.arange(c0, c1)[:, None] + offsets[None]).reshape(1, -1)
    hits = inside(shape, (xs - cx) / extent, (ys - cy) / extent).astype(np.float32)
    return reduce(hits, "(r s) (c t) -> r c", "mean", s=supersample, t=supersample), r0, c0


def background(name: str, height: int, width: int) -> np.ndarray:
    """Background image float ``h w 3`` (0..255): the named colour, or its gradient from top to bottom."""
    top, bottom = (np.array(c, dtype=np.float32) for c in BACKGROUNDS[name])
    t = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
    rows = top[None] + t * (bottom - top)[None]  # h 3
    return np.broadcast_to(rows[:, None], (height, width, 3))


def to_pixels(point_sides: np.ndarray, height: int, width: int) -> np.ndarray:
    """Image-side coordinates (from the centre, y down) ``... 2`` -> pixel coordinates ``... 2`` (x, y)."""
    return np.array([width / 2, height / 2]) + np.asarray(point_sides) * min(height, width)


def render(spec: ClipSpec, frames: int, height: int, width: int, supersample: int = 4, start: float = 0.0) -> np.ndarray:
    """Draw a clip: uint8 ``f h w 3``. Frame ``i`` shows clip time ``start + i / frames`` (see ``higen.world.spec``).

    ``start`` > 0 draws a later part of the event, e.g. one frame at clip time 0.5: the middle frame of a
    16-frame clip, which HiGen's temporal stage takes as its spatial prior.
    """
    if frames < 1 or height < 1 or width < 1:
        raise ValueError(f"frames, height and width must be positive, got {frames}, {height}, {width}")
    if not 0.0 <= start < 1.0:
        raise ValueError(f"start is a clip time in [0, 1), got {start}")
    u = start + np.arange(frames) / frames
    centres = to_pixels(spec.centre(u), height, width)
    extents = spec.extent(u) * min(height, width)
    colours = spec.rgb(u).astype(np.float32)
    video = np.repeat(background(spec.background, height, width)[None], frames, axis=0)  # f h w 3, float
    for i in range(frames):
        alpha, r0, c0 = coverage(spec.shape, *centres[i], extents[i], height, width, supersample)
        patch = video[i, r0 : r0 + alpha.shape[0], c0 : c0 + alpha.shape[1]]
        patch += alpha[..., None] * (colours[i] - patch)  # composite in place: bg (1 - a) + colour a
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)
