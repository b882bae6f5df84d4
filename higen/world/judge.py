"""An automatic judge of world clips that reads only frames (uint8 ``f h w 3``); no learned weights.

How it measures (details in ``docs/world.md``):

1. **Background**: per frame and row, the median colour over the row (the object never covers half a row),
   so plain backgrounds and vertical gradients are both modelled. Named by the nearest background colour in
   CIELAB, or "gradient" when the top and bottom differ.
2. **Object**: pixels far from the background are candidates; the object's colour is the median of the
   strongest ones; every pixel's coverage ``alpha`` is its projection on the background -> object colour line
   (so soft, blurred or anti-aliased edges count fractionally). Stray specks far from the bulk are dropped.
   Area and centroid are the sums over a slightly dilated mask, which blur does not change.
3. **Shape**: the coverage is compared (soft IoU) with each world shape drawn at the measured centroid and
   area; the best match over the largest frames wins.
4. **Motion**: a Theil-Sen line (median of pairwise slopes) through the centroid trajectory gives a velocity
   that ignores a few bad frames; the speed is reported in pixels per frame and in image sides per second.
5. **Appearance change**: CIELAB Delta E between the first and last quarter's colours, and the log ratio of
   their areas; summarised as one number ``colour_change / 100 + |area_change|``.
6. **Stability**: background flicker (mean Delta E between consecutive frames' background), and jitter of the
   object's colour (RGB), log-area and position around their trend (distance from the running median of three
   frames, which any steady rise or fall follows exactly; the distance from the fitted line for position).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from higen.world.captions import ATTRIBUTES, parse_prompt
from higen.world.colour import delta_e, nearest_name, srgb_to_lab
from higen.world.render import coverage, unit_area
from higen.world.spec import BACKGROUNDS, CLIP_SECONDS, COLOURS, GROWTH, SHAPES, SIZE_BANDS, SPEED_BANDS

# ---------------------------------------------------------------------------- thresholds
CANDIDATE_DISTANCE = 0.15  # RGB distance (0..1 scale, up to sqrt 3) from the background: possibly object
CORE_FRACTION = 0.7  # object colour from candidates at >= this fraction of the 90th-percentile distance
MIN_AREA = 0.0025  # present when the area is at least this (x short side^2): a quarter of the smallest object
GRADIENT_DELTA_E = 15.0  # top vs bottom of the background (the world's gradient is ~50 apart; plain is 0)
# Speeds (image sides per second): below STILL_BELOW is "still"; word thresholds sit in the world's gaps.
STILL_BELOW = 0.5 * SPEED_BANDS["slow"][0]
SPEED_THRESHOLDS = {
    "slow": (SPEED_BANDS["slow"][1] + SPEED_BANDS["medium"][0]) / 2,
    "medium": (SPEED_BANDS["medium"][1] + SPEED_BANDS["fast"][0]) / 2,
}
SIZE_THRESHOLD = (SIZE_BANDS["small"][1] + SIZE_BANDS["large"][0]) / 2
COLOUR_CHANGE_DELTA_E = 20.0  # a colour change between named colours is >= ~45 (the palette's spacing)
AREA_CHANGE_LOG = math.log(GROWTH)  # half the log area ratio of a full grow/shrink (GROWTH^2 in area)
# Stability: a clip is stable when every jitter is below these (ground-truth clips measure ~0).
MAX_FLICKER = 3.0  # Delta E between consecutive frames' mean background
MAX_COLOUR_JITTER = 12.0  # RGB levels (0..255), mean distance of the object's colour from its running median
MAX_AREA_JITTER = 0.05  # the same for log area
MAX_POSITION_JITTER = 0.02  # image sides, median distance from the fitted line
SHAPE_FRAMES = 4  # shape votes from this many of the largest frames
SHAPE_BLURS = (0.0, 0.75, 1.5)  # pixels: the drawn shapes are also compared blurred by these


@dataclass
class ObjectFrame:
    """One frame's object: coverage ``alpha`` (``h w``), area (pixels), centroid (x, y pixels), colour (RGB)."""

    alpha: np.ndarray
    area: float
    centroid: np.ndarray
    rgb: np.ndarray


@dataclass
class Measurement:
    """What the judge read from a clip. Names are the world's; None where it could not tell."""

    frames: int
    height: int
    width: int
    background: str
    background_rgb: list[float]
    present: list[bool]
    presence: float
    colour: str | None = None
    colour_rgb: list[float] | None = None
    end_colour: str | None = None
    end_colour_rgb: list[float] | None = None
    shape: str | None = None
    shape_scores: dict[str, float] = field(default_factory=dict)
    direction: str | None = None
    velocity_px: list[float] | None = None  # (x, y) pixels per frame, y downwards
    speed_px: float | None = None  # pixels per frame
    speed_per_frame: float | None = None  # image sides per frame
    speed: float | None = None  # image sides per second at frames / CLIP_SECONDS fps
    speed_word: str | None = None
    size: float | None = None  # half-extent at the smallest end of the clip, image sides
    size_word: str | None = None
    colour_change: float | None = None  # Delta E, first vs last quarter
    area_change: float | None = None  # log(area last quarter / area first quarter)
    appearance_change: float | None = None  # colour_change / 100 + |area_change|
    change: str | None = None
    background_flicker: float = 0.0
    colour_jitter: float | None = None
    area_jitter: float | None = None
    position_jitter: float | None = None
    stable: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- measuring
def measure(frames: np.ndarray) -> Measurement:
    """Measure a clip, uint8 ``f h w 3``."""
    frames = _check_frames(frames)
    f, h, w, _ = frames.shape
    side = min(h, w)
    x = frames.astype(np.float32)
    rows = np.median(x, axis=2)  # f h 3: each frame's background, row by row
    objects = [_find_object(x[i], rows[i], side) for i in range(f)]
    present = [o is not None for o in objects]
    m = Measurement(frames=f, height=h, width=w, present=present, presence=float(np.mean(present)), **_background(rows))
    if not any(present):
        m.stable = m.background_flicker <= MAX_FLICKER
        return m
    _colours(m, objects)
    _shape(m, objects)
    _motion(m, objects, side)
    _appearance(m, objects, side)
    m.stable = bool(
        m.background_flicker <= MAX_FLICKER
        and (m.colour_jitter or 0.0) <= MAX_COLOUR_JITTER
        and (m.area_jitter or 0.0) <= MAX_AREA_JITTER
        and (m.position_jitter or 0.0) <= MAX_POSITION_JITTER
    )
    return m


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"the judge reads uint8 frames (f, h, w, 3); got {frames.dtype} {frames.shape}")
    if frames.shape[0] < 1 or min(frames.shape[1:3]) < 8:
        raise ValueError(f"a clip needs at least 1 frame of at least 8 x 8 pixels; got {frames.shape}")
    return frames


def _background(rows: np.ndarray) -> dict:
    """Background name and colour from per-frame row colours ``f h 3``, and its flicker."""
    profile = rows.mean(axis=0)  # h 3
    band = max(1, len(profile) // 8)
    top, bottom = profile[:band].mean(axis=0), profile[-band:].mean(axis=0)
    if float(delta_e(srgb_to_lab(top), srgb_to_lab(bottom))) > GRADIENT_DELTA_E:
        name = "gradient"
    else:
        name, _ = nearest_name(profile.mean(axis=0), {k: v[0] for k, v in BACKGROUNDS.items() if v[0] == v[1]})
    per_frame = srgb_to_lab(rows.mean(axis=1))  # f 3
    flicker = float(delta_e(per_frame[1:], per_frame[:-1]).mean()) if len(per_frame) > 1 else 0.0
    return dict(background=name, background_rgb=[float(v) for v in profile.mean(axis=0)], background_flicker=flicker)


def _find_object(frame: np.ndarray, rows: np.ndarray, side: int) -> ObjectFrame | None:
    """The object in one frame (``h w 3`` float, background rows ``h 3``), or None when there is none."""
    diff = frame - rows[:, None]  # h w 3
    distance = np.linalg.norm(diff, axis=-1) / 255.0
    candidates = distance > CANDIDATE_DISTANCE
    min_area = max(3.0, MIN_AREA * side * side)
    if candidates.sum() < min_area:
        return None
    core = distance >= CORE_FRACTION * np.percentile(distance[candidates], 90)
    rgb = np.median(frame[core], axis=0)
    direction = rgb[None] - rows  # h 3: background -> object colour, per row
    alpha = np.clip((diff * direction[:, None]).sum(-1) / np.maximum((direction**2).sum(-1), 1e-6)[:, None], 0.0, 1.0)
    region = _dilate(_drop_strays(alpha > 0.5), 2)
    alpha = np.where(region, alpha, 0.0)
    area = float(alpha.sum())
    if area < min_area:
        return None
    ys, xs = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]] + 0.5
    centroid = np.array([(alpha * xs).sum(), (alpha * ys).sum()]) / area
    return ObjectFrame(alpha=alpha, area=area, centroid=centroid, rgb=rgb)


def _drop_strays(mask: np.ndarray) -> np.ndarray:
    """Keep mask pixels near the bulk: within a box around the median position, sized from the mask's area.

    Small artefacts away from the object would otherwise pull the centroid; a cheap stand-in for keeping
    the largest connected component (the world has one object)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return mask
    # A world shape of half-extent e lies within e of its centre and covers >= 1.3 e^2, so 2 sqrt(area) > 2e
    # keeps all of it even from a median position a little off its centre.
    radius = 2.0 * math.sqrt(len(ys)) + 2.0
    keep = (np.abs(ys - np.median(ys)) <= radius) & (np.abs(xs - np.median(xs)) <= radius)
    out = np.zeros_like(mask)
    out[ys[keep], xs[keep]] = True
    return out


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary dilation by a (2 steps + 1)^2 square, with shifts (no image library needed)."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        out = grown
    return out


def _quarters(objects: list[ObjectFrame | None]) -> tuple[list[ObjectFrame], list[ObjectFrame]]:
    """Objects of the first and last quarter of the clip (before and after any appearance change: the world
    changes appearance between clip times 1/4 and 3/4); the first / last present frames if a quarter has none."""
    k = max(1, len(objects) // 4)
    found = [o for o in objects if o is not None]
    first = [o for o in objects[:k] if o is not None] or found[:1]
    last = [o for o in objects[-k:] if o is not None] or found[-1:]
    return first, last


def _colours(m: Measurement, objects: list[ObjectFrame | None]) -> None:
    first, last = _quarters(objects)
    start = np.median([o.rgb for o in first], axis=0)
    end = np.median([o.rgb for o in last], axis=0)
    m.colour, _ = nearest_name(start, COLOURS)
    m.end_colour, _ = nearest_name(end, COLOURS)
    m.colour_rgb, m.end_colour_rgb = [float(v) for v in start], [float(v) for v in end]
    m.colour_jitter = _wobble(np.array([o.rgb for o in objects if o is not None]))


def _shape(m: Measurement, objects: list[ObjectFrame | None]) -> None:
    largest = sorted((o for o in objects if o is not None), key=lambda o: -o.area)[:SHAPE_FRAMES]
    scores = {s: float(np.mean([_shape_iou(o, s) for o in largest])) for s in SHAPES}
    m.shape_scores = scores
    m.shape = max(scores, key=scores.get)


def _shape_iou(obj: ObjectFrame, shape: str) -> float:
    """Soft IoU between the measured coverage and ``shape`` drawn with the same centroid and area, best over
    a few blurs of the drawing (a blurred star is closer to a circle than to a sharp star)."""
    h, w = obj.alpha.shape
    ys, xs = np.nonzero(obj.alpha)
    pad = 2 + math.ceil(3 * max(SHAPE_BLURS))
    r0, r1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    c0, c1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    measured = obj.alpha[r0:r1, c0:c1]
    # Draw in window coordinates: shift the centroid by the window's corner.
    cx, cy = obj.centroid - np.array([c0, r0])
    drawn, dr, dc = coverage(shape, cx, cy, math.sqrt(obj.area / unit_area(shape)), r1 - r0, c1 - c0)
    template = np.zeros_like(measured)
    template[dr : dr + drawn.shape[0], dc : dc + drawn.shape[1]] = drawn
    return max(_soft_iou(measured, gaussian_blur(template, sigma)) for sigma in SHAPE_BLURS)


def _soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.maximum(a, b).sum()
    return float(np.minimum(a, b).sum() / union) if union > 0 else 0.0


def gaussian_blur(image: np.ndarray, sigma: float, axes: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """Separable Gaussian blur (float result) along ``axes``, edges extended; ``sigma`` in pixels (0: copy)."""
    out = np.asarray(image, dtype=np.float32)
    if sigma <= 0:
        return out.copy()
    radius = max(1, math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in axes:
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in range(out.ndim)], mode="edge")
        # Windows along ``axis`` become a trailing axis; the (symmetric) kernel is dotted with each window.
        out = (np.lib.stride_tricks.sliding_window_view(padded, len(kernel), axis=axis) @ kernel).astype(np.float32)
    return out


def _motion(m: Measurement, objects: list[ObjectFrame | None], side: int) -> None:
    t = np.array([i for i, o in enumerate(objects) if o is not None], dtype=np.float64)
    if len(t) < 2:
        return
    xy = np.array([o.centroid for o in objects if o is not None])  # n 2
    velocity = np.array([theil_sen_slope(t, xy[:, 0]), theil_sen_slope(t, xy[:, 1])])
    intercept = np.median(xy - t[:, None] * velocity[None], axis=0)
    residual = np.linalg.norm(xy - (intercept[None] + t[:, None] * velocity[None]), axis=1)
    m.velocity_px = [float(v) for v in velocity]
    m.speed_px = float(np.hypot(*velocity))
    m.speed_per_frame = m.speed_px / side
    m.speed = m.speed_per_frame * m.frames / CLIP_SECONDS
    m.position_jitter = float(np.median(residual)) / side
    if m.speed < STILL_BELOW:
        m.direction, m.speed_word = "still", None
        return
    vx, vy = velocity
    m.direction = ("right" if vx > 0 else "left") if abs(vx) >= abs(vy) else ("down" if vy > 0 else "up")
    m.speed_word = "slow" if m.speed < SPEED_THRESHOLDS["slow"] else "medium" if m.speed < SPEED_THRESHOLDS["medium"] else "fast"


def _appearance(m: Measurement, objects: list[ObjectFrame | None], side: int) -> None:
    first, last = _quarters(objects)
    area_start = float(np.median([o.area for o in first]))
    area_end = float(np.median([o.area for o in last]))
    m.colour_change = float(delta_e(srgb_to_lab(np.array(m.colour_rgb)), srgb_to_lab(np.array(m.end_colour_rgb))))
    m.area_change = math.log(area_end / area_start)
    m.appearance_change = m.colour_change / 100.0 + abs(m.area_change)
    colour_score = m.colour_change / COLOUR_CHANGE_DELTA_E if m.colour != m.end_colour else 0.0
    area_score = abs(m.area_change) / AREA_CHANGE_LOG
    if max(colour_score, area_score) < 1.0:
        m.change = "none"
    elif colour_score >= area_score:
        m.change = "colour"
    else:
        m.change = "grow" if m.area_change > 0 else "shrink"
    extent = math.sqrt(min(area_start, area_end) / unit_area(m.shape)) / side
    m.size, m.size_word = extent, "small" if extent < SIZE_THRESHOLD else "large"
    areas = np.log([o.area for o in objects if o is not None])
    m.area_jitter = _wobble(areas[:, None])


def _wobble(series: np.ndarray) -> float | None:
    """Mean distance of a series ``n d`` from its running median of three.

    A series that only rises or only falls (per channel) equals its running median of three, so steady
    trends of any shape (a move, a ramp, a hue turn) measure 0; frame-to-frame flicker does not.
    """
    if len(series) < 3:
        return None
    neighbours = np.median(np.stack([series[:-2], series[1:-1], series[2:]]), axis=0)
    return float(np.linalg.norm(series[1:-1] - neighbours, axis=-1).mean())


def theil_sen_slope(t: np.ndarray, y: np.ndarray) -> float:
    """Median of the slopes between all pairs of points: a line fit that up to ~29% bad points cannot move."""
    i, j = np.triu_indices(len(t), k=1)
    return float(np.median((y[j] - y[i]) / (t[j] - t[i])))


# ---------------------------------------------------------------------------- scoring
CORRECT, INCORRECT, NOT_ASKED = "correct", "incorrect", "not asked"


def score(prompt: str, frames: np.ndarray) -> dict:
    """Compare what ``prompt`` asks for (``parse_prompt``) with what the frames show.

    Returns ``{"prompt", "asked", "measured", "results", "presence", "stable"}`` where ``results`` maps every
    attribute of ``parse_prompt`` to "correct", "incorrect" or "not asked".
    """
    return compare(parse_prompt(prompt), measure(frames), prompt)


def compare(asked: dict[str, str | None], m: Measurement, prompt: str = "") -> dict:
    """Score a measurement against asked attributes (see ``score``)."""
    measured = {a: getattr(m, a) for a in ("colour", "shape", "direction", "background", "change", "end_colour")}
    measured["speed"], measured["size"] = m.speed_word, m.size_word
    results = {a: NOT_ASKED if asked.get(a) is None else CORRECT if asked[a] == measured[a] else INCORRECT for a in ATTRIBUTES}
    return dict(prompt=prompt, asked=asked, measured=m.to_dict(), results=results, presence=m.presence, stable=m.stable)
