"""``higen train-cache``: encode a dataset once (latents, text features, motion, appearance) for training.

The storage, shard format and settings check are the data layer's (``higen.data.cache``); this module
wires the trainer's frozen encoders onto it, through the same functions training uses
(:mod:`higen.training.conditioning`), and defines the encoders' identity that the cache records and
training from ``data.source=cache`` checks.

What a cache freezes (documented trade-offs): one autoencoder posterior sample per clip (keyed by the
seed and the sample index) instead of a fresh one per step, and one start frame per clip (the data
layer's epoch-0 choice). Caption dropout is still applied per step at training time: the cache holds
the un-dropped text features and the trainer swaps in the null text's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from higen.training.components import load_components, load_embedder
from higen.training.conditioning import (
    Conditioner, encode_latents, resolve_appearance_embedder, resolve_appearance_scale, sample_generators,
)
from higen.training.config import TrainConfig

CACHE_STEP = 0  # the step key of the frozen posterior samples


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and bytes): its weights' identity."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def encoder_identity(cfg: TrainConfig, text_encoder: nn.Module, autoencoder: nn.Module | None, embedder: nn.Module | None) -> dict:
    """What makes cached tensors valid for a run: the encoders' weights and the cue settings.

    The clip settings (frames, fps, size, ...) are added by ``higen.data.build.cache_fingerprint``.
    """
    if autoencoder is None:
        raise ValueError("a latent cache is tied to its autoencoder: set model.autoencoder (or use a model folder that has one)")
    appearance = resolve_appearance_embedder(cfg.cues)
    if appearance == "histogram":
        embedder_id = embedder.identity() if embedder is not None else None
    else:
        embedder_id = module_fingerprint(embedder) if embedder is not None else None
    return {
        "text_encoder": module_fingerprint(text_encoder),
        "autoencoder": module_fingerprint(autoencoder),
        "latents": "posterior sample x scaling factor",
        "posterior_seed": cfg.train.seed,
        "appearance": appearance,
        "appearance_embedder": embedder_id,
        "appearance_scale": resolve_appearance_scale(cfg.cues),
    }


def cache_settings_for_training(cfg: TrainConfig, components) -> dict:
    """The identity training from a cache expects (the image embedder is loaded just to identify it)."""
    embedder = components.embedder
    if embedder is None and resolve_appearance_embedder(cfg.cues) != "ones":
        embedder = load_embedder(cfg)
    return encoder_identity(cfg, components.text_encoder, components.autoencoder, embedder)


def make_encode_fn(conditioner: Conditioner, seed: int) -> Callable:
    """``encode_fn(batch) -> {latents, text, motion, appearance}`` for ``higen.data.cache.build_cache``.

    The same steps as training (posterior sample, text features without dropout, the cues), keyed by
    (seed, sample index) so rebuilding a cache gives the same tensors.
    """

    @torch.no_grad()
    def encode(batch) -> dict[str, torch.Tensor]:
        pixels = batch.pixels.to(conditioner.device, torch.float32)
        with conditioner.autocast():
            latents = encode_latents(conditioner.autoencoder, pixels, sample_generators(seed, CACHE_STEP, batch.indices, "cache_posterior"))
        latents = latents.float()
        cues = conditioner.measure_cues(latents, pixels)
        return {"latents": latents, "text": conditioner.encode_text(batch.captions), "motion": cues.motion, "appearance": cues.appearance}

    return encode


def build_training_cache(cfg: TrainConfig, out_dir: str | Path, kind: str = "video", *, batch_size: int = 4, shard_size: int = 256,
                         overwrite: bool = False, progress: bool = True) -> Path:
    """Encode ``cfg.data``'s ``kind`` stream into a latent cache at ``out_dir`` (see the module docstring)."""
    from higen.data import TrainingData
    from higen.data.build import cache_fingerprint
    from higen.data.cache import build_cache
    from higen.training.distributed import resolve_device

    if cfg.data.source == "cache":
        raise ValueError("data.source=cache: give the config of the data to encode (manifest, webdataset or world)")
    if cfg.data.latent:
        raise ValueError("data.latent=true data are latents already; there is nothing to encode")
    device = resolve_device(cfg.train.device, 0)
    data = TrainingData(cfg.data, seed=cfg.train.seed, rank=0, world_size=1, batch_size=1, image_batch_size=1, num_workers=0)
    if kind == "video" and not data.has_videos() or kind == "image" and not data.has_images():
        raise ValueError(f"the data config has no {kind} stream (set data.{kind}s)")
    components = load_components(cfg, load_unet_weights=False)
    for module in (components.text_encoder, components.autoencoder, components.embedder):
        if module is not None:
            module.to(device)
    conditioner = Conditioner(components.text_encoder, components.autoencoder, components.embedder, seed=cfg.train.seed,
                              caption_dropout=0.0, appearance_scale=resolve_appearance_scale(cfg.cues), device=device)
    identity = encoder_identity(cfg, components.text_encoder, components.autoencoder, components.embedder)
    settings = cache_fingerprint(cfg.data, kind, identity)
    return build_cache(out_dir, data, make_encode_fn(conditioner, cfg.train.seed), settings, shard_size, kind=kind,
                       batch_size=batch_size, num_workers=cfg.data.num_workers, seed=cfg.train.seed, overwrite=overwrite,
                       progress=progress)


__all__ = ["module_fingerprint", "encoder_identity", "cache_settings_for_training", "make_encode_fn", "build_training_cache"]
