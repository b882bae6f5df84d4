"""CLIPSIM: how well generated videos match their captions, by CLIP (Wu et al., GODIVA 2021).

A video's CLIPSIM is the cosine between CLIP's embedding of its caption and of each frame, averaged over
its frames; a folder's is the mean over its videos. It is reported as the raw cosine (as ModelScopeT2V,
VideoLDM and HiGen report it, about 0.3 for good models), not as CLIPScore's ``2.5 max(cos, 0)``, and
always with the CLIP model named: values of different CLIP models are not comparable.

The CLIP model is any OpenCLIP checkpoint given as a local file (``open_clip_pytorch_model.bin``:
ViT-B-32 is the papers' convention, the HiGen release's ViT-H-14 works too), read without the
``open_clip`` package: the text tower through :class:`~higen.encoders.text.CLIPTextEncoder`, the visual
tower through :class:`~higen.encoders.image.CLIPImageEmbedder`, their sizes read from the tensors.

- Text: OpenCLIP's tokenisation (77 tokens), the whole causal transformer, ``ln_final``, the features
  at the end-of-text token, ``text_projection``.
- Frames: OpenCLIP's evaluation transform: bicubic resize of the short side to the image size (PIL, as
  torchvision's ``Resize`` on PIL images), centre crop, CLIP's mean and std; then the visual tower, the
  class token through ``ln_post`` and ``proj``.
- Both embeddings are L2-normalised, so their dot product is the cosine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch

from higen.encoders.image import CLIP_MEAN, CLIP_STD, CLIPImageEmbedder
from higen.encoders.text import CLIPTextEncoder
from higen.evaluation.captions import read_captions, video_name
from higen.evaluation.videos import list_videos
from higen.io.video import iter_frames

# OpenCLIP's model families by visual width, to name a checkpoint in reports (ViT-B-32, ViT-H-14, ...).
VIT_FAMILIES = {768: "B", 1024: "L", 1280: "H", 1408: "g", 1664: "bigG"}


def clip_preprocess(frame: np.ndarray, size: int) -> torch.Tensor:
    """One uint8 ``h w 3`` frame -> the CLIP input ``3 size size`` (OpenCLIP's evaluation transform)."""
    from PIL import Image

    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame must be uint8 (height, width, 3); got {frame.dtype} {frame.shape}")
    image = Image.fromarray(frame)
    w, h = image.size
    long = int(size * max(w, h) / min(w, h))  # torchvision's Resize(int): short side to size, long side truncated
    resized = image.resize((size, long) if w <= h else (long, size), Image.BICUBIC)
    left, top = int(round((resized.width - size) / 2.0)), int(round((resized.height - size) / 2.0))
    square = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
    pixels = torch.from_numpy(square).permute(2, 0, 1)
    return (pixels - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


class CLIPSimilarity:
    """A CLIP model's two towers, scoring videos against captions."""

    def __init__(self, text: CLIPTextEncoder, image: CLIPImageEmbedder, name: str, checkpoint: dict | None = None):
        if text.model.config.projection_dim != image.dim:
            raise ValueError(f"the text and image towers embed to {text.model.config.projection_dim} and {image.dim} dimensions")
        self.text, self.image, self.name = text, image, name
        self.checkpoint = checkpoint or {}  # where the weights came from, for reports: path and sha256

    @classmethod
    def from_open_clip_checkpoint(cls, path: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                                  quick_gelu: bool = False, device: str | torch.device = "cpu") -> "CLIPSimilarity":
        """Both towers of an OpenCLIP file; ``quick_gelu`` for OpenAI-trained weights (see docs/metrics.md)."""
        from higen.evaluation.i3d import sha256
        from higen.io.checkpoint import load_checkpoint_file

        state, act = load_checkpoint_file(path), "quick_gelu" if quick_gelu else "gelu"
        text = CLIPTextEncoder.from_open_clip_state_dict(state, str(path), tokenizer, hidden_act=act)
        image = CLIPImageEmbedder.from_open_clip_state_dict(state, str(path), hidden_act=act)
        config = image.model.config
        name = f"ViT-{VIT_FAMILIES.get(config.hidden_size, f'{config.hidden_size}w')}-{config.patch_size}"
        source = {"checkpoint": str(path), "checkpoint_sha256": sha256(path)}
        return cls(text.to(device), image.to(device), name + ("-quickgelu" if quick_gelu else ""), source)

    def caption_embeddings(self, captions: list[str]) -> torch.Tensor:
        """Unit-length caption embeddings ``n d`` (float32)."""
        return self.text.embed(captions)

    def frame_embeddings(self, frames: Iterable[np.ndarray], batch_size: int = 32) -> torch.Tensor:
        """Unit-length embeddings ``f d`` (float32) of uint8 ``h w 3`` frames."""
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1; got {batch_size}")
        device, out, batch = self.image.mean.device, [], []
        for frame in frames:
            batch.append(clip_preprocess(frame, self.image.image_size))
            if len(batch) == batch_size:
                out.append(self.image.embed_pixels(torch.stack(batch).to(device)).cpu())
                batch = []
        if batch:
            out.append(self.image.embed_pixels(torch.stack(batch).to(device)).cpu())
        if not out:
            raise ValueError("no frames to embed")
        return torch.cat(out)

    def per_frame(self, frames: Iterable[np.ndarray], caption: str, batch_size: int = 32) -> np.ndarray:
        """The cosine between the caption and each frame: ``(f,)`` float64."""
        cosines = self.frame_embeddings(frames, batch_size) @ self.caption_embeddings([caption]).cpu()[0]
        return cosines.double().numpy()

    def clipsim(self, frames: Iterable[np.ndarray], caption: str, batch_size: int = 32) -> float:
        """One video's CLIPSIM: the mean over its frames of the caption-frame cosine."""
        return float(self.per_frame(frames, caption, batch_size).mean())


def captioned_videos(folder: str | os.PathLike, captions: Mapping[str, str]) -> list[tuple[Path, str]]:
    """Each video of ``folder`` with its caption; a video without one is an error (before anything is computed)."""
    videos = list_videos(folder)
    missing = [video_name(p) for p in videos if video_name(p) not in captions]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} videos of {folder} have no caption in the captions file: {shown}")
    return [(p, captions[video_name(p)]) for p in videos]


def evaluate_clipsim(folder: str | os.PathLike, captions: str | os.PathLike | Mapping[str, str], scorer: CLIPSimilarity,
                     batch_size: int = 32, progress: bool = False) -> dict:
    """CLIPSIM of every video in ``folder`` (all frames) against its caption (a captions file or ``{name: caption}``)."""
    from tqdm.auto import tqdm

    if not isinstance(captions, Mapping):
        captions = read_captions(captions)
    videos = {}
    for path, caption in tqdm(captioned_videos(folder, captions), desc="CLIPSIM", unit="video", disable=not progress):
        cosines = scorer.per_frame(iter_frames(path), caption, batch_size)
        videos[path.name] = {"caption": caption, "clipsim": float(cosines.mean()), "frames": len(cosines)}
    return {
        "metric": "clipsim", "model": scorer.name, **scorer.checkpoint, "folder": str(folder), "n": len(videos),
        "clipsim": float(np.mean([v["clipsim"] for v in videos.values()])), "videos": videos,
    }
