"""Moving coloured squares in memory: training data with no files, for demos, tests and benchmarks.

``SyntheticData`` has the interface and determinism contract of ``higen.data.TrainingData``:

- each stream (video; image = the middle frame of a clip) visits its ``length`` samples in a
  permutation seeded by (seed, stream, epoch);
- a global step takes the next ``world_size * batch_size`` entries and rank ``r`` gets the slice
  ``[r * batch_size, (r + 1) * batch_size)``, so one process with batch 2 sees what two with batch 1 see;
- sample ``i`` is rendered from a generator seeded by (seed, i) alone;
- ``state_dict`` / ``load_state_dict`` hold the exact position; nothing is ever skipped.

A clip: a square of one of six colours on a dark background, moving left, right, up or down (or
standing still) at a steady speed, captioned like "a red square moving left".
"""

from __future__ import annotations

import numpy as np
import torch

from higen.data.batch import Batch

COLOURS = {
    "red": (1.0, -0.8, -0.8), "green": (-0.8, 0.9, -0.8), "blue": (-0.8, -0.6, 1.0),
    "yellow": (1.0, 0.9, -0.8), "white": (1.0, 1.0, 1.0), "purple": (0.5, -0.8, 0.9),
}
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0), "still": (0, 0)}
BACKGROUND = -0.7
_STREAM_KEYS = {"video": 0, "image": 1}


# The batch the real data gives (pixels ``b 3 f H W`` in [-1, 1] here); the old name is kept for callers.
SyntheticBatch = Batch


def render_clip(seed: int, index: int, frames: int, height: int, width: int) -> tuple[torch.Tensor, str]:
    """Clip ``index``: float ``3 f H W`` in [-1, 1] and its caption; a function of (seed, index) only."""
    rng = np.random.default_rng([seed, index])
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
    size = max(2, int(min(height, width) * rng.uniform(0.25, 0.4)))
    dy, dx = DIRECTIONS[direction]
    # Speed so the square crosses at most the free space during the clip: it stays fully in frame.
    span_y, span_x = height - size, width - size
    speed = rng.uniform(0.5, 1.0) * (span_y if dy else span_x) / max(frames - 1, 1)
    y0 = rng.uniform(0, span_y - speed * (frames - 1) * abs(dy)) + (speed * (frames - 1) if dy < 0 else 0)
    x0 = rng.uniform(0, span_x - speed * (frames - 1) * abs(dx)) + (speed * (frames - 1) if dx < 0 else 0)
    video = torch.full((3, frames, height, width), BACKGROUND)
    rgb = torch.tensor(COLOURS[colour])[:, None, None]
    for f in range(frames):
        y, x = int(round(y0 + dy * speed * f)), int(round(x0 + dx * speed * f))
        video[:, f, y : y + size, x : x + size] = rgb
    return video, f"a {colour} square moving {direction}" if direction != "still" else f"a {colour} square standing still"


class _Stream:
    def __init__(self, name: str, length: int, seed: int, rank: int, world_size: int, batch_size: int):
        if length < world_size * batch_size:
            raise ValueError(f"synthetic data: {length} samples are fewer than one global batch ({world_size} x {batch_size})")
        self.name, self.length, self.seed = name, length, seed
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.steps_per_epoch = length // (world_size * batch_size)
        self.epoch, self.step = 0, 0

    def next_indices(self) -> list[int]:
        order = np.random.default_rng([self.seed, _STREAM_KEYS[self.name], self.epoch]).permutation(self.length)
        start = (self.step * self.world_size + self.rank) * self.batch_size
        indices = [int(i) for i in order[start : start + self.batch_size]]
        self.step += 1
        if self.step == self.steps_per_epoch:
            self.epoch, self.step = self.epoch + 1, 0
        return indices


class SyntheticData:
    """``TrainingData``-compatible moving squares (see the module docstring)."""

    def __init__(self, *, frames: int, height: int, width: int, length: int, seed: int, rank: int = 0, world_size: int = 1,
                 batch_size: int = 1, image_batch_size: int | None = None, images: bool = True):
        self.frames, self.height, self.width, self.seed = frames, height, width, seed
        self._streams = {"video": _Stream("video", length, seed, rank, world_size, batch_size)}
        if images:
            self._streams["image"] = _Stream("image", length, seed, rank, world_size, image_batch_size or batch_size)

    def has_videos(self) -> bool:
        return True

    def has_images(self) -> bool:
        return "image" in self._streams

    def next_batch(self, kind: str) -> SyntheticBatch:
        if kind not in self._streams:
            raise ValueError(f"no {kind} stream in this synthetic data")
        indices = self._streams[kind].next_indices()
        clips, captions = zip(*(render_clip(self.seed, i, self.frames, self.height, self.width) for i in indices))
        pixels = torch.stack(clips)
        if kind == "image":
            pixels = pixels[:, :, self.frames // 2 : self.frames // 2 + 1]
        return SyntheticBatch(pixels=pixels, latents=None, captions=list(captions), indices=indices)

    def state_dict(self) -> dict:
        return {"streams": {k: {"epoch": s.epoch, "position": s.step} for k, s in self._streams.items()}}

    def load_state_dict(self, state: dict) -> None:
        for kind, stream in self._streams.items():
            stream.epoch, stream.step = int(state["streams"][kind]["epoch"]), int(state["streams"][kind]["position"])

    def skipped(self) -> dict:
        return {"total": {}, "epoch": {}}

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------ tiny runs (tests, benchmarks)

# A run of a tiny model on 4 frames of 32 x 32 pixels: a few steps take about a second on one CPU core.
TINY_RUN = ("data.source=world", "data.frames=4", "data.height=32", "data.width=32", "log.progress=false",
            "log.tensorboard=false", "optim.warmup_steps=0", "optim.lr=1e-3", "train.max_steps=4")


def tiny_components(seed: int = 0, dropout: float = 0.1, appearance: str = "histogram", **unet):
    """Tiny random components (``higen.tiny``) for :func:`higen.training.trainer.train`.

    The UNet's zero-initialised branches are randomised (``higen.tiny.tiny_unet``), so the prior
    and the cues change its output from the first step. ``unet``: overrides of its tiny config.
    """
    from higen.diffusion.schedule import NoiseSchedule
    from higen.encoders.histogram import HistogramEmbedder
    from higen.pipeline.settings import GenerationSettings
    from higen.tiny import tiny_autoencoder, tiny_text_encoder, tiny_unet
    from higen.training.components import Components

    text_encoder = tiny_text_encoder(seed)
    unet = tiny_unet(seed, **{"text_dim": text_encoder.dim, "dropout": dropout, "temporal_dropout": dropout, **unet}).train()
    embedder = HistogramEmbedder() if appearance == "histogram" else None
    defaults = GenerationSettings(frames=4, height=32, width=32, spatial_steps=2, temporal_steps=2)
    return Components(unet, text_encoder, tiny_autoencoder(seed), embedder, NoiseSchedule(), defaults)


def synthetic_factory(length: int = 64, images: bool = True):
    """A ``data_factory`` for ``train``: :class:`SyntheticData` sized by the config's data section."""

    def factory(cfg, world, components=None) -> SyntheticData:
        d, t = cfg.data, cfg.train
        return SyntheticData(frames=d.frames, height=d.height, width=d.width, length=length, seed=t.seed, rank=world.rank,
                             world_size=world.world_size, batch_size=t.batch_size, image_batch_size=t.image_batch_size, images=images)

    return factory


__all__ = ["SyntheticData", "SyntheticBatch", "render_clip", "tiny_components", "synthetic_factory", "TINY_RUN", "COLOURS", "DIRECTIONS"]
