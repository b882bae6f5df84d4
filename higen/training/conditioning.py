"""From a data ``Batch`` to the UNet's training inputs: latents, text, spatial prior, motion, appearance.

Everything here is frozen (no gradients) and follows the release's recipe (higen.md §1, §2, §5) with
two fixes (§6): captions are dropped with probability ``cues.caption_dropout`` (default 0.1; the
release used 0) and replaced by the same null text that inference uses for the unconditional branch
(``""``; the release trained with a negative-prompt embedding instead).

- latents: a *sample* of the autoencoder posterior, scaled by the autoencoder's factor (0.18215);
- the cues, ``higen.cues.Cues.from_clip``: the spatial prior is the clean latent of the middle frame,
  ``f // 2``; motion is measured on the scaled latents; the appearance cue is the cosine similarity of
  the appearance embedder's per-frame embeddings, remapped ``1 - k (1 - cos)`` (with OpenCLIP and k = 5
  the release's ``5 cos - 4``);
- image steps (one frame): ``Cues.spatial_stage``, what stage 1 sees at inference.

Randomness per sample comes from generators keyed by (seed, step, global sample index, purpose), never
by rank, batch position or time, so one process with batch 2 and two processes with batch 1 draw the
same numbers. The latent-cache builder (``higen train-cache``) calls the same functions.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Protocol

import numpy as np
import torch

from higen.cues import Cues, middle_frame
from higen.encoders.text import NULL_TEXT
from higen.training.config import CuesSection

# The release remaps OpenCLIP cosines as 5 cos - 4 (cosine 0.8 -> 0). For the colour-histogram
# embedder, cos = 1 - a when an object covering a fraction a of the frame changes colour completely
# (the Bhattacharyya coefficient of the two histograms); k = 10 maps such a change of an object
# covering a tenth of the frame to about 0, the same end of the scale as a full change under CLIP.
DEFAULT_APPEARANCE_SCALE = {"openclip": 5.0, "histogram": 10.0, "ones": 1.0}

# Independent random streams per sample, each keyed by its purpose.
PURPOSES = {"step_kind": 0, "caption": 1, "posterior": 2, "timestep": 3, "noise": 4, "cache_posterior": 5}


# ------------------------------------------------------------------------------------ randomness


def keyed_seed(*key: int) -> int:
    """A 63-bit seed from non-negative integers (numpy ``SeedSequence``: the same on every platform)."""
    if any(k < 0 for k in key):
        raise ValueError(f"random keys must be non-negative integers; got {key}")
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0]) >> 1


def sample_generator(seed: int, step: int, index: int, purpose: str) -> torch.Generator:
    """A CPU generator for one sample's ``purpose`` (see :data:`PURPOSES`) at one training step."""
    return torch.Generator().manual_seed(keyed_seed(seed, step, index, PURPOSES[purpose]))


def sample_generators(seed: int, step: int, indices: list[int], purpose: str) -> list[torch.Generator]:
    return [sample_generator(seed, step, i, purpose) for i in indices]


def step_kind(seed: int, step: int, image_probability: float, has_images: bool = True, has_videos: bool = True) -> str:
    """``"image"`` or ``"video"`` for a whole step: one draw keyed by (seed, step), the same on every rank.

    The release tied image steps to particular GPU ranks, so the image ratio depended on the number of
    GPUs (higen.md §6); here it is ``image_probability`` whatever the world size.
    """
    if not has_videos:
        return "image"
    if not has_images or image_probability <= 0.0:
        return "video"
    g = torch.Generator().manual_seed(keyed_seed(seed, step, PURPOSES["step_kind"]))
    return "image" if torch.rand((), generator=g).item() < image_probability else "video"


def caption_dropout_mask(seed: int, step: int, indices: list[int], probability: float) -> list[bool]:
    """True where a sample's caption is replaced by the null text (keyed per sample)."""
    if probability <= 0.0:
        return [False] * len(indices)
    return [torch.rand((), generator=g).item() < probability for g in sample_generators(seed, step, indices, "caption")]


# ------------------------------------------------------------------------------------ encoders


class TextEncoder(Protocol):
    def encode(self, prompts: list[str]) -> torch.Tensor: ...


class Autoencoder(Protocol):
    scaling_factor: float

    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor: ...


class ImageEmbedder(Protocol):
    def embed(self, video: torch.Tensor) -> torch.Tensor: ...


def resolve_appearance_embedder(cues: CuesSection) -> str:
    """The appearance embedder in use: ``auto`` is ``openclip`` when ``cues.open_clip`` is set, else ``histogram``."""
    if cues.appearance_embedder == "auto":
        return "openclip" if cues.open_clip else "histogram"
    return cues.appearance_embedder


def resolve_appearance_scale(cues: CuesSection) -> float:
    return cues.appearance_scale if cues.appearance_scale is not None else DEFAULT_APPEARANCE_SCALE[resolve_appearance_embedder(cues)]


@torch.no_grad()
def encode_latents(autoencoder: Autoencoder, pixels: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Pixels ``b 3 f H W`` in [-1, 1] -> scaled latents ``b c f h w``: one posterior sample per clip.

    Each clip is encoded with its own generator (the autoencoder works frame by frame anyway), so its
    sample does not depend on its batch neighbours.
    """
    return torch.cat([autoencoder.encode(pixels[i : i + 1], sample=True, generator=g) for i, g in enumerate(generators)])


# ---------------------------------------------------------------------------------- conditioner


@dataclass
class TrainingInputs:
    """One batch, ready for the loss. ``latents`` ``b c f h w`` (clean, scaled); ``text`` ``b L d``; ``cues``
    with a measured ``b f f`` appearance cue."""

    latents: torch.Tensor
    text: torch.Tensor
    cues: Cues
    indices: list[int]
    dropped: list[bool]


class Conditioner:
    """Builds :class:`TrainingInputs` from a data ``Batch`` with the frozen encoders.

    ``embedder`` (the appearance embedder) None means the ``ones`` choice. Cached batches (``batch.latents``
    set) bring their latents, text features and cues; only caption dropout is applied to them here.
    ``autocast`` (a context-manager factory) wraps the encoders only; the cues are computed in float32.
    """

    def __init__(
        self,
        text_encoder: TextEncoder,
        autoencoder: Autoencoder | None,
        embedder: ImageEmbedder | None,
        *,
        seed: int,
        caption_dropout: float,
        appearance_scale: float,
        device: torch.device,
        autocast: Callable[[], ContextManager] = contextlib.nullcontext,
        decoupled: bool = True,
    ):
        self.text_encoder, self.autoencoder, self.embedder = text_encoder, autoencoder, embedder
        self.seed, self.caption_dropout, self.appearance_scale = seed, caption_dropout, appearance_scale
        self.device, self.autocast, self.decoupled = device, autocast, decoupled
        self._null_text: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, batch, step: int) -> TrainingInputs:
        dropped = caption_dropout_mask(self.seed, step, batch.indices, self.caption_dropout)
        pixels = None
        if batch.latents is not None:  # a latent cache, or latent-size world data (no text features)
            latents = batch.latents.to(self.device, torch.float32)
            text = self._cached_text(batch.text, dropped) if batch.text is not None else self.encode_text(batch.captions, dropped)
        else:
            pixels = batch.pixels.to(self.device, torch.float32)
            with self.autocast():
                latents = encode_latents(self.autoencoder, pixels, sample_generators(self.seed, step, batch.indices, "posterior"))
            latents = latents.float()
            text = self.encode_text(batch.captions, dropped)
        b, _, f = latents.shape[:3]
        if f == 1 or not self.decoupled:  # image steps; the plain text-to-video ablation on every step
            cues = Cues.spatial_stage(b, f, self.device)
        elif batch.motion is not None and batch.appearance is not None:  # measured when the cache was built
            cues = Cues(middle_frame(latents), batch.motion, batch.appearance)
        else:
            cues = self.measure_cues(latents, pixels)
        return TrainingInputs(latents=latents, text=text.float(), cues=cues.to(self.device), indices=list(batch.indices), dropped=dropped)

    @torch.no_grad()
    def measure_cues(self, latents: torch.Tensor, pixels: torch.Tensor | None) -> Cues:
        """:meth:`Cues.from_clip` of scaled latents ``b c f h w`` and their clips ``b 3 f H W``. Without pixels
        (latent-size world data) or without an appearance embedder, appearance does not change (ones)."""
        embeddings = None
        if pixels is not None and self.embedder is not None:
            with self.autocast():
                embeddings = self.embedder.embed(pixels)
        return Cues.from_clip(latents, embeddings, self.appearance_scale)

    def encode_text(self, captions: list[str], dropped: list[bool] | None = None) -> torch.Tensor:
        """Text features ``b L d`` (float32); dropped captions become the null text."""
        dropped = dropped or [False] * len(captions)
        texts = [NULL_TEXT if drop else caption for caption, drop in zip(captions, dropped)]
        with self.autocast():
            return self.text_encoder.encode(texts).to(self.device, torch.float32)

    def null_text(self) -> torch.Tensor:
        """Text features of the null text ``1 L d`` (encoded once)."""
        if self._null_text is None:
            self._null_text = self.encode_text([NULL_TEXT])
        return self._null_text

    def _cached_text(self, text: torch.Tensor, dropped: list[bool]) -> torch.Tensor:
        text = text.to(self.device)
        if any(dropped):
            mask = torch.tensor(dropped, device=self.device)[:, None, None]
            text = torch.where(mask, self.null_text().to(text.dtype), text)
        return text


__all__ = [
    "DEFAULT_APPEARANCE_SCALE", "TrainingInputs", "Conditioner", "keyed_seed", "sample_generator",
    "sample_generators", "step_kind", "caption_dropout_mask", "resolve_appearance_embedder", "resolve_appearance_scale",
    "encode_latents",
]
