"""Tiny random HiGen components for tests and benchmarks: a whole generation runs in well under a second on CPU.

Everything is built from a seed without touching the global RNG, so the same seed gives the same
weights. Nothing here is trained; outputs are noise-like but exercise every code path of the real model
(two stages, guidance, cues, the autoencoder, the CLIP text path with a real BPE tokenizer).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch

from higen.encoders.autoencoder import VideoAutoencoder
from higen.encoders.image import CLIPImageEmbedder
from higen.encoders.text import CLIPTextEncoder, MiniLMTextEncoder, TextEncoder
from higen.models.config import UNetConfig, tiny_unet_config
from higen.models.unet import HiGenUNet
from higen.pipeline.pipeline import GenerationDefaults, HiGenPipeline

# A few words, each merged letter by letter into one token; everything else falls back to byte tokens.
TINY_WORDS = ("a", "the", "red", "green", "blue", "ball", "square", "moves", "left", "right", "on", "cat")
# Generation defaults of the tiny pipeline: 4 frames of 32 x 32 pixels, 3 steps per stage.
TINY_DEFAULTS = dict(frames=4, height=32, width=32, spatial_steps=3, temporal_steps=3, decode_chunk_size=4)
# Two levels of 32 channels (2x down), one ResBlock per level, the mid-block attention kept.
TINY_AUTOENCODER = dict(
    down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    block_out_channels=[32, 32], layers_per_block=1, latent_channels=4, norm_num_groups=32, sample_size=32,
)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG inside the block and restore it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_merges(words=TINY_WORDS) -> list[tuple[str, str]]:
    """BPE merges that build each word left to right, the last merge adding the end-of-word marker."""
    merges: list[tuple[str, str]] = []
    for word in words:
        prefix = word[0]
        for i, char in enumerate(word[1:], 2):
            merge = (prefix, char + ("</w>" if i == len(word) else ""))
            if merge not in merges:
                merges.append(merge)
            prefix += char
    return merges


def tiny_clip_tokenizer():
    """A ``CLIPTokenizer`` with OpenCLIP's vocabulary construction over :func:`tiny_merges` (547 tokens)."""
    from higen.encoders.open_clip import vocabulary
    from transformers import CLIPTokenizer

    merges = tiny_merges()
    return CLIPTokenizer(vocab=vocabulary(merges), merges=merges)


def tiny_text_encoder(seed: int = 0, dim: int = 16, max_length: int = 77) -> CLIPTextEncoder:
    """A random 2-block CLIP text encoder of width ``dim`` (2 heads) with the tiny tokenizer."""
    from transformers import CLIPTextConfig

    tokenizer = tiny_clip_tokenizer()
    vocab = len(tokenizer)
    config = CLIPTextConfig(
        vocab_size=vocab, hidden_size=dim, intermediate_size=2 * dim, projection_dim=dim, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=max_length, hidden_act="gelu",
        pad_token_id=0, bos_token_id=vocab - 2, eos_token_id=vocab - 1,
    )
    with seeded(seed):
        return CLIPTextEncoder.from_config(config, tokenizer)


def tiny_autoencoder(seed: int = 0, **overrides) -> VideoAutoencoder:
    """A random 2x-down ``AutoencoderKL`` (:data:`TINY_AUTOENCODER`, scaling 0.18215 as SD 2.1)."""
    with seeded(seed):
        return VideoAutoencoder.from_config(**{**TINY_AUTOENCODER, **overrides})


def tiny_image_embedder(seed: int = 0, image_size: int = 32, dim: int = 16) -> CLIPImageEmbedder:
    """A random 2-block CLIP vision tower (patch 8) projecting to ``dim``."""
    from transformers import CLIPVisionConfig

    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, projection_dim=dim, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=8, hidden_act="gelu",
    )
    with seeded(seed):
        return CLIPImageEmbedder.from_config(config)


def tiny_unet(seed: int = 0, **overrides) -> HiGenUNet:
    """:func:`higen.models.config.tiny_unet_config` with random weights, including the zero-initialised
    branches (a freshly initialised HiGen ignores its spatial prior and cues; tests must not)."""
    config: UNetConfig = tiny_unet_config(**overrides)
    with seeded(seed):
        unet = HiGenUNet(config)
        for p in unet.parameters():
            if not p.detach().any():
                p.data.normal_(0.0, 0.05)
    return unet.eval()


def tiny_pipeline(seed: int = 0, *, text_encoder: str = "clip", unet: dict | None = None, **defaults) -> HiGenPipeline:
    """A tiny random :class:`HiGenPipeline`.

    ``defaults`` override :data:`TINY_DEFAULTS` and the other :class:`GenerationDefaults`;
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
        defaults=GenerationDefaults(**{**TINY_DEFAULTS, **defaults}),
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


__all__ = [
    "tiny_pipeline", "save_tiny_model", "tiny_unet", "tiny_text_encoder", "tiny_autoencoder", "tiny_image_embedder",
    "tiny_clip_tokenizer", "tiny_merges", "tiny_open_clip_state_dict", "seeded", "TINY_DEFAULTS", "TINY_WORDS",
]
