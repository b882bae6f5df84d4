"""Frame FID: the Fréchet Inception Distance (Heusel et al. 2017) between the frames of two video folders.

Every frame is an image; the frames of all the videos of a folder form one set. Conventions (preset
``inception-2015-12-05``, those of the original TensorFlow FID code, pytorch-fid and torch-fidelity):

1. uint8 RGB frames, any size, resized to 299 x 299 without cropping by TF1's legacy bilinear resize,
   then scaled as ``(x - 128) / 128`` (:func:`higen.evaluation.inception.preprocess`);
2. the 2,048-d ``pool_3`` features of the 2015-12-05 Inception (:mod:`higen.evaluation.inception`);
3. the Fréchet distance between the Gaussians of the two sets of features
   (:mod:`higen.evaluation.frechet`: float64, unbiased covariances).

Which frames: frames ``0, stride, 2 * stride, ...`` of each video, all of them or the first ``frames``
of them. The report records both, the number of frames and videos of each set and their frame sizes.
"""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from higen.evaluation.frechet import frechet_distance
from higen.evaluation.embed import embed_batches
from higen.evaluation.inception import FEATURES, RESOLUTION, FIDInception, load_fid_inception, preprocess
from higen.evaluation.videos import list_videos, read_clip
from higen.io.video import iter_frames

PRESET = "inception-2015-12-05"


def inception_features(frames: Iterable[np.ndarray], model: FIDInception, batch_size: int = 32) -> np.ndarray:
    """``(N, 2048)`` float32 features of uint8 ``h w 3`` frames (their sizes may differ)."""
    return embed_batches(frames, lambda frame, device: preprocess(np.asarray(frame)[None], device)[0], model, batch_size, "frames")


def video_frames(path: str | os.PathLike, frames: int | None = None, stride: int = 1) -> Iterable[np.ndarray]:
    """Frames ``0, stride, 2 * stride, ...`` of a video: all of them, or the first ``frames`` (a shorter video is an error)."""
    if stride < 1:
        raise ValueError(f"the frame stride must be at least 1; got {stride}")
    if frames is not None:
        return iter(read_clip(path, frames, stride))
    return islice(iter_frames(path), 0, None, stride)


def folder_features(folder: str | os.PathLike, model: FIDInception, frames: int | None = None, stride: int = 1,
                    batch_size: int = 32, progress: bool = False, paths: list[Path] | None = None) -> tuple[np.ndarray, dict]:
    """The features of the chosen frames of every video in ``folder``, and a summary (videos, frames, frame sizes)."""
    from tqdm.auto import tqdm

    paths = list_videos(folder) if paths is None else paths
    sizes: set[tuple[int, int]] = set()

    def every_frame():
        for path in tqdm(paths, desc=f"FID {Path(folder).name}", unit="video", disable=not progress):
            for frame in video_frames(path, frames, stride):
                sizes.add(tuple(frame.shape[:2]))
                yield frame

    features = inception_features(every_frame(), model, batch_size)
    return features, {"folder": str(folder), "videos": len(paths), "frames": len(features), "sizes": sorted(list(s) for s in sizes)}


def frechet_inception_distance(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """FID between two sets of Inception features (see the module docstring)."""
    return frechet_distance(real_features, fake_features)


def evaluate_fid(real_folder: str | os.PathLike, fake_folder: str | os.PathLike, weights: str | os.PathLike | None,
                 frames: int | None = None, stride: int = 1, device: str | torch.device = "cpu", batch_size: int = 32,
                 progress: bool = False, expected_sha256: str | None = None) -> dict:
    """Frame FID between two folders of videos, with everything needed to compare it with another report.

    ``frames``: the first ``frames`` frames (at ``stride``) of each video, default all of them.
    ``expected_sha256``: see :func:`~higen.evaluation.inception.load_fid_inception`."""
    if frames is not None and frames < 1:
        raise ValueError(f"FID needs at least 1 frame per video; got {frames}")
    if stride < 1:
        raise ValueError(f"the frame stride must be at least 1; got {stride}")
    real_paths, fake_paths = list_videos(real_folder), list_videos(fake_folder)  # both checked before the slow part
    model = load_fid_inception(weights, device, expected_sha256)
    real, real_summary = folder_features(real_folder, model, frames, stride, batch_size, progress, real_paths)
    fake, fake_summary = folder_features(fake_folder, model, frames, stride, batch_size, progress, fake_paths)
    for name, features in (("real", real), ("generated", fake)):
        if len(features) < 2:
            raise ValueError(f"FID needs at least 2 {name} frames to estimate a covariance; got {len(features)}")
    return {
        "metric": "fid", "preset": PRESET, "fid": frechet_inception_distance(real, fake),
        "real": real_summary, "fake": fake_summary, "frames_per_video": frames, "stride": stride,
        "resolution": list(RESOLUTION), "features": FEATURES, "inception_weights_sha256": model.weights_sha256,
    }
