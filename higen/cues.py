"""HiGen's cues besides the text: the spatial prior, motion and appearance (higen.md §1, §2).

:class:`Cues` holds the three for one batch, built in one of three ways: the spatial stage's (no prior,
no motion, unchanging appearance), from the user's motion and appearance *controls* (two floats), or
measured from a training clip. Layouts: latents ``b c f h w``; spatial prior ``b c h w``; motion
``b (f-1)`` (one value per sample for one frame); the appearance *cue* ``b f W``, where ``W`` is the
model's appearance width (32 for the released model), or a measured ``b f f`` similarity matrix whose
rows the UNet resamples to ``W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Cues:
    """The UNet's inputs besides the noisy latents, the timestep and the text, for one batch.

    ``spatial_prior``: the prior latent ``b c h w``, or None for the spatial stage (the UNet reads zeros);
    ``motion``: ``b (f-1)`` (``b 1`` for one frame); ``appearance``: ``b f W`` or ``b f f``.
    """

    spatial_prior: torch.Tensor | None
    motion: torch.Tensor
    appearance: torch.Tensor

    @classmethod
    def spatial_stage(cls, batch: int, frames: int = 1, device=None) -> "Cues":
        """Zero prior, zero motion, appearance ones: what the spatial stage (one frame) sees in training and
        at inference. With ``frames`` > 1 the same for every frame: what the UNet assumes for a cue it is not
        given, and all that a model trained without HiGen's decoupling ever sees. The appearance is the
        all-ones ``b f f`` matrix (every frame looks like every other), which fits any appearance width."""
        return cls(
            spatial_prior=None,
            motion=torch.zeros(batch, max(frames - 1, 1), device=device),
            appearance=torch.ones(batch, frames, frames, device=device),
        )

    @classmethod
    def from_controls(
        cls, motion: float, appearance: float, batch: int, frames: int, width: int, spatial_prior: torch.Tensor | None = None, device=None
    ) -> "Cues":
        """The temporal stage's cues from the user's motion and appearance controls (higen.md §2).

        ``motion`` is given to every frame pair; ``appearance`` is the factor of :func:`appearance_template`
        over the model's appearance ``width``. One frame has no motion: the spatial stage's zero.
        """
        moves = motion_constant(motion, batch, frames, device) if frames > 1 else torch.zeros(batch, 1, device=device)
        return cls(spatial_prior, moves, appearance_template(appearance, frames, width, batch, device))

    @classmethod
    def from_clip(cls, latents: torch.Tensor, frame_embeddings: torch.Tensor | None = None, appearance_scale: float = 5.0) -> "Cues":
        """Cues measured from a training clip's scaled latents ``b c f h w`` (higen.md §1, §2).

        The prior is the clean latent of the middle frame ``f // 2``; motion is :func:`motion_from_latents`;
        appearance the similarity of the per-frame image embeddings ``b f d`` (:func:`appearance_from_embeddings`
        with ``appearance_scale``), or ones without embeddings. A one-frame clip (an image) gets the spatial
        stage's cues.
        """
        b, _, f = latents.shape[:3]
        if f == 1:
            return cls.spatial_stage(b, device=latents.device)
        if frame_embeddings is None:
            appearance = torch.ones(b, f, f, device=latents.device)
        else:
            appearance = appearance_from_embeddings(frame_embeddings, appearance_scale)
        return cls(middle_frame(latents), motion_from_latents(latents).float(), appearance)

    def to(self, device) -> "Cues":
        """On ``device``, motion and appearance in float32 (the UNet casts every input to its own dtype)."""
        prior = None if self.spatial_prior is None else self.spatial_prior.to(device)
        return Cues(prior, self.motion.to(device, torch.float32), self.appearance.to(device, torch.float32))

    def unet_kwargs(self) -> dict[str, torch.Tensor | None]:
        """The UNet's keyword arguments ``spatial_prior``, ``motion``, ``appearance``."""
        return dict(spatial_prior=self.spatial_prior, motion=self.motion, appearance=self.appearance)


def middle_frame(latents: torch.Tensor) -> torch.Tensor:
    """The spatial prior of a clip: the clean latent of its middle frame ``f // 2``, ``b c h w`` (higen.md §1)."""
    return latents[:, :, latents.shape[2] // 2]


def motion_from_latents(latents: torch.Tensor) -> torch.Tensor:
    """Training motion cue: ``floor(10 * ||z[:, :, i+1] - z[:, :, i]||_2)`` per adjacent frame pair.

    ``latents`` are the *scaled* autoencoder latents ``b c f h w``; the norm runs over (c, h, w).
    Returns int64 ``b (f-1)``. (The reference takes a Frobenius norm over (h, w), then an L2 norm
    over channels, which is the same number.)
    """
    diff = latents[:, :, 1:] - latents[:, :, :-1]
    norm = diff.float().pow(2).sum(dim=(1, 3, 4)).sqrt()
    return torch.floor(10.0 * norm).long()


def motion_constant(value: float, batch: int, frames: int, device=None) -> torch.Tensor:
    """Inference motion cue: the same value for every adjacent pair, ``b (f-1)``; ``b 1`` for one frame."""
    pairs = max(frames - 1, 1)
    return torch.full((batch, pairs), float(value), device=device)


def appearance_template(factor: float, frames: int, width: int, batch: int = 1, device=None) -> torch.Tensor:
    """Inference appearance cue ``b f W``: linear decay of similarity with distance in time.

    Frame ``i`` sits at normalised time ``u_i = i / (f - 1)`` and the model's ``W`` appearance inputs
    at ``v_k = k / (W - 1)``; the cue is ``1 - factor * |u_i - v_k|``. When ``f == W`` this is the
    release's template ``A[i, j] = 1 - a |i - j| / (f - 1)`` exactly; for other frame counts it is the
    same continuous template sampled at the frames' times (our extension beyond 32 frames).
    ``factor`` 0 means "appearance does not change". One frame gives ones (the spatial stage).
    """
    if frames == 1:
        return torch.ones(batch, 1, width, device=device)
    u = torch.linspace(0.0, 1.0, frames, device=device, dtype=torch.float64)
    v = torch.linspace(0.0, 1.0, width, device=device, dtype=torch.float64) if width > 1 else torch.zeros(1, device=device, dtype=torch.float64)
    template = 1.0 - factor * (u[:, None] - v[None, :]).abs()
    return template.float().expand(batch, frames, width).clone()


def resample_appearance(matrix: torch.Tensor, width: int) -> torch.Tensor:
    """Map a measured ``b f f`` similarity matrix to the model's ``b f W`` input.

    Row ``i`` (frame ``i``'s similarity to every frame) is resampled over normalised time to ``W``
    points by linear interpolation with aligned end points, so the first and last frame keep their
    meaning. Identity when ``f == W``; a 1 x 1 matrix becomes a constant row.
    """
    b, f, n = matrix.shape
    if n == width:
        return matrix
    rows = matrix.reshape(b * f, 1, n).float()
    if n == 1:
        out = rows.expand(b * f, 1, width)
    else:
        out = F.interpolate(rows, size=width, mode="linear", align_corners=True)
    return out.reshape(b, f, width).to(matrix.dtype)


def appearance_from_embeddings(embeddings: torch.Tensor, scale: float = 5.0) -> torch.Tensor:
    """Training appearance cue from per-frame image embeddings ``b f d``: ``1 - scale (1 - cos)``, ``b f f``.

    ``scale`` 5 is the release's ``5 cos - 4`` for OpenCLIP embeddings (higen.md §2): cosine 1 maps to 1 and
    cosine 0.8 to 0. Computed in float32 outside autocast: the scale multiplies any rounding of the cosines.
    """
    with torch.autocast(embeddings.device.type, enabled=False):
        e = F.normalize(embeddings.float(), dim=-1)
        return 1.0 - scale * (1.0 - torch.bmm(e, e.transpose(1, 2)))
