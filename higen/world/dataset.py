"""World clips as a dataset: a map-style ``WorldDataset`` and ``export`` to MP4 files plus a manifest.

Clip ``i`` of a dataset depends only on ``(seed, split, i)``: its spec and caption are drawn from a generator
seeded with that key, so any worker, process or machine gets the same clip for the same index.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from higen.io.files import atomic_write_text
from higen.io.video import write_video
from higen.world.captions import make_caption
from higen.world.render import render
from higen.world.spec import CLIP_SECONDS, SPLITS, ClipSpec, sample_spec


def world_clip(seed: int, index: int, split: str = "train") -> tuple[ClipSpec, str]:
    """The spec and caption of clip ``index`` (deterministic in ``(seed, split, index)``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    rng = np.random.default_rng([int(seed), SPLITS.index(split), int(index)])
    spec = sample_spec(rng, split)
    return spec, make_caption(spec, rng)


class WorldDataset:
    """``length`` world clips; item ``i`` is ``{"video": uint8 f h w 3, "caption": str, "spec": dict, "index": i}``.

    Map-style (``len`` and integer indexing), so it works with ``torch.utils.data.DataLoader`` directly.
    ``start`` is the clip time of the first frame (``higen.world.render.render``).
    """

    def __init__(self, length: int, frames: int = 16, height: int = 64, width: int = 64, seed: int = 0, split: str = "train",
                 start: float = 0.0):
        if length < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        if frames < 1 or height < 8 or width < 8:
            raise ValueError(f"need frames >= 1 and a size of at least 8 x 8; got {frames} frames of {height} x {width}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        self.length, self.frames, self.height, self.width = int(length), int(frames), int(height), int(width)
        self.seed, self.split, self.start = int(seed), split, float(start)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a world dataset of {self.length} clips")
        spec, caption = world_clip(self.seed, index, self.split)
        video = render(spec, self.frames, self.height, self.width, start=self.start)
        return {"video": video, "caption": caption, "spec": spec.to_dict(), "index": index}


def world_fps(frames: int) -> float:
    """The frame rate at which ``frames`` frames span one world clip (8 fps for 16 frames)."""
    return frames / CLIP_SECONDS


def export(
    folder: str | Path, n: int, frames: int = 16, height: int = 64, width: int = 64, seed: int = 0,
    split: str = "train", fps: float | None = None, overwrite: bool = False, progress: bool = False,
) -> Path:
    """Write ``n`` world clips as MP4 files ``000000.mp4 ...`` into ``folder``, with ``manifest.csv``
    (columns ``path,caption``, paths relative to the folder) and ``specs.jsonl`` (each clip's spec).

    The manifest is written last, so a folder with a manifest is complete. Returns the manifest's path.
    """
    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if manifest.exists() and not overwrite:
        raise FileExistsError(f"{manifest} exists; pass overwrite=True (--overwrite) to replace the export")
    dataset = WorldDataset(n, frames, height, width, seed, split)
    fps = world_fps(frames) if fps is None else float(fps)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    folder.mkdir(parents=True, exist_ok=True)
    rows, specs = [], []
    indices = range(n)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="world clips", unit="clip")
    for i in indices:
        item = dataset[i]
        name = f"{i:06d}.mp4"
        write_video(folder / name, item["video"], fps=fps)
        rows.append((name, item["caption"]))
        specs.append(json.dumps({"path": name, "caption": item["caption"], "spec": item["spec"]}))
    atomic_write_text(folder / "specs.jsonl", "\n".join(specs) + "\n")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "caption"])
    writer.writerows(rows)
    atomic_write_text(manifest, text.getvalue())
    return manifest
