"""Model-free temporal measures: VBench's temporal flickering and frame-difference statistics.

VBench (Huang et al., CVPR 2024) scores flicker per video as ``(255 - D) / 255``, where ``D`` is the
mean absolute difference between consecutive frames (over pixels and channels, in levels of 255,
averaged over the frame pairs); a folder's score is the mean over its videos. 1.0 is a still video.
VBench applies it to prompts that describe static scenes, where any change between frames is flicker;
on moving content it measures motion as much as flicker, so read it beside the frame-difference
statistics.
"""

from __future__ import annotations

import os

import numpy as np

from higen.evaluation.videos import list_videos
from higen.io.video import read_video


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference of each consecutive frame pair of uint8 ``f h w c`` frames: ``(f - 1,)``."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"frames must be uint8 (frames, height, width, channels); got {frames.dtype} {frames.shape}")
    if frames.shape[0] < 2:
        raise ValueError(f"frame differences need at least 2 frames; got {frames.shape[0]}")
    pairs = np.abs(np.diff(frames.astype(np.int16), axis=0))  # int16: uint8 subtraction would wrap around
    return pairs.reshape(pairs.shape[0], -1).mean(axis=1)


def flicker_score(frames: np.ndarray) -> float:
    """VBench's temporal flickering score of one video, in [0, 1] (1 = no change between frames)."""
    return float((255.0 - frame_differences(frames).mean()) / 255.0)


def frame_difference_stats(frames: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, minimum and maximum of one video's consecutive-frame differences (levels of 255)."""
    diffs = frame_differences(frames)
    return {"mean": float(diffs.mean()), "std": float(diffs.std()), "min": float(diffs.min()), "max": float(diffs.max())}


def evaluate_flicker(folder: str | os.PathLike) -> dict:
    """Flicker score and frame-difference statistics of every video in ``folder`` (all frames), and their means."""
    videos = {}
    for path in list_videos(folder):
        frames, _ = read_video(path)
        videos[path.name] = {"flicker": flicker_score(frames), "frame_difference": frame_difference_stats(frames)}
    means = {key: float(np.mean([v["frame_difference"][key] for v in videos.values()])) for key in ("mean", "std", "min", "max")}
    return {
        "metric": "flicker", "folder": str(folder), "n": len(videos),
        "flicker": float(np.mean([v["flicker"] for v in videos.values()])),
        "frame_difference": means, "videos": videos,
    }
