"""The unit the trainer consumes: a ``Batch`` of decoded clips or of cached latents."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from higen.data.sources import Sample
from higen.encoders.autoencoder import to_unit_range

# Tensors a latent cache may hold that have their own Batch field; any other cached name goes to ``extra``.
CACHE_FIELDS = ("latents", "text", "motion", "appearance")


@dataclass
class Batch:
    """``pixels``: float32 ``b 3 f H W`` in [-1, 1] (f = 1 for image batches), or, from a latent cache,
    ``latents``: scaled latents ``b c f h w`` with the cached ``text`` (``b L d``), ``motion`` (``b (f-1)``),
    ``appearance`` (``b f f``) and anything else the cache holds in ``extra``. ``indices``: the samples'
    global indices in their source (per-sample RNG keys)."""

    pixels: torch.Tensor | None
    latents: torch.Tensor | None
    captions: list[str]
    indices: list[int] = field(default_factory=list)
    text: torch.Tensor | None = None
    motion: torch.Tensor | None = None
    appearance: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.captions)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on ``device``."""
        moved = {f.name: _move(getattr(self, f.name), device, non_blocking) for f in fields(self)}
        return Batch(**moved)


def _move(value, device, non_blocking: bool):
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, dict):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in value.items()}
    return value


def collate(samples: list[Sample], indices: list[int]) -> Batch:
    """Stack loaded samples (all decoded, or all cached) into a ``Batch``."""
    captions = [s.caption for s in samples]
    if samples[0].pixels is not None:
        return Batch(pixels=to_unit_range(torch.stack([s.pixels for s in samples])), latents=None, captions=captions, indices=indices)
    stacked = {name: torch.stack([s.tensors[name] for s in samples]) for name in samples[0].tensors}
    known = {name: stacked.pop(name, None) for name in CACHE_FIELDS}
    return Batch(pixels=None, captions=captions, indices=indices, extra=stacked, **known)
