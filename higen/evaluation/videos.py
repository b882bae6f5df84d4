"""The videos of a folder, read as clips for the metrics (through :mod:`higen.io.video`, i.e. PyAV)."""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path

import numpy as np

from higen.io.video import iter_frames

VIDEO_SUFFIXES = (".mp4", ".gif", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files and PNG-frame folders (``frame_*.png``) directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"video folder not found: {folder}")
    videos = sorted(p for p in folder.iterdir()
                    if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) or (p.is_dir() and any(p.glob("frame_*.png"))))
    if not videos:
        raise ValueError(f"{folder} holds no videos ({', '.join(VIDEO_SUFFIXES)} files or folders of frame_*.png)")
    return videos


def read_clip(path: str | os.PathLike, frames: int, stride: int = 1) -> np.ndarray:
    """Frames ``0, stride, 2 * stride, ...`` of a video, ``frames`` of them: uint8 ``f h w 3``."""
    if frames < 1 or stride < 1:
        raise ValueError(f"frames and stride must be at least 1; got {frames} and {stride}")
    needed = (frames - 1) * stride + 1
    clip = list(islice(iter_frames(path), 0, needed, stride))
    if len(clip) < frames:
        raise ValueError(f"{path} is too short: a clip of {frames} frames at stride {stride} needs {needed} frames")
    return np.stack(clip)
