"""Tiny random HiGen components built from a seed: the whole product runs in about a second on a CPU.

The synthetic training runs (``higen.training.synthetic.tiny_components``), the benchmark's presets and the
tests build their models here. Everything is built without touching the global RNG, so the same seed gives
the same weights. Nothing here is trained; outputs are noise-like but exercise every code path of the real
model (two stages, guidance, cues, the autoencoder, the CLIP text path with a real BPE tokenizer).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from higen.encoders.autoencoder import VideoAutoencoder
from higen.encoders.text import CLIPTextEncoder
from higen.models.config import UNetConfig, tiny_unet_config
from higen.models.unet import HiGenUNet

# A few words, each merged letter by letter into one token; everything else falls back to byte tokens.
TINY_WORDS = ("a", "the", "red", "green", "blue", "ball", "square", "moves", "left", "right", "on", "cat")
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


__all__ = ["seeded", "tiny_merges", "tiny_clip_tokenizer", "tiny_text_encoder", "tiny_autoencoder", "tiny_unet", "TINY_WORDS", "TINY_AUTOENCODER"]
