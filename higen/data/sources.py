"""Map-style sample sources: ``len(source)`` samples, ``source.load(index, rng)`` gives one.

Every source is random access and deterministic: the same (index, rng state) gives the same sample
in any process, which is what exact resume and "2 processes == 1 process" rest on. The order in
which samples are visited belongs to the loader (``higen.data.loader``), never to a source.
Sources here: files listed in a manifest and the procedural world; tar shards live in
``higen.data.shards``, the latent cache in ``higen.data.cache``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import numpy as np
import torch

from higen.data.decode import ClipSampling, decode_clip, fit_frames
from higen.encoders.autoencoder import to_unit_range


@dataclass
class Sample:
    """One loaded sample: decoded ``pixels`` (uint8 ``3 f H W``) or cached ``tensors`` (one row of a latent cache)."""

    caption: str
    pixels: torch.Tensor | None = None
    tensors: dict[str, torch.Tensor] | None = None


class Source(Protocol):
    def __len__(self) -> int: ...

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        """Sample ``index``; ``rng`` (keyed by seed, epoch and index) draws any random choice (the start frame).
        Raises ``higen.data.decode.SkipSample`` when the sample cannot be used."""
        ...

    def describe(self, index: int) -> str:
        """Where sample ``index`` comes from (a path), for skip messages."""
        ...


class StringTable:
    """Many strings packed into one byte array plus offsets.

    A list of ten million Python strings is copied page by page into every forked loader worker (reading
    a string touches its reference count); two numpy arrays are shared untouched.
    """

    def __init__(self, strings: Iterable[str]) -> None:
        encoded = [s.encode("utf-8") for s in strings]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._data = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        return self._data[self._offsets[index] : self._offsets[index + 1]].tobytes().decode("utf-8")


class ManifestSource:
    """Files listed in a manifest (``higen.data.manifest.read_manifest``), decoded with PyAV."""

    def __init__(self, paths: StringTable, captions: StringTable, base: str, spec: ClipSampling) -> None:
        self.paths, self.captions, self.base, self.spec = paths, captions, base, spec

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, index: int) -> str:
        return os.path.join(self.base, self.paths[index])

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        return Sample(self.captions[index], pixels=decode_clip(self.describe(index), self.spec, rng))


class WorldSource:
    """The procedural world (``higen.world.dataset.WorldDataset`` or anything with its interface:
    ``len()``, item i -> ``{"video": uint8 f h w 3, "caption": str, ...}``), fitted to the spec's size.

    ``latent=True`` hands the frames over as stand-in latents instead of pixels: ``4 f h w`` = the RGB
    frames in [-1, 1] and their channel mean (4 channels, like the SD autoencoder's latents), so tests
    and benchmarks train without an autoencoder. The spec's size is then the latent size.
    """

    def __init__(self, dataset: Any, spec: ClipSampling, latent: bool = False) -> None:
        self.dataset, self.spec, self.latent = dataset, spec, latent

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self, index: int) -> str:
        return f"world sample {index}"

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        # The world renders each index deterministically, so there is no start frame to draw.
        item = self.dataset[index]
        video = torch.as_tensor(np.asarray(item["video"]))
        if video.dtype != torch.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"world sample {index}: expected uint8 video (f, h, w, 3); got {video.dtype} {tuple(video.shape)}")
        pixels = fit_frames(video, self.spec.height, self.spec.width)
        if not self.latent:
            return Sample(str(item["caption"]), pixels=pixels)
        rgb = to_unit_range(pixels)
        return Sample(str(item["caption"]), tensors={"latents": torch.cat([rgb, rgb.mean(dim=0, keepdim=True)])})


def world_source(length: int, spec: ClipSampling, seed: int, latent: bool = False, split: str = "train", start: float = 0.0) -> WorldSource:
    """A ``WorldSource`` over ``WorldDataset`` rendered directly at the spec's frames and size, from clip time ``start``."""
    from higen.world.dataset import WorldDataset

    dataset = WorldDataset(length=length, frames=spec.frames, height=spec.height, width=spec.width, seed=seed, split=split, start=start)
    return WorldSource(dataset, spec, latent)
