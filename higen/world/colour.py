"""Colour arithmetic shared by the world and its judge: sRGB -> CIELAB and nearest named colour.

CIELAB (D65) is "perceptual-ish": Euclidean distance there (Delta E 1976) roughly follows how different two
colours look, which RGB distance does not (dark colours are crowded in RGB). About 2.3 is a just-noticeable
difference; distinct named colours are tens apart.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

# sRGB (D65) -> linear RGB -> XYZ matrix (IEC 61966-2-1) and the D65 white point.
_RGB_TO_XYZ = np.array([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 255] (any shape ``... 3``, any dtype) -> CIELAB ``... 3`` (L in [0, 100])."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    # The cube root has a linear toe below (6/29)^3 so that L is finite and smooth near black.
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Delta E 1976 between Lab colours (broadcasting over leading axes)."""
    return np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), axis=-1)


def nearest_name(rgb: np.ndarray, palette: Mapping[str, tuple[int, int, int]]) -> tuple[str, float]:
    """The palette name whose colour is nearest to ``rgb`` (0..255) in Lab, and that distance."""
    names = list(palette)
    lab = srgb_to_lab(np.array([palette[n] for n in names]))
    distances = delta_e(lab, srgb_to_lab(rgb)[None])
    i = int(np.argmin(distances))
    return names[i], float(distances[i])
