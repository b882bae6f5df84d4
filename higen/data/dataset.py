"""The map-style torch ``Dataset`` behind every loader: items are ``(epoch, position, global index)``.

Shared by the training loader (``higen.data.loader``) and the latent-cache builder (``higen.data.cache``),
so both draw a sample's random choices the same way and both see skips as values, not exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from higen.data.decode import SkipSample
from higen.data.sources import Sample, Source

STREAM_TAG = {"video": 0, "image": 1}
_SAMPLE_DOMAIN = 0x5A  # differs from the epoch permutations' domain (higen.data.loader)


def sample_rng(seed: int, stream: str, epoch: int, index: int) -> np.random.Generator:
    """The generator for the random choices inside sample ``index`` in ``epoch`` (the start frame): keyed by
    what the sample is, never by rank, worker or time."""
    return np.random.default_rng([_SAMPLE_DOMAIN, seed % 2**64, STREAM_TAG[stream], epoch, index])


@dataclass
class Loaded:
    """One entry of a loading order after loading: the sample, or why it was skipped."""

    epoch: int
    position: int
    index: int
    sample: Sample | None
    reason: str = ""
    detail: str = ""


class LoadDataset(Dataset):
    """Loads ``(epoch, position, index)`` items from a source; a ``SkipSample`` becomes a ``Loaded`` without sample."""

    def __init__(self, source: Source, stream: str, seed: int) -> None:
        self.source, self.stream, self.seed = source, stream, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int, int]) -> Loaded:
        epoch, position, index = item
        try:
            return Loaded(epoch, position, index, self.source.load(index, sample_rng(self.seed, self.stream, epoch, index)))
        except SkipSample as skip:
            return Loaded(epoch, position, index, None, skip.reason, f"{self.source.describe(index)}: {skip.detail}")


def as_list(items: list[Loaded]) -> list[Loaded]:
    """The loaders' collate function: keep failed entries too, so the consumer counts each where it falls in the order."""
    return items
