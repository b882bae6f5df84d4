"""The data section of the training configuration: what to train on and how clips are cut (docs/data.md).

``higen.training.config.TrainConfig`` holds it as ``data``; the loaders of this package read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataSection:
    """What to train on (docs/data.md). ``source``: ``manifest`` (CSV / TSV / JSONL / VGen ``path|||caption``
    lists of files), ``webdataset`` (tar shards), ``world`` (the procedural world, ``higen.world``: demos,
    tests, benchmarks) or ``cache`` (a latent cache written by ``higen train-cache``)."""

    source: str = "manifest"
    videos: str | None = None  # video manifest / shard pattern(s) (brace, glob, "a::b") / cache folder
    images: str | None = None  # optional image manifest / shards / cache for the image (F = 1) steps
    root: str | None = None  # base folder for relative paths in manifests and shard patterns (default: the manifest's folder)
    caption_column: str = "caption"
    path_column: str = "path"
    check_files: bool = True  # manifests: check at start-up that every listed file exists
    frames: int = 32
    fps: float = 8.0  # resample clips to this frame rate (the release: 8)
    frame_stride: int | None = None  # take every n-th source frame instead of resampling to ``fps``
    height: int = 256
    width: int = 448
    random_start: bool = True  # draw the clip's first frame (keyed by seed, epoch, sample); else start at frame 0
    min_frames_policy: str = "skip"  # a video with fewer than ``frames`` frames: skip (counted as too_short) | pad (repeat the last frame)
    num_workers: int = 2  # loader worker processes per stream and rank
    length: int = 10000  # world only: number of distinct clips
    world_seed: int = 0  # world only: which world (the clips' content); the sample order follows train.seed
    latent: bool = False  # world only: render at latent size (height/8 x width/8) as stand-in 4-channel latents, no autoencoder

    def validate(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"config: data.fps must be positive; got {self.fps}")
        if self.frame_stride is not None and self.frame_stride < 1:
            raise ValueError(f"config: data.frame_stride must be at least 1 (or null to resample to data.fps); got {self.frame_stride}")
        if self.num_workers < 0:
            raise ValueError(f"config: data.num_workers must not be negative; got {self.num_workers}")
        if self.latent and self.source != "world":
            raise ValueError(f"config: data.latent is for data.source=world only; got data.source={self.source}")
        if self.latent and (self.height % 8 or self.width % 8):
            raise ValueError(f"config: data.latent needs data.height and data.width divisible by 8; got {self.height}x{self.width}")
