"""HiGen's two content cues: motion and appearance (higen.md §2).

Both cues are per-frame conditioning that the UNet adds to its timestep embedding.
This module builds them, for training (measured from a clip) and for inference (from the user's
``motion`` and ``appearance`` controls). Layouts: latents ``b c f h w``; motion ``b (f-1)``;
appearance ``b f W`` where ``W`` is the model's appearance width (32 for the released model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
    """Inference motion cue: the same value for every adjacent pair, ``b (f-1)``; ``b`` zeros-like [v] for f = 1.

    With one frame (the spatial stage) the reference passes a single value per sample.
    """
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


def appearance_from_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
    """Training appearance cue from per-frame image embeddings ``b f d``: ``5 cos - 4`` (higen.md §2).

    Cosine 1 maps to 1 and cosine 0.8 maps to 0.
    """
    e = F.normalize(embeddings.float(), dim=-1)
    return 5.0 * torch.bmm(e, e.transpose(1, 2)) - 4.0
