"""Test support: a whole tiny random pipeline (a generation in well under a second on CPU), its model
folder, a tiny CLIP vision tower and a random OpenCLIP state dict, over the components of ``higen.tiny``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from higen.encoders.image import CLIPImageEmbedder
from higen.encoders.text import MiniLMTextEncoder, TextEncoder
from higen.pipeline.pipeline import HiGenPipeline
from higen.pipeline.settings import GenerationSettings
from higen.tiny import TINY_AUTOENCODER, seeded, tiny_autoencoder, tiny_clip_tokenizer, tiny_text_encoder, tiny_unet

# Generation defaults of the tiny pipeline: 4 frames of 32 x 32 pixels, 3 steps per stage.
TINY_DEFAULTS = dict(frames=4, height=32, width=32, spatial_steps=3, temporal_steps=3, decode_chunk_size=4)


def tiny_image_embedder(seed: int = 0, image_size: int = 32, dim: int = 16) -> CLIPImageEmbedder:
    """A random 2-block CLIP vision tower (patch 8) projecting to ``dim``."""
    from transformers import CLIPVisionConfig

    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, projection_dim=dim, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=8, hidden_act="gelu",
    )
    with seeded(seed):
        return CLIPImageEmbedder.from_config(config)


def tiny_pipeline(seed: int = 0, *, text_encoder: str = "clip", unet: dict | None = None, **defaults) -> HiGenPipeline:
    """A tiny random :class:`HiGenPipeline`.

    ``defaults`` override :data:`TINY_DEFAULTS` and the other :class:`GenerationSettings`;
    ``unet`` overrides :func:`tiny_unet_config`; ``text_encoder`` is ``"clip"`` (tiny random, 16-d) or
    ``"minilm"`` (the real offline MiniLM, 384-d; the UNet's ``text_dim`` follows it).
    """
    if text_encoder not in ("clip", "minilm"):
        raise ValueError(f"text_encoder must be 'clip' or 'minilm', got {text_encoder!r}")
    encoder: TextEncoder = tiny_text_encoder(seed) if text_encoder == "clip" else MiniLMTextEncoder()
    return HiGenPipeline(
        tiny_unet(seed, **{"text_dim": encoder.dim, **(unet or {})}),
        encoder,
        tiny_autoencoder(seed),
        defaults=GenerationSettings(**{**TINY_DEFAULTS, **defaults}),
    )


def save_tiny_model(folder: str | os.PathLike, seed: int = 0, **kwargs) -> Path:
    """Write :func:`tiny_pipeline` as a model folder (usable by ``higen generate --model``); returns it."""
    tiny_pipeline(seed, **kwargs).save_pretrained(folder)
    return Path(folder)


def tiny_open_clip_state_dict(
    seed: int = 0, width: int = 64, layers: int = 2, context_length: int = 77, embed_dim: int = 32,
    vision_width: int = 64, vision_layers: int = 2, image_size: int = 32, patch_size: int = 8,
) -> dict[str, torch.Tensor]:
    """A random state dict in OpenCLIP's layout (text tower at the top level, ``visual.*``, ``logit_scale``).

    The text vocabulary is the tiny tokenizer's, so :func:`tiny_clip_tokenizer` goes with it.
    Weights have unit-scale LayerNorm gains and small random values elsewhere.
    """
    vocab = len(tiny_clip_tokenizer())
    grid = image_size // patch_size
    shapes = {
        "token_embedding.weight": (vocab, width), "positional_embedding": (context_length, width),
        "ln_final.weight": (width,), "ln_final.bias": (width,), "text_projection": (width, embed_dim), "logit_scale": (),
        "visual.conv1.weight": (vision_width, 3, patch_size, patch_size), "visual.class_embedding": (vision_width,),
        "visual.positional_embedding": (grid * grid + 1, vision_width), "visual.ln_pre.weight": (vision_width,),
        "visual.ln_pre.bias": (vision_width,), "visual.ln_post.weight": (vision_width,), "visual.ln_post.bias": (vision_width,),
        "visual.proj": (vision_width, embed_dim),
    }
    from higen.encoders.open_clip import tower_shapes

    shapes.update(tower_shapes(width, 4 * width, layers))
    shapes.update({f"visual.{k}": v for k, v in tower_shapes(vision_width, 4 * vision_width, vision_layers).items()})
    generator = torch.Generator().manual_seed(seed)
    state = {k: 0.1 * torch.randn(shape, generator=generator) for k, shape in shapes.items()}
    for k in state:
        if k.endswith(("ln_1.weight", "ln_2.weight", "ln_final.weight", "ln_pre.weight", "ln_post.weight")):
            state[k] += 1.0
    return state


__all__ = ["TINY_DEFAULTS", "tiny_image_embedder", "tiny_pipeline", "save_tiny_model", "tiny_open_clip_state_dict", "save_tiny_open_clip"]


def save_tiny_open_clip(folder: str | os.PathLike, seed: int = 3) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """A tiny OpenCLIP file (text 128 wide: 2 heads of 64; vision 64 wide: 1 head; 32 px, patch 8) and a
    tokenizer folder for it, in ``folder``: (checkpoint path, tokenizer folder, state dict)."""
    folder = Path(folder)
    state = tiny_open_clip_state_dict(seed=seed, width=128, layers=2)
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    tiny_clip_tokenizer().save_pretrained(str(folder / "tokenizer"))
    return folder / "open_clip_pytorch_model.bin", folder / "tokenizer", state


def random_fid_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the names and shapes of the FID Inception weights file, random but well scaled:
    He-initialised convolutions and BatchNorm statistics near the identity, so the features neither vanish
    nor blow up through the network's ~50 layers."""
    from higen.evaluation.inception import FIDInception

    generator = torch.Generator().manual_seed(seed)
    state = FIDInception().state_dict()
    for name, tensor in state.items():
        if name.endswith("conv.weight"):
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2 / tensor[0].numel()) ** 0.5)
        elif name.endswith("bn.weight") or name.endswith("bn.running_var"):
            tensor.copy_(1 + 0.1 * torch.rand(tensor.shape, generator=generator))
        elif name.endswith("bn.bias") or name.endswith("bn.running_mean"):
            tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
        elif tensor.is_floating_point():  # fc
            tensor.copy_(0.01 * torch.randn(tensor.shape, generator=generator))
    return state


def save_random_fid_inception(path: str | os.PathLike, seed: int = 0) -> tuple[Path, str]:
    """:func:`random_fid_inception_state_dict` saved as a ``.pth`` file (legacy serialisation, as old
    ``torch.save`` files are); returns the path and its sha256, to load it with ``expected_sha256``."""
    from higen.evaluation.i3d import sha256

    path = Path(path)
    torch.save(random_fid_inception_state_dict(seed), path, _use_new_zipfile_serialization=False)
    return path, sha256(path)
