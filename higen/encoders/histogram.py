"""A weight-free per-frame image embedding for the appearance cue: a soft RGB colour histogram.

The release measures appearance with OpenCLIP ViT-H-14 image embeddings (higen.md §2). A model trained
without those weights still needs a cue that says "how much does this frame look like that one". This
embedder is that cue, with no learned weights:

- each pixel votes into an ``n x n x n`` grid of RGB bins with trilinear weights (a pixel between two
  bin centres splits its vote between them, so the embedding changes smoothly with colour);
- the histogram is normalised to sum 1 and square-rooted (the Hellinger embedding): the dot product of
  two such vectors is the Bhattacharyya coefficient of the two colour distributions, in [0, 1], and
  the vectors have unit L2 norm.

It ignores where things are (a moving object keeps its histogram; that is the motion cue's job) and is
sensitive to colour changes and to size changes (the share of the object's colour in the frame).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

# Frames are area-averaged to at most this many pixels first: the histogram of a 128 x 128 version of
# a frame is nearly the same and the cost (pixels x bins^2) stays small for 448 x 256 clips.
MAX_PIXELS = 128 * 128


class HistogramEmbedder(nn.Module):
    """``embed(video b 3 f H W in [-1, 1]) -> b f bins**3``: square-rooted soft colour histograms, L2-normalised.

    Same interface as :class:`higen.encoders.image.CLIPImageEmbedder`, so the trainer can use either.
    """

    def __init__(self, bins: int = 8, max_pixels: int = MAX_PIXELS, frame_chunk: int = 8):
        super().__init__()
        if bins < 2:
            raise ValueError(f"a colour histogram needs at least 2 bins per channel; got {bins}")
        self.bins, self.max_pixels, self.frame_chunk = bins, max_pixels, frame_chunk

    @property
    def dim(self) -> int:
        return self.bins**3

    def identity(self) -> dict:
        """What determines the output (for cache fingerprints): no weights, only these settings."""
        return {"type": "histogram", "bins": self.bins, "max_pixels": self.max_pixels}

    @torch.no_grad()
    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Video ``b 3 f H W`` in [-1, 1] -> per-frame embeddings ``b f bins^3`` (unit L2 norm)."""
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be b 3 f H W; got {tuple(video.shape)}")
        b = video.shape[0]
        frames = rearrange(video.float(), "b c f h w -> (b f) c h w")
        # Sums over ~16k pixels need float32: under a bf16 autocast they would keep 3 significant digits.
        with torch.autocast(video.device.type, enabled=False):
            out = torch.cat([self._embed_frames(chunk) for chunk in frames.split(self.frame_chunk)])
        return rearrange(out, "(b f) d -> b f d", b=b)

    def _embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``n 3 H W`` in [-1, 1] -> ``n bins^3``."""
        h, w = frames.shape[-2:]
        if h * w > self.max_pixels:
            scale = math.sqrt(self.max_pixels / (h * w))
            frames = F.interpolate(frames, size=(max(1, int(h * scale)), max(1, int(w * scale))), mode="area")
        weights = self._bin_weights(frames)  # n 3 P bins
        r, g, b = weights.unbind(1)
        # Outer product of the three per-channel weights, summed over pixels: the trilinear histogram.
        rg = torch.einsum("npi,npj->npij", r, g).flatten(2)  # n P bins^2
        hist = torch.einsum("npk,npb->nkb", rg, b).flatten(1)  # n bins^3
        hist = hist / hist.sum(dim=1, keepdim=True)
        return F.normalize(hist.sqrt(), dim=1)

    def _bin_weights(self, frames: torch.Tensor) -> torch.Tensor:
        """Per channel, each pixel's linear-interpolation weights over the bin centres: ``n 3 P bins``.

        Bin ``k`` is centred at ``(k + 0.5) / bins`` on the [0, 1] scale; values outside the first and
        last centre go wholly to that bin. The weights of a pixel sum to 1 per channel.
        """
        n = self.bins
        x = ((frames.clamp(-1, 1) + 1) * 0.5 * n - 0.5).clamp(0, n - 1)  # position in bin units
        x = rearrange(x, "n c h w -> n c (h w) 1")
        centres = torch.arange(n, device=frames.device, dtype=frames.dtype)
        return (1 - (x - centres).abs()).clamp(min=0)


__all__ = ["HistogramEmbedder", "MAX_PIXELS"]
