"""The models a training run needs, loaded from the config: the UNet and the frozen encoders.

``model.init``:

- ``scratch``: a new UNet from ``model.unet``; the text encoder and autoencoder from the folders (or
  release files) named by ``model.text_encoder`` / ``model.autoencoder``;
- ``vgen``: the released / VGen ``UNetSD_HiGen`` checkpoint at ``model.path`` (``model.vgen_config``:
  its constructor kwargs; default the release's), encoders as for ``scratch`` (the release's
  ``open_clip_pytorch_model.bin`` and ``v2-1_512-ema-pruned.ckpt`` are accepted directly);
- ``folder``: a higen model folder (fine-tuning a trained model); encoders from the folder unless
  overridden.

The appearance embedder follows ``cues.appearance_embedder`` (OpenCLIP's image tower, the colour histogram, or
none).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from higen.diffusion.schedule import NoiseSchedule
from higen.io.files import read_json
from higen.models.config import UNetConfig
from higen.models.unet import HiGenUNet
from higen.pipeline.settings import GenerationSettings
from higen.training.conditioning import resolve_appearance_embedder
from higen.training.config import TrainConfig

# UNet config fields that change neither the parameters nor their meaning: may differ on resume.
RUNTIME_ONLY_FIELDS = ("dropout", "temporal_dropout", "gradient_checkpointing")


@dataclass
class Components:
    """Everything a run trains or uses. ``autoencoder`` None: the data are latents already (a cache);
    ``embedder`` None: the ``ones`` appearance (or cached cues)."""

    unet: HiGenUNet
    text_encoder: nn.Module
    autoencoder: nn.Module | None
    embedder: nn.Module | None
    schedule: NoiseSchedule
    defaults: GenerationSettings


# ------------------------------------------------------------------------------------- the UNet


def expected_unet_config(cfg: TrainConfig) -> UNetConfig:
    """The UNet config ``cfg`` trains, without reading any weights (for resume checks)."""
    m = cfg.model
    if m.init == "scratch":
        config = dataclasses.replace(m.unet)
    elif m.init == "vgen":
        from higen.models.vgen import read_vgen_kwargs, unet_config_from_vgen_kwargs

        config = unet_config_from_vgen_kwargs(read_vgen_kwargs(m.vgen_config))
    else:
        path = Path(m.path) / "unet" / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"model.path: {m.path} is not a higen model folder (no unet/config.json)")
        config = UNetConfig.load(path)
    if m.dropout is not None:
        config = dataclasses.replace(config, dropout=m.dropout, temporal_dropout=m.dropout)
    if m.add_prior_motion:
        config = dataclasses.replace(config, prior_motion=True)
    return config


def build_unet(cfg: TrainConfig, load_weights: bool = True) -> HiGenUNet:
    """The UNet to train. ``load_weights=False`` (resuming) builds it empty on the meta device: the
    checkpoint's weights are loaded into it with ``assign=True``, and the big init file is not read."""
    config = expected_unet_config(cfg)
    m = cfg.model
    if not load_weights:
        with torch.device("meta"):
            return HiGenUNet(config)
    if m.init == "scratch":
        # Every rank builds the same initial weights (FSDP does not broadcast them as DDP does).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed)
            unet = HiGenUNet(config)
    elif m.init == "vgen":
        from higen.io.checkpoint import load_checkpoint_file
        from higen.models.vgen import read_vgen_kwargs, unet_from_vgen_state_dict

        unet = unet_from_vgen_state_dict(load_checkpoint_file(m.path), read_vgen_kwargs(m.vgen_config))
    else:
        # fp32 master weights whatever the folder stores (the bundled model is fp16): AdamW on fp16 weights
        # loses small updates, and fp16 kernels on a CPU are several times slower. train.precision is autocast.
        unet = HiGenUNet.from_pretrained(Path(m.path) / "unet", dtype=torch.float32)
    if m.dropout is not None:
        set_dropout(unet, m.dropout)
    if m.add_prior_motion:
        unet.add_prior_motion()
    return unet


def set_dropout(unet: HiGenUNet, p: float) -> None:
    """Override every dropout probability of a built UNet (and its config, for the exported folder)."""
    for module in unet.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
    unet.config = dataclasses.replace(unet.config, dropout=p, temporal_dropout=p)


def unet_differences(saved: dict, current: UNetConfig) -> list[str]:
    """Parameter-shaping UNet settings that differ between a checkpoint's config and this run's."""
    now = current.to_dict()
    keys = sorted((set(saved) | set(now)) - set(RUNTIME_ONLY_FIELDS))
    return [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


# ------------------------------------------------------------------------------------ encoders


def load_text_encoder_from(source: str | Path, tokenizer: str | None = None) -> nn.Module:
    """A text-encoder folder, the release's ``open_clip_pytorch_model.bin`` (OpenCLIP ViT-H-14), or
    ``minilm`` (the offline MiniLM sentence encoder package: models trained without the release's files)."""
    from higen.encoders.text import CLIPTextEncoder, MiniLMTextEncoder, load_text_encoder

    if str(source) == "minilm":
        return MiniLMTextEncoder()
    path = Path(source)
    if path.is_dir():
        return load_text_encoder(path)
    if path.is_file():
        return CLIPTextEncoder.from_open_clip_checkpoint(path, tokenizer=tokenizer)
    raise FileNotFoundError(f"text encoder not found: {path}")


def load_autoencoder_from(source: str | Path) -> nn.Module:
    """An autoencoder folder, or the release's Stable Diffusion 2.1 ``.ckpt`` (its ``first_stage_model``)."""
    from higen.encoders.autoencoder import VideoAutoencoder, load_sd_autoencoder

    path = Path(source)
    if path.is_dir():
        return VideoAutoencoder.from_pretrained(path)
    if path.is_file():
        return load_sd_autoencoder(path)
    raise FileNotFoundError(f"autoencoder not found: {path}")


def load_embedder(cfg: TrainConfig) -> nn.Module | None:
    """The image embedder of the appearance cue (None for ``ones``)."""
    kind = resolve_appearance_embedder(cfg.cues)
    if kind == "ones":
        return None
    if kind == "histogram":
        from higen.encoders.histogram import HistogramEmbedder

        return HistogramEmbedder()
    from higen.encoders.image import CLIPImageEmbedder

    path = Path(cfg.cues.open_clip)
    if path.is_dir():
        return CLIPImageEmbedder.from_pretrained(path)
    if path.is_file():
        return CLIPImageEmbedder.from_open_clip_checkpoint(path)
    raise FileNotFoundError(f"cues.open_clip not found: {path}")


def _encoder_source(cfg: TrainConfig, field: str) -> str | None:
    explicit = getattr(cfg.model, field)
    if explicit:
        return explicit
    if cfg.model.init == "folder":
        folder = Path(cfg.model.path) / field
        return str(folder) if folder.is_dir() else None
    return None


def needs_autoencoder(cfg: TrainConfig) -> bool:
    """Latent caches and latent-size synthetic data bring latents; everything else is encoded here."""
    return not (cfg.data.source == "cache" or (cfg.data.source == "synthetic" and cfg.data.latent))


def load_components(cfg: TrainConfig, load_unet_weights: bool = True) -> Components:
    """Every model of the run, on the CPU (the trainer moves them)."""
    text_source = _encoder_source(cfg, "text_encoder")
    if text_source is None:
        raise ValueError(f"model.init={cfg.model.init} needs model.text_encoder (a text-encoder folder or open_clip_pytorch_model.bin)")
    autoencoder_source = _encoder_source(cfg, "autoencoder")
    if autoencoder_source is None and needs_autoencoder(cfg):
        raise ValueError(f"data.source={cfg.data.source} needs model.autoencoder (an autoencoder folder or the SD 2.1 .ckpt)")
    text_encoder = load_text_encoder_from(text_source, cfg.model.tokenizer)
    autoencoder = load_autoencoder_from(autoencoder_source) if autoencoder_source else None
    embedder = load_embedder(cfg) if cfg.data.source != "cache" else None
    unet = build_unet(cfg, load_weights=load_unet_weights)
    schedule, defaults = NoiseSchedule(), GenerationSettings(frames=cfg.data.frames, height=cfg.data.height, width=cfg.data.width, fps=cfg.data.fps)
    if cfg.model.init == "folder":
        folder = Path(cfg.model.path)
        if (folder / "scheduler.json").is_file():
            schedule = NoiseSchedule.from_dict(read_json(folder / "scheduler.json"))
        if (folder / "pipeline.json").is_file():
            defaults = GenerationSettings.load(folder / "pipeline.json")
    for frozen in (text_encoder, autoencoder, embedder):
        if frozen is not None:
            frozen.requires_grad_(False).eval()
    return Components(unet, text_encoder, autoencoder, embedder, schedule, defaults)


def generation_defaults(cfg: TrainConfig, defaults: GenerationSettings) -> GenerationSettings:
    """The exported model's generation defaults: the config's ``generation`` section over ``defaults``,
    and one-stage sampling for a model trained without the decoupling (``cues.decoupled``)."""
    return dataclasses.replace(defaults, decoupled=cfg.cues.decoupled, **cfg.generation)


__all__ = ["generation_defaults", 
    "Components", "load_components", "build_unet", "expected_unet_config", "set_dropout",
    "unet_differences", "load_text_encoder_from", "load_autoencoder_from", "load_embedder", "needs_autoencoder",
]
