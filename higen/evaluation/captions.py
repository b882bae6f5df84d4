"""Caption files for the text-conditioned metrics: which caption belongs to which video.

A ``.csv`` (or ``.tsv``) file with a header row and a ``caption`` column. The video each caption
belongs to is named by a ``video`` column (or ``video_id``, as MSR-VTT's annotations call it): a video
file's name without its suffix (``video7010`` for ``video7010.mp4``), or a frame folder's name. Without
such a column the captions are numbered by row from 0 and their videos are ``00000``, ``00001``, ...
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

ID_COLUMNS = ("video", "video_id")


def read_captions(path: str | os.PathLike) -> dict[str, str]:
    """``{video name: caption}`` in file order; unique names, non-empty captions, names usable as file names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read {path} as a CSV file: {err}") from None
    if "caption" not in columns:
        raise ValueError(f"{path} has no 'caption' column (its columns: {', '.join(columns) or 'none'})")
    id_column = next((c for c in ID_COLUMNS if c in columns), None)
    captions: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        name = (row[id_column] or "").strip() if id_column else f"{line - 2:05d}"
        caption = (row["caption"] or "").strip()
        if not caption:
            raise ValueError(f"{path}: row {line} has an empty caption")
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{path}: row {line}: {name!r} cannot name a video file")
        if name in captions:
            raise ValueError(f"{path}: row {line}: video {name!r} has a caption already (one caption per video)")
        captions[name] = caption
    if not captions:
        raise ValueError(f"{path} holds no captions")
    return captions


def video_name(path: Path) -> str:
    """The name a captions file uses for a video: the file name without its suffix, or the frame folder's name."""
    return path.name if path.is_dir() else path.stem
