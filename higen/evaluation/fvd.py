"""Fréchet Video Distance (Unterthiner et al., 2018) with the original code's conventions.

Preset ``unterthiner2018`` (the only one so far; its name goes into every report):

1. uint8 RGB frames, any size, resized to 224 x 224 without cropping by TF1's legacy bilinear resize
   (:mod:`higen.evaluation.resize`), then scaled to [-1, 1] as ``2 * x / 255 - 1``;
2. each clip (at least 9 frames) through the Kinetics-400 I3D (:mod:`higen.evaluation.i3d`); its
   embedding is the 400 logits averaged over time;
3. the Fréchet distance between the Gaussians of the real and generated embeddings
   (:mod:`higen.evaluation.frechet`: float64, unbiased covariances).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from einops import rearrange

from higen.evaluation.embed import embed_batches
from higen.evaluation.frechet import frechet_distance
from higen.evaluation.i3d import MIN_FRAMES, WEIGHTS_SHA256, I3D, load_i3d
from higen.evaluation.resize import resize_bilinear_tf1
from higen.evaluation.videos import list_videos, read_clip

PRESET = "unterthiner2018"
RESOLUTION = (224, 224)


def preprocess(clip: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``f h w 3`` frames -> the I3D input ``3 f 224 224`` in [-1, 1] (float32)."""
    clip = torch.as_tensor(clip)
    if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[3] != 3:
        raise ValueError(f"a clip must be uint8 (frames, height, width, 3); got {clip.dtype} {tuple(clip.shape)}")
    if clip.shape[0] < MIN_FRAMES:
        raise ValueError(f"FVD's I3D needs clips of at least {MIN_FRAMES} frames; got {clip.shape[0]}")
    resized = resize_bilinear_tf1(clip.to(device), RESOLUTION)
    return rearrange(2 * resized / 255 - 1, "f h w c -> c f h w")


def i3d_embeddings(clips: Iterable[np.ndarray], model: I3D, batch_size: int = 8, progress: bool = False,
                   total: int | None = None) -> np.ndarray:
    """``(N, 400)`` float32 I3D embeddings of uint8 ``f h w 3`` clips (all with the same frame count)."""
    from tqdm.auto import tqdm

    return embed_batches(tqdm(clips, total=total, desc="I3D", unit="clip", disable=not progress), preprocess, model, batch_size, "clips")


def frechet_video_distance(real_embeddings: np.ndarray, fake_embeddings: np.ndarray) -> float:
    """FVD between two sets of I3D embeddings (see the module docstring)."""
    return frechet_distance(real_embeddings, fake_embeddings)


def clip_embeddings(paths: list[Path], model: I3D, frames: int = 16, stride: int = 1,
                    batch_size: int = 8, progress: bool = False) -> np.ndarray:
    """I3D embeddings of the first ``frames`` frames (every ``stride``-th) of each video."""
    return i3d_embeddings((read_clip(p, frames, stride) for p in paths), model, batch_size, progress, total=len(paths))


def evaluate_fvd(real_folder: str | os.PathLike, fake_folder: str | os.PathLike, frames: int = 16, stride: int = 1,
                 weights: str | os.PathLike | None = None, device: str | torch.device = "cpu", batch_size: int = 8,
                 progress: bool = False) -> dict:
    """FVD between two folders of videos, with everything needed to compare it with another report."""
    if frames < MIN_FRAMES:
        raise ValueError(f"FVD's I3D needs clips of at least {MIN_FRAMES} frames; got --frames {frames}")
    real_paths, fake_paths = list_videos(real_folder), list_videos(fake_folder)  # both checked before the slow part
    model = load_i3d(weights, device)
    real = clip_embeddings(real_paths, model, frames, stride, batch_size, progress)
    fake = clip_embeddings(fake_paths, model, frames, stride, batch_size, progress)
    return {
        "metric": "fvd", "preset": PRESET, "fvd": frechet_video_distance(real, fake),
        "real": {"folder": str(real_folder), "n": len(real)}, "fake": {"folder": str(fake_folder), "n": len(fake)},
        "frames": frames, "stride": stride, "resolution": list(RESOLUTION), "i3d_weights_sha256": WEIGHTS_SHA256,
    }
