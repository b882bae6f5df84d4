"""Per-frame image embeddings for the training appearance cue (higen.md §2, dossier §3.3).

The release measures appearance change with OpenCLIP ViT-H-14's visual tower: every frame is centre
square-cropped, resized to 224 with nearest-neighbour interpolation (``F.interpolate``'s default, which
the reference uses), normalised with CLIP's mean and std, embedded, projected and L2-normalised.
:func:`higen.cues.appearance_from_embeddings` then turns the ``b f d`` embeddings into ``5 cos - 4``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from higen.encoders import hf, open_clip
from higen.io.checkpoint import CheckpointError, check_state_dict, load_checkpoint_file

# CLIP's image normalisation (OpenAI CLIP and OpenCLIP alike).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# OpenCLIP's big visual towers use wider heads than 64; the head count is not in the tensors' shapes,
# so it is looked up by width (ViT-H-14: 1280 = 16 x 80, ViT-g-14: 16 x 88, ViT-bigG-14: 16 x 104).
OPEN_CLIP_VISION_HEAD_WIDTH = {1280: 80, 1408: 88, 1664: 104}


class CLIPImageEmbedder(nn.Module):
    """Frames -> L2-normalised projected CLIP image embeddings ``b f d`` (``d`` = 1024 for ViT-H-14)."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval().requires_grad_(False)  # transformers CLIPVisionModelWithProjection
        self.image_size = int(model.config.image_size)
        self.dim = int(model.config.projection_dim)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Images ``n 3 H W`` in [-1, 1] -> ``n 3 S S`` CLIP inputs (centre square, nearest resize, CLIP norm)."""
        h, w = frames.shape[-2:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2  # 256 x 448 -> columns 96..351, as the reference
        square = (frames[..., top : top + side, left : left + side].float() + 1) / 2
        square = F.interpolate(square, size=(self.image_size, self.image_size), mode="nearest")
        return (square - self.mean) / self.std

    @torch.no_grad()
    def embed(self, video: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
        """Video ``b 3 f H W`` in [-1, 1] -> unit-length embeddings ``b f d`` (float32)."""
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be b 3 f h w; got shape {tuple(video.shape)}")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        b = video.shape[0]
        frames = rearrange(video, "b c f h w -> (b f) c h w")
        embeds = torch.cat([self.embed_pixels(self.preprocess(chunk)) for chunk in frames.split(int(chunk_size))])
        return rearrange(embeds, "(b f) d -> b f d", b=b)

    @torch.no_grad()
    def embed_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Preprocessed CLIP inputs ``n 3 S S`` -> unit-length projected embeddings ``n d`` (float32)."""
        dtype = next(self.model.parameters()).dtype
        return F.normalize(self.model(pixel_values=pixel_values.to(dtype)).image_embeds.float(), dim=-1)

    # ---------------------------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """transformers' layout: ``config.json`` + ``model.safetensors``."""
        from higen.io.folders import staged_directory

        with staged_directory(directory) as tmp, hf.quiet():
            self.model.save_pretrained(str(tmp))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "CLIPImageEmbedder":
        from transformers import CLIPVisionModelWithProjection

        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"{directory} is not an image embedder folder (no config.json)")
        with hf.quiet():
            model, info = CLIPVisionModelWithProjection.from_pretrained(str(directory), local_files_only=True, output_loading_info=True)
        hf.check_loading_info(info, directory)
        return cls(model)

    @classmethod
    def from_config(cls, config) -> "CLIPImageEmbedder":
        """A randomly initialised embedder (tests) from a transformers ``CLIPVisionConfig``."""
        from transformers import CLIPVisionModelWithProjection

        return cls(CLIPVisionModelWithProjection(config))

    @classmethod
    def from_open_clip_checkpoint(cls, path: str | os.PathLike, heads: int | None = None) -> "CLIPImageEmbedder":
        """The visual tower (``visual.*``) of an OpenCLIP checkpoint, e.g. the release's ViT-H-14 file.

        Sizes are read from the tensors; ``heads`` defaults to OpenCLIP's head width for the tower's
        width (80 for ViT-H-14, else 64). Strict: a missing, unexpected or wrong-shape ``visual.*`` key
        raises :class:`CheckpointError` naming it.
        """
        return cls.from_open_clip_state_dict(load_checkpoint_file(path), str(path), heads)

    @classmethod
    def from_open_clip_state_dict(cls, state: dict, source: str, heads: int | None = None,
                                  hidden_act: str = "gelu") -> "CLIPImageEmbedder":
        """:meth:`from_open_clip_checkpoint` for a state dict already read (``source`` names it in errors);
        ``hidden_act="quick_gelu"`` for towers trained with OpenAI's QuickGELU (not visible in the tensors)."""
        from transformers import CLIPVisionModelWithProjection

        state = open_clip.visual_tower(state)
        config = _vision_config_from_open_clip(state, source, heads, hidden_act)
        check_state_dict(_open_clip_visual_shapes(config), state, source=f"{source} (OpenCLIP visual tower, keys without 'visual.')")
        model = CLIPVisionModelWithProjection(config)
        model.load_state_dict(_open_clip_visual_to_hf(state, config.num_hidden_layers), strict=True)
        return cls(model)


def _vision_config_from_open_clip(state: dict, source: str, heads: int | None, hidden_act: str = "gelu"):
    from transformers import CLIPVisionConfig

    width, _, patch, _ = open_clip.require(state, "conv1.weight", source, "visual").shape
    positions = open_clip.require(state, "positional_embedding", source, "visual").shape[0]
    projection = open_clip.require(state, "proj", source, "visual").shape[-1]
    hidden = open_clip.require(state, "transformer.resblocks.0.mlp.c_fc.weight", source, "visual").shape[0]
    grid = round((positions - 1) ** 0.5)
    if grid * grid != positions - 1:
        raise CheckpointError(f"{source}: {positions} visual positions are not a square patch grid plus the class token")
    heads = heads or width // OPEN_CLIP_VISION_HEAD_WIDTH.get(width, 64)
    if width % heads:
        raise CheckpointError(f"{source}: visual width {width} is not divisible by {heads} heads")
    return CLIPVisionConfig(
        hidden_size=width, intermediate_size=hidden, projection_dim=projection, num_hidden_layers=open_clip.count_blocks(state),
        num_attention_heads=heads, image_size=grid * patch, patch_size=patch, hidden_act=hidden_act, layer_norm_eps=1e-5,
    )


def _open_clip_visual_shapes(config) -> dict[str, tuple[int, ...]]:
    width, p = config.hidden_size, config.patch_size
    shapes = open_clip.tower_shapes(width, config.intermediate_size, config.num_hidden_layers)
    shapes.update({
        "conv1.weight": (width, 3, p, p), "class_embedding": (width,),
        "positional_embedding": ((config.image_size // p) ** 2 + 1, width),
        "ln_pre.weight": (width,), "ln_pre.bias": (width,), "ln_post.weight": (width,), "ln_post.bias": (width,),
        "proj": (width, config.projection_dim),
    })
    return shapes


def _open_clip_visual_to_hf(state: dict, layers: int) -> dict[str, torch.Tensor]:
    out = open_clip.blocks_to_hf(state, layers, "vision_model.encoder.layers.")
    out.update({
        "vision_model.embeddings.patch_embedding.weight": state["conv1.weight"],
        "vision_model.embeddings.class_embedding": state["class_embedding"],
        "vision_model.embeddings.position_embedding.weight": state["positional_embedding"],
        "vision_model.pre_layrnorm.weight": state["ln_pre.weight"],  # sic: transformers' spelling
        "vision_model.pre_layrnorm.bias": state["ln_pre.bias"],
        "vision_model.post_layernorm.weight": state["ln_post.weight"],
        "vision_model.post_layernorm.bias": state["ln_post.bias"],
        "visual_projection.weight": state["proj"].t(),  # OpenCLIP: x @ P; Linear: x @ W.T
    })
    return out


__all__ = ["CLIPImageEmbedder", "CLIP_MEAN", "CLIP_STD"]
