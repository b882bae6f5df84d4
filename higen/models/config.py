"""Typed configuration of the HiGen UNet."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class UNetConfig:
    """Everything that determines the HiGen UNet's parameters and forward pass.

    Defaults are the released 1.48 B-parameter model (higen.md §3).
    """

    in_channels: int = 4
    out_channels: int = 4
    base_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2  # per encoder level; decoder levels have one more
    attention_levels: tuple[int, ...] = (0, 1, 2)  # levels (0 = full resolution) with transformers
    head_dim: int = 64  # spatial and per-level temporal attention head size
    init_temporal_heads: int = 8  # heads of the temporal transformer after the input conv
    text_dim: int = 1024  # width of the text encoder's token features (before the resampler)
    context_dim: int = 1024  # width of the resampler's output tokens
    decoder_context_dim: int | None = None  # None: same as context_dim (the release hard-codes 1024)
    num_text_tokens: int = 16  # learned resampler queries
    resampler_depth: int = 2
    resampler_heads: int = 8
    appearance_width: int = 32  # the appearance MLP's input width: the release's native frame count
    temporal_attention: bool = True
    dropout: float = 0.1  # ResBlock dropout
    temporal_dropout: float = 0.1  # temporal conv dropout (fixed at 0.1 in the release)
    # Not in the release: a learned embedding of each frame's normalised time i / (F - 1), added to the
    # per-frame embedding (zero-initialised MLP; nothing at F = 1, like every temporal layer). The release's
    # temporal layers have no positional encoding: frame order reaches them only through the temporal convs'
    # padding and the appearance rows, whose real-video similarities fall off with |i - j| (dossier §3.4). A
    # model trained from scratch on clips of unchanging appearance (all-ones rows) lacks the second.
    frame_position: bool = False
    # Not in the release: values per attribute of a closed vocabulary (e.g. the procedural world's colour,
    # shape, ...). Non-empty replaces the text resampler by an AttributeContext (higen.models.layers): one
    # context token per attribute, read from the text by a learned parser. Empty: the release's resampler.
    attribute_values: tuple[int, ...] = ()
    # Not in the release: a spatial prior that moves. Zero-initialised linear layers read a travel (x, y in image
    # sides over the clip) from the context tokens and scale it by the motion cue (higen.models.layers.PriorVelocity),
    # and frame i gets the prior translated by travel * (i - F // 2) / F (higen.models.layers.moved_prior) in place
    # of the same prior in every frame. The release adds one prior to every frame alike, and its layers have no
    # cheap way to move it by a different amount in each frame.
    prior_motion: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.attention_levels = tuple(int(i) for i in self.attention_levels)
        self.attribute_values = tuple(int(v) for v in self.attribute_values)
        self.validate()

    @property
    def embed_dim(self) -> int:
        return 4 * self.base_channels

    @property
    def num_levels(self) -> int:
        return len(self.channel_mult)

    @property
    def downscale_factor(self) -> int:
        """Spatial size of latents must be divisible by this."""
        return 2 ** (self.num_levels - 1)

    @property
    def resolved_decoder_context_dim(self) -> int:
        return self.context_dim if self.decoder_context_dim is None else self.decoder_context_dim

    def validate(self) -> None:
        if not self.channel_mult:
            raise ValueError("channel_mult must name at least one level")
        for level in self.attention_levels:
            if not 0 <= level < self.num_levels:
                raise ValueError(f"attention level {level} outside 0..{self.num_levels - 1}")
        for mult in self.channel_mult:
            channels = self.base_channels * mult
            if channels % 32:
                raise ValueError(f"level width {channels} is not divisible by 32 (GroupNorm groups)")
            if channels % self.head_dim:
                raise ValueError(f"level width {channels} is not divisible by head_dim {self.head_dim}")
        if any(v < 1 for v in self.attribute_values):
            raise ValueError(f"every attribute needs at least one value; got attribute_values {list(self.attribute_values)}")
        if self.embed_dim % self.resampler_heads:
            raise ValueError("4 * base_channels must be divisible by resampler_heads")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_levels"] = list(self.attention_levels)
        d["attribute_values"] = list(self.attribute_values)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown UNet config keys: {', '.join(unknown)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        from higen.io.files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "UNetConfig":
        from higen.io.files import read_json

        return cls.from_dict(read_json(path))


def tiny_unet_config(**overrides) -> UNetConfig:
    """A few-thousand-parameter config with the release's structure, for tests."""
    base = dict(
        base_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(0,),
        head_dim=16,
        init_temporal_heads=2,
        text_dim=16,
        context_dim=32,
        num_text_tokens=4,
        resampler_depth=1,
        appearance_width=8,
    )
    base.update(overrides)
    return UNetConfig(**base)


__all__ = ["UNetConfig", "tiny_unet_config"]
