"""The latent autoencoder, run frame by frame (higen.md §3, "VAE"): Stable Diffusion 2.1's KL autoencoder.

:class:`VideoAutoencoder` wraps diffusers' ``AutoencoderKL`` (an image autoencoder) and applies it to
every frame of ``b c f h w`` videos, a few frames at a time to bound memory. Latents at its public
boundary are always *scaled* (multiplied by ``scaling_factor``, 0.18215 for SD 2.1), as the UNet sees them.
:func:`load_sd_autoencoder` builds it from the release's ``v2-1_512-ema-pruned.ckpt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from higen.io.checkpoint import CheckpointError, check_state_dict, load_checkpoint_file

# Stable Diffusion 2.1's autoencoder (its LDM config ``first_stage_config``) in diffusers' terms:
# 4 levels of 128/256/512/512 channels (8x down), 2 ResBlocks per encoder level, 4 latent channels.
SD21_AUTOENCODER_CONFIG: dict = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [-1, 1], the range the autoencoder reads (any layout)."""
    return pixels.float().div_(127.5).sub_(1.0)


class VideoAutoencoder(nn.Module):
    """Per-frame ``AutoencoderKL``: videos ``b 3 f H W`` in [-1, 1] <-> scaled latents ``b c f h w``.

    Frozen in HiGen (neither stage trains it), so encoding and decoding run without gradients.
    """

    def __init__(self, vae):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)  # diffusers AutoencoderKL

    @property
    def decoder_width(self) -> int:
        """Channels of the decoder's last (full-resolution) level."""
        return int(self.vae.config.block_out_channels[0])

    @property
    def downscale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        # SD autoencoders have none; later ones (SD3, Flux) subtract a shift before scaling.
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    # -------------------------------------------------------------------------------- encode/decode
    @torch.no_grad()
    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None, chunk_size: int = 8) -> torch.Tensor:
        """Video ``b 3 f H W`` in [-1, 1] -> scaled latents ``b c f h w``.

        ``sample=False`` takes the posterior mean (keyframes at inference); ``sample=True`` draws from
        the posterior with ``generator``, as the reference trainer does (dossier §2.1).
        """
        _check_video("video", video, 3)
        b = video.shape[0]
        frames = rearrange(video, "b c f h w -> (b f) c h w")
        latents = [self._encode_frames(chunk, sample, generator) for chunk in frames.split(_positive(chunk_size))]
        return rearrange(torch.cat(latents), "(b f) c h w -> b c f h w", b=b)

    def _encode_frames(self, frames: torch.Tensor, sample: bool, generator: torch.Generator | None) -> torch.Tensor:
        posterior = self.vae.encode(frames.to(self._dtype)).latent_dist
        z = posterior.sample(generator=generator) if sample else posterior.mean
        return (z - self.shift_factor) * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_size: int = 2) -> torch.Tensor:
        """Scaled latents ``b c f h w`` -> video ``b 3 f H W`` (about [-1, 1]), ``chunk_size`` frames at a time."""
        _check_video("latents", latents, self.latent_channels)
        b = latents.shape[0]
        z = rearrange(latents, "b c f h w -> (b f) c h w") / self.scaling_factor + self.shift_factor
        frames = [self.vae.decode(chunk.to(self._dtype)).sample for chunk in z.split(_positive(chunk_size))]
        return rearrange(torch.cat(frames), "(b f) c h w -> b c f h w", b=b)

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    # ---------------------------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """diffusers' layout: ``config.json`` + ``diffusion_pytorch_model.safetensors``."""
        from higen.io.folders import staged_directory

        with staged_directory(directory) as tmp:
            self.vae.save_pretrained(str(tmp), safe_serialization=True)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "VideoAutoencoder":
        from diffusers import AutoencoderKL

        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"{directory} is not an autoencoder folder (no config.json)")
        return cls(AutoencoderKL.from_pretrained(str(directory), local_files_only=True))

    @classmethod
    def from_config(cls, **config) -> "VideoAutoencoder":
        """A randomly initialised autoencoder; keyword arguments are ``AutoencoderKL``'s (default: SD 2.1's)."""
        from diffusers import AutoencoderKL

        return cls(AutoencoderKL(**{**SD21_AUTOENCODER_CONFIG, **config}))


def _check_video(name: str, x: torch.Tensor, channels: int) -> None:
    if x.dim() != 5 or x.shape[1] != channels:
        raise ValueError(f"{name} must be b {channels} f h w; got shape {tuple(x.shape)}")


def _positive(chunk_size: int) -> int:
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return int(chunk_size)


# ------------------------------------------------------------------------------ the release's file
LDM_PREFIX = "first_stage_model."


def load_sd_autoencoder(ckpt_path: str | os.PathLike, config: dict | None = None) -> VideoAutoencoder:
    """The autoencoder of a Stable Diffusion checkpoint (the release's ``v2-1_512-ema-pruned.ckpt``).

    Reads the ``first_stage_model.*`` tensors (torch pickle with ``weights_only=True``, or safetensors)
    and converts LDM's key layout to diffusers' with diffusers' own converter. ``config`` gives
    ``AutoencoderKL`` arguments for other sizes (default: SD 2.1's). Strict: every
    ``first_stage_model.*`` key must be used and every shape must match, else :class:`CheckpointError`
    lists the problems.
    """
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    state = load_checkpoint_file(ckpt_path)
    ldm = {k: v for k, v in state.items() if k.startswith(LDM_PREFIX)}
    if not ldm:
        raise CheckpointError(f"{ckpt_path} has no {LDM_PREFIX}* keys: not a Stable Diffusion checkpoint")
    config = {**SD21_AUTOENCODER_CONFIG, **(config or {})}
    converted = {k: v for k, v in convert_ldm_vae_checkpoint(ldm, config).items() if v is not None}
    vae = AutoencoderKL(**config)
    # The converter silently skips keys it does not know; a key is used when its tensor (or a view of
    # it: the attention 1x1 convs become Linear weights) reached the output.
    used = {v.data_ptr() for v in converted.values()}
    unused = {k: v for k, v in ldm.items() if v.data_ptr() not in used}
    expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    check_state_dict(
        expected, {**converted, **unused}, source=f"{ckpt_path} ({LDM_PREFIX}*)",
        hint="missing and wrong-shape keys are named in diffusers' layout; pass the AutoencoderKL config of this checkpoint",
    )
    vae.load_state_dict(converted, strict=True)
    return VideoAutoencoder(vae)


__all__ = ["VideoAutoencoder", "load_sd_autoencoder", "SD21_AUTOENCODER_CONFIG"]
