"""TensorFlow 1's legacy bilinear resize (``tf.image.resize_bilinear``, ``align_corners=False``).

The original FVD code resizes with it, and it differs from ``torch.nn.functional.interpolate``: output
pixel ``i`` samples the source at ``s = i * in_size / out_size`` with no half-pixel offset (the image
shifts by up to half a source pixel towards the top-left), between rows ``floor(s)`` and
``floor(s) + 1`` clamped to the last row. The arithmetic follows TensorFlow's kernel: float32 positions,
each output as ``a + (b - a) * fraction``, first along the width, then along the height, so that a
constant image stays exactly constant.
"""

from __future__ import annotations

import numpy as np
import torch


def legacy_source_positions(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower index, upper index, fraction) of each output position along one axis."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"resize sizes must be positive; got {in_size} -> {out_size}")
    source = np.arange(out_size, dtype=np.float32) * (np.float32(in_size) / np.float32(out_size))
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    return torch.from_numpy(low), torch.from_numpy(high), torch.from_numpy(source - low.astype(np.float32))


def _lerp_axis(x: torch.Tensor, dim: int, out_size: int) -> torch.Tensor:
    low, high, frac = (t.to(x.device) for t in legacy_source_positions(x.shape[dim], out_size))
    a, b = x.index_select(dim, low), x.index_select(dim, high)
    shape = [1] * x.ndim
    shape[dim] = out_size
    return a + (b - a) * frac.reshape(shape)


def resize_bilinear_tf1(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``n h w c`` images (any dtype; computed in float32) to ``size = (height, width)``, float32 out."""
    if images.ndim != 4:
        raise ValueError(f"images must be (n, h, w, c); got shape {tuple(images.shape)}")
    return _lerp_axis(_lerp_axis(images.float(), 2, size[1]), 1, size[0])
