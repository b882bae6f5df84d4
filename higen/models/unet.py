"""The HiGen UNet: one denoiser for both reasoning stages (higen.md §1, §3).

Run with one frame it is a text-to-image model (every temporal module is skipped: the spatial
stage); run with ``f`` frames plus a spatial prior and the motion and appearance cues it denoises a
clip (the temporal stage).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn as nn
import torch.utils.checkpoint
from einops import rearrange

from higen.cues import Cues, resample_appearance
from higen.models.config import UNetConfig
from higen.io.checkpoint import check_state_dict, load_checkpoint_file
from higen.models.layers import (
    AttributeContext,
    Downsample,
    PriorVelocity,
    ResBlock,
    SpatialTransformer,
    TemporalTransformer,
    TextResampler,
    Upsample,
    add_frames,
    mlp,
    moved_prior,
    sinusoidal_embedding,
    zero_,
)


class UNetUnit(nn.Module):
    """One step of the encoder or decoder: ResBlock, optional spatial + temporal transformers, optional resampling."""

    def __init__(self, res: ResBlock, spatial: SpatialTransformer | None, temporal: TemporalTransformer | None, resample: nn.Module | None):
        super().__init__()
        self.res = res
        self.spatial = spatial
        self.temporal = temporal
        self.resample = resample
        # The release numbers the present children in order: res 0, spatial 1, temporal 2, upsample last.
        present = [name for name in ("res", "spatial", "temporal", "resample") if getattr(self, name) is not None]
        self.vgen_rename = {name: str(i) for i, name in enumerate(present)}

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self.res(x, emb, num_frames)
        if self.spatial is not None:
            x = self.spatial(x, context)
        if self.temporal is not None:
            x = self.temporal(x, num_frames)
        if self.resample is not None:
            x = self.resample(x)
        return x


def frame_times(frames: int, device) -> torch.Tensor:
    """Each frame's normalised time in the clip, ``1000 i / (F - 1)`` (``F > 1``), as a timestep-like value."""
    return torch.arange(frames, device=device, dtype=torch.float32) * (1000.0 / (frames - 1))


class HiGenUNet(nn.Module):
    """HiGen's unified denoiser. Public layout: ``b c f h w`` in and out (v-prediction).

    Build it from a :class:`UNetConfig`; load released weights with
    :func:`higen.models.vgen.unet_from_vgen_state_dict`.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c = config
        base, emb_dim = c.base_channels, c.embed_dim
        self.gradient_checkpointing = c.gradient_checkpointing

        # Per-frame conditioning: timestep + motion + appearance (+ frame position), all added (higen.md §2).
        self.time_embed = mlp(base, emb_dim)
        self.motion_embed = mlp(base, emb_dim, zero_last=True)
        self.appearance_embed = mlp(c.appearance_width, emb_dim, zero_last=True)
        self.position_embed = mlp(base, emb_dim, zero_last=True) if c.frame_position else None
        if c.attribute_values:
            self.text_resampler = AttributeContext(c.text_dim, c.context_dim, c.attribute_values)
        else:
            self.text_resampler = TextResampler(c.text_dim, emb_dim, c.context_dim, c.num_text_tokens, c.resampler_depth, c.resampler_heads)
        # The spatial prior enters once, added after the input conv, identically for every frame (or, with
        # config.prior_motion, moved in each frame by a travel read from the context).
        self.prior_embed = zero_(nn.Conv2d(c.in_channels, base, 3, padding=1))
        self.prior_velocity = self._prior_velocity() if c.prior_motion else None
        self.input_conv = nn.Conv2d(c.in_channels, base, 3, padding=1)
        self.input_temporal = TemporalTransformer(base, c.init_temporal_heads, c.head_dim) if c.temporal_attention else None

        self.down, skip_channels = self._build_encoder()
        self.mid = self._build_middle()
        self.up = self._build_decoder(skip_channels)
        self.out = nn.Sequential(nn.GroupNorm(32, base), nn.SiLU(), nn.Conv2d(base, c.out_channels, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)  # the release zeroes the head's weight only

        self.vgen_rename = {
            "time_embed": "time_embed",
            "motion_embed": "msim_embedding",
            "appearance_embed": "asim_embedding",
            "text_resampler": "context_embedding",
            "prior_embed": "img_embedding",
            "input_conv": "input_blocks.0.0",
            "input_temporal": "input_blocks.0.1",
            "down": "",
            "mid": "middle_block",
            "up": "output_blocks",
        }
        self.down.vgen_rename = {str(i): f"input_blocks.{i + 1}" for i in range(len(self.down))}

    # ----------------------------------------------------------------------------------- building
    def _unit(self, in_ch: int, out_ch: int, attention: bool, context_dim: int, resample: nn.Module | None) -> UNetUnit:
        c = self.config
        res = ResBlock(in_ch, out_ch, c.embed_dim, c.dropout, c.temporal_dropout)
        spatial = SpatialTransformer(out_ch, c.head_dim, context_dim) if attention else None
        temporal = None
        if attention and c.temporal_attention:
            temporal = TemporalTransformer(out_ch, out_ch // c.head_dim, c.head_dim)
        return UNetUnit(res, spatial, temporal, resample)

    def _build_encoder(self) -> tuple[nn.ModuleList, list[int]]:
        c = self.config
        blocks, skips = nn.ModuleList(), [c.base_channels]
        in_ch = c.base_channels
        for level, mult in enumerate(c.channel_mult):
            out_ch = c.base_channels * mult
            for _ in range(c.num_res_blocks):
                blocks.append(self._unit(in_ch, out_ch, level in c.attention_levels, c.context_dim, None))
                in_ch = out_ch
                skips.append(out_ch)
            if level != c.num_levels - 1:
                blocks.append(Downsample(out_ch))
                skips.append(out_ch)
        return blocks, skips

    def _build_middle(self) -> nn.Module:
        c = self.config
        ch = c.base_channels * c.channel_mult[-1]
        mid = nn.Module()
        mid.res1 = ResBlock(ch, ch, c.embed_dim, c.dropout, c.temporal_dropout)
        mid.spatial = SpatialTransformer(ch, c.head_dim, c.context_dim)
        mid.temporal = TemporalTransformer(ch, ch // c.head_dim, c.head_dim) if c.temporal_attention else None
        mid.res2 = ResBlock(ch, ch, c.embed_dim, c.dropout, c.temporal_dropout)
        present = [n for n in ("res1", "spatial", "temporal", "res2") if getattr(mid, n) is not None]
        mid.vgen_rename = {n: str(i) for i, n in enumerate(present)}
        return mid

    def _build_decoder(self, skips: list[int]) -> nn.ModuleList:
        c = self.config
        skips = list(skips)
        blocks = nn.ModuleList()
        in_ch = c.base_channels * c.channel_mult[-1]
        for level in reversed(range(c.num_levels)):
            out_ch = c.base_channels * c.channel_mult[level]
            for j in range(c.num_res_blocks + 1):
                upsample = Upsample(out_ch) if level != 0 and j == c.num_res_blocks else None
                attention = level in c.attention_levels
                blocks.append(self._unit(in_ch + skips.pop(), out_ch, attention, c.resolved_decoder_context_dim, upsample))
                in_ch = out_ch
        return blocks

    def _prior_velocity(self) -> PriorVelocity:
        c = self.config
        tokens = len(c.attribute_values) if c.attribute_values else c.num_text_tokens
        return PriorVelocity(tokens * c.context_dim)

    def add_prior_motion(self) -> "HiGenUNet":
        """Give a built UNet ``config.prior_motion`` (zero-initialised: it computes what it did until trained)."""
        if self.prior_velocity is None:
            self.config = dataclasses.replace(self.config, prior_motion=True)
            weight = self.prior_embed.weight
            self.prior_velocity = self._prior_velocity().to(device=weight.device, dtype=weight.dtype)
        return self

    def prior_embedding(self, spatial_prior: torch.Tensor, context: torch.Tensor, motion: torch.Tensor, frames: int) -> torch.Tensor:
        """The prior's embedding for every frame, ``b f C h w``: the same one broadcast, or (``prior_motion``,
        more than one frame) the prior moved by the travel read from ``context`` and the ``motion`` cue."""
        if self.prior_velocity is None or frames == 1:
            return self.prior_embed(spatial_prior)[:, None].expand(-1, frames, -1, -1, -1)
        travel = self.prior_velocity(context, motion)
        moved = rearrange(moved_prior(spatial_prior, travel, frames), "b c f h w -> (b f) c h w")
        return rearrange(self.prior_embed(moved), "(b f) c h w -> b f c h w", f=frames)

    # ------------------------------------------------------------------------------- conditioning
    def frame_embedding(
        self,
        timesteps: torch.Tensor,
        batch: int,
        frames: int,
        motion: torch.Tensor,
        appearance: torch.Tensor,
    ) -> torch.Tensor:
        """Per-frame conditioning vector ``(b f) e`` = time MLP + motion MLP + appearance MLP (higen.md §2)
        (+ the frame-position MLP when ``config.frame_position``)."""
        base = self.config.base_channels
        t = timesteps.reshape(-1).expand(batch) if timesteps.numel() == 1 else timesteps.reshape(batch)
        emb = self.time_embed(sinusoidal_embedding(t, base).to(self.dtype))
        emb = emb.repeat_interleave(frames, dim=0)
        emb = emb + self.motion_embedding(motion, batch, frames)
        if self.position_embed is not None and frames > 1:
            emb = emb + self.position_embedding(batch, frames, timesteps.device)
        return emb + self.appearance_embedding(appearance, batch, frames)

    def position_embedding(self, batch: int, frames: int, device) -> torch.Tensor:
        """Frame ``i``'s normalised time ``i / (F - 1)``, embedded like a timestep in [0, 1000] -> ``(b f) e``.

        Normalised time, as the appearance template (``higen.cues``), so any number of frames stays in
        the range seen in training.
        """
        emb = self.position_embed(sinusoidal_embedding(frame_times(frames, device), self.config.base_channels).to(self.dtype))  # f e
        return emb.repeat(batch, 1)

    def motion_embedding(self, motion: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """Motion ``b (f-1)`` (per adjacent pair), ``b f``, or ``b``/``b 1`` for one frame -> ``(b f) e``.

        Per-pair values are embedded, then linearly interpolated to ``f`` frame positions before the MLP.
        """
        base = self.config.base_channels
        motion = motion.reshape(batch, -1)
        n = motion.shape[1]
        if frames == 1 and n != 1:
            raise ValueError(f"one frame takes one motion value per sample, got {n}")
        if frames > 1 and n not in (frames - 1, frames):
            raise ValueError(f"motion has {n} values per sample; expected {frames - 1} (per frame pair) or {frames}")
        emb = sinusoidal_embedding(motion, base).reshape(batch, n, base)
        if n != frames:
            emb = nn.functional.interpolate(emb.transpose(1, 2), size=frames, mode="linear").transpose(1, 2)
        return self.motion_embed(emb.to(self.dtype)).reshape(batch * frames, -1)

    def appearance_embedding(self, appearance: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """Appearance ``b f W`` (or a ``b f f`` similarity matrix, resampled to ``W``) -> ``(b f) e``."""
        width = self.config.appearance_width
        if appearance.dim() != 3 or appearance.shape[:2] != (batch, frames):
            raise ValueError(f"appearance must be (batch, frames, {width}) = ({batch}, {frames}, {width}); got {tuple(appearance.shape)}")
        if appearance.shape[2] != width:
            if appearance.shape[2] != frames:
                raise ValueError(f"appearance rows have {appearance.shape[2]} values; expected {width} or {frames}")
            appearance = resample_appearance(appearance, width)
        return self.appearance_embed(appearance.to(self.dtype)).reshape(batch * frames, -1)

    # ------------------------------------------------------------------------------------ forward
    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        spatial_prior: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
        appearance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict v for noisy latents.

        Args:
            x: noisy latents ``b c f h w``.
            timesteps: ``b`` (or a scalar) diffusion timesteps.
            text: text-encoder token features ``b L text_dim`` (before the resampler).
            spatial_prior: the prior latent ``b c h w``; None means zeros (the spatial stage).
            motion: ``b (f-1)`` values (one frame: ``b`` or ``b 1``); None means zeros.
            appearance: ``b f W`` (or a ``b f f`` similarity matrix); None means ones (unchanging appearance).
            The None defaults are :meth:`higen.cues.Cues.spatial_stage`'s.
        Returns:
            v-prediction ``b c f h w`` (contiguous), in ``x``'s dtype.

        The network computes in its parameters' dtype (:attr:`dtype`); floating inputs are cast to
        it and the output back to ``x``'s dtype, so a sampler can keep its latents in float32 while
        a bf16 or fp16 network does the work. Activations follow the convolution weights' memory
        format: after ``to(memory_format=torch.channels_last)`` they are channels_last throughout.
        """
        b, _, f, h, w = x.shape
        factor = self.config.downscale_factor
        if h % factor or w % factor:
            raise ValueError(f"latent size {h}x{w} must be divisible by {factor} (the UNet's downsampling)")
        out_dtype, dtype = x.dtype, self.dtype
        if motion is None or appearance is None:
            still = Cues.spatial_stage(b, f, x.device)
            motion = still.motion if motion is None else motion
            appearance = still.appearance if appearance is None else appearance
        emb = self.frame_embedding(timesteps.to(x.device), b, f, motion, appearance)
        # One context per sample: cross-attention shares it across the sample's frames (Attention.forward).
        context = self.text_resampler(text.to(dtype))
        if spatial_prior is None:
            spatial_prior = torch.zeros(b, x.shape[1], h, w, device=x.device, dtype=dtype)

        x = self.input_conv(rearrange(x.to(dtype), "b c f h w -> (b f) c h w"))
        # The prior's embedding is added to every frame: broadcast, not repeated (unless it moves).
        x = add_frames(x, self.prior_embedding(spatial_prior.to(dtype), context, motion.to(x.device), f))
        if self.input_temporal is not None:
            x = self.input_temporal(x, f)
        skips = [x]
        for block in self.down:
            x = self._run(block, x, emb, context, f)
            skips.append(x)
        x = self._run_middle(x, emb, context, f)
        for block in self.up:
            x = self._run(block, torch.cat([x, skips.pop()], dim=1), emb, context, f)
        x = rearrange(self.out(x), "(b f) c h w -> b c f h w", b=b)
        return x.to(out_dtype).contiguous()  # (to()'s memory_format may alias a strided 5-D tensor)

    def to_channels_last(self) -> "HiGenUNet":
        """Store convolution weights channels_last (2-D) and channels_last_3d (the temporal Conv3d), in place.

        Activations then stay channels_last through the network: convolutions meet their preferred
        layout, the spatial transformers' token views and the temporal convs' ``b c f h w`` views are
        free. ``nn.Module.to(memory_format=...)`` cannot do this: it refuses the 5-D weights.
        """
        formats = {4: torch.channels_last, 5: torch.channels_last_3d}
        for p in self.parameters():
            if p.dim() in formats:
                p.data = p.data.contiguous(memory_format=formats[p.dim()])
        return self

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the network computes in: its parameters'."""
        return self.input_conv.weight.dtype

    def _run(self, block: nn.Module, x, emb, context, f) -> torch.Tensor:
        if isinstance(block, Downsample):
            return block(x)
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, x, emb, context, f, use_reentrant=False)
        return block(x, emb, context, f)

    def _run_middle(self, x, emb, context, f) -> torch.Tensor:
        mid = self.mid
        x = mid.res1(x, emb, f)
        x = mid.spatial(x, context)
        if mid.temporal is not None:
            x = mid.temporal(x, f)
        return mid.res2(x, emb, f)

    # -------------------------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """``config.json`` + ``model.safetensors``, each written atomically."""
        from safetensors.torch import save_file

        from higen.io.files import atomic_path

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory / "config.json")
        state = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / "model.safetensors") as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "model": "higen-unet"})

    @classmethod
    def from_pretrained(cls, directory: str | Path, device="cpu", dtype: torch.dtype | None = None) -> "HiGenUNet":
        directory = Path(directory)
        config = UNetConfig.load(directory / "config.json")
        with torch.device("meta"):
            model = cls(config)
        state = load_checkpoint_file(directory / "model.safetensors", device=device)
        check_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}, state, source=str(directory))
        model.load_state_dict(state, assign=True)
        if dtype is not None:
            model.to(dtype)
        return model.eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = ["HiGenUNet", "UNetConfig"]
