"""From a data ``Batch`` to the UNet's training inputs: latents, text, spatial prior, motion, appearance.

Everything here is frozen (no gradients) and follows the release's recipe (higen.md §1, §2, §5) with
two fixes (§6): captions are dropped with probability ``cues.caption_dropout`` (default 0.1; the
release used 0) and replaced by the same null text that inference uses for the unconditional branch
(``""``; the release trained with a negative-prompt embedding instead).

- latents: a *sample* of the autoencoder posterior, scaled by the autoencoder's factor (0.18215);
- spatial prior: the clean latent of the middle frame, ``f // 2``;
- motion: ``higen.cues.motion_from_latents`` of the scaled latents;
- appearance: cosine similarities of per-frame image embeddings, remapped ``1 - k (1 - cos)``; with
  OpenCLIP and k = 5 this is the release's ``5 cos - 4``;
- image steps (one frame): zero prior, motion [0], appearance ones: what stage 1 sees at inference.

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

from higen.cues import appearance_from_embeddings, motion_from_latents
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


def resolve_appearance(cues: CuesSection) -> str:
    """The appearance embedder in use: ``auto`` is ``openclip`` when ``cues.open_clip`` is set, else ``histogram``."""
    if cues.appearance == "auto":
        return "openclip" if cues.open_clip else "histogram"
    return cues.appearance


def resolve_appearance_scale(cues: CuesSection) -> float:
    return cues.appearance_scale if cues.appearance_scale is not None else DEFAULT_APPEARANCE_SCALE[resolve_appearance(cues)]


@torch.no_grad()
def encode_latents(autoencoder: Autoencoder, pixels: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Pixels ``b 3 f H W`` in [-1, 1] -> scaled latents ``b c f h w``: one posterior sample per clip.

    Each clip is encoded with its own generator (the autoencoder works frame by frame anyway), so its
    sample does not depend on its batch neighbours.
    """
    return torch.cat([autoencoder.encode(pixels[i : i + 1], sample=True, generator=g) for i, g in enumerate(generators)])


def appearance_cue(embeddings: torch.Tensor, scale: float) -> torch.Tensor:
    """Per-frame image embeddings ``b f d`` -> similarity matrix ``b f f``: ``1 - scale (1 - cos)``.

    Computed in float32 outside autocast: the scale multiplies any rounding of the cosines.
    """
    with torch.autocast(embeddings.device.type, enabled=False):
        release = appearance_from_embeddings(embeddings.float())  # 5 cos - 4 = 1 - 5 (1 - cos)
    return 1.0 - (scale / 5.0) * (1.0 - release)


def image_cues(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage-1 cues for ``b c 1 h w``: (zero prior ``b c h w``, motion [0] ``b``, appearance ones ``b 1 1``)."""
    b, c, _, h, w = latents.shape
    return latents.new_zeros(b, c, h, w), latents.new_zeros(b), latents.new_ones(b, 1, 1)


def spatial_prior(latents: torch.Tensor) -> torch.Tensor:
    """The clean latent of the middle frame ``f // 2``: ``b c h w`` (higen.md §1)."""
    return latents[:, :, latents.shape[2] // 2]


# ---------------------------------------------------------------------------------- conditioner


@dataclass
class TrainingInputs:
    """One batch, ready for the loss. ``latents`` ``b c f h w`` (clean, scaled); ``text`` ``b L d``;
    ``spatial_prior`` ``b c h w``; ``motion`` ``b (f-1)`` (``b`` for one frame); ``appearance`` ``b f f``."""

    latents: torch.Tensor
    text: torch.Tensor
    spatial_prior: torch.Tensor
    motion: torch.Tensor
    appearance: torch.Tensor
    indices: list[int]
    dropped: list[bool]

    def unet_kwargs(self) -> dict[str, torch.Tensor]:
        return dict(text=self.text, spatial_prior=self.spatial_prior, motion=self.motion, appearance=self.appearance)


class Conditioner:
    """Builds :class:`TrainingInputs` from a data ``Batch`` with the frozen encoders.

    ``embedder`` None means the ``ones`` appearance choice. Cached batches (``batch.latents`` set) bring
    their latents, text features and cues; only caption dropout is applied to them here. ``autocast``
    (a context-manager factory) wraps the encoders only; the cues are computed in float32.
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
        if latents.shape[2] == 1:
            prior, motion, appearance = image_cues(latents)
        else:
            prior = spatial_prior(latents)
            motion, appearance = getattr(batch, "motion", None), getattr(batch, "appearance", None)
            if motion is None:
                motion = motion_from_latents(latents)
            if appearance is None:
                # Without pixels (latent-size world data) there is nothing to embed: static appearance.
                appearance = self.appearance(pixels) if pixels is not None else latents.new_ones(latents.shape[0], latents.shape[2], latents.shape[2])
        if not self.decoupled:  # the plain text-to-video ablation: the stage-1 inputs on every step
            b, c, f, h, w = latents.shape
            prior, motion, appearance = latents.new_zeros(b, c, h, w), latents.new_zeros(b, max(f - 1, 1)), latents.new_ones(b, f, f)
        return TrainingInputs(
            latents=latents, text=text.float(), spatial_prior=prior, motion=motion.to(self.device).float(),
            appearance=appearance.to(self.device).float(), indices=list(batch.indices), dropped=dropped,
        )

    def encode_text(self, captions: list[str], dropped: list[bool] | None = None) -> torch.Tensor:
        """Text features ``b L d`` (float32); dropped captions become the null text."""
        dropped = dropped or [False] * len(captions)
        texts = [NULL_TEXT if drop else caption for caption, drop in zip(captions, dropped)]
        with self.autocast():
            return self.text_encoder.encode(texts).to(self.device, torch.float32)

    def appearance(self, pixels: torch.Tensor) -> torch.Tensor:
        """The appearance cue ``b f f`` of clips ``b 3 f H W`` (ones without an embedder)."""
        b, _, f = pixels.shape[:3]
        if self.embedder is None:
            return torch.ones(b, f, f, device=pixels.device)
        with self.autocast():
            embeddings = self.embedder.embed(pixels)
        return appearance_cue(embeddings, self.appearance_scale)

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
    "sample_generators", "step_kind", "caption_dropout_mask", "resolve_appearance", "resolve_appearance_scale",
    "encode_latents", "appearance_cue", "image_cues", "spatial_prior",
]
