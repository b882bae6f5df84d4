"""Building blocks of the HiGen UNet (higen.md §3).

Inside the UNet, activations are frame-folded: ``(b f) c h w``. Modules that mix frames (temporal
convs, temporal attention) unfold to ``b c f h w`` beside the op that needs it and receive the
frame count explicitly. Every module whose parameter names differ from the release's (VGen) names
carries a ``vgen_rename`` dict (child name -> VGen child path) read by ``higen.models.vgen``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


def sinusoidal_embedding(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``n`` values -> ``n dim``: cos half then sin half, frequencies ``10000^(-k/half)``.

    Used for timesteps and for the motion cue alike (higen.md §2).
    """
    half = dim // 2
    x = x.reshape(-1).float()
    freqs = torch.pow(10000.0, -torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = torch.outer(x, freqs)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def mlp(in_dim: int, out_dim: int, zero_last: bool = False) -> nn.Sequential:
    """Linear -> SiLU -> Linear; the cue MLPs zero their last layer so a new cue starts as a no-op."""
    net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
    if zero_last:
        nn.init.zeros_(net[2].weight)
        nn.init.zeros_(net[2].bias)
    return net


def zero_(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Attention(nn.Module):
    """Multi-head attention on ``n L c`` tokens with PyTorch SDPA; q/k/v without bias."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        # Sequential so the release's name `to_out.0` maps without renaming.
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``n l c``; ``context``: ``m L d`` where ``n`` is a multiple of ``m`` (default: ``x`` itself).

        With ``n = m f`` (frames folded into the batch, ``(m f) l c``), every frame attends to its
        sample's context. Softmax runs over the context tokens only, so the ``f`` frames of a sample
        can be one query sequence of ``f l`` tokens: the same arithmetic as repeating the context per
        frame, without the copies and without projecting the same k and v ``f`` times.
        """
        if context is None:
            return self._attend(x, x)
        n, m = x.shape[0], context.shape[0]
        if n == m:
            return self._attend(x, context)
        if n % m:
            raise ValueError(f"attention: {n} query sequences cannot share {m} contexts")
        out = self._attend(rearrange(x, "(m f) l c -> m (f l) c", m=m), context)  # views, no copy
        return rearrange(out, "m (f l) c -> (m f) l c", f=n // m)

    def _attend(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        # Views: SDPA reads the strided heads, and its CPU and CUDA kernels write the output
        # n l h d in memory, so the rearrange back is a view too.
        q, k, v = (rearrange(t, "n l (h d) -> n h l d", h=self.heads) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(rearrange(out, "n h l d -> n l (h d)"))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward with 4x expansion (names ``net.0.proj``, ``net.2`` as in the release)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Identity(), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: attn1, attn2, GEGLU feed-forward, each residual.

    ``attn1`` is self-attention unless ``cross_only`` (the text resampler, whose both attentions read
    the context); ``attn2`` attends to the context when one is given, else to itself (temporal blocks).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, cross_only: bool = False):
        super().__init__()
        self.cross_only = cross_only
        self.attn1 = Attention(dim, heads, head_dim, context_dim if cross_only else None)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), context if self.cross_only else None)
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Per-frame self-attention over (h, w) plus cross-attention to the text tokens, residual."""

    vgen_rename = {"blocks": "transformer_blocks"}

    def __init__(self, channels: int, head_dim: int, context_dim: int):
        super().__init__()
        heads = channels // head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, heads * head_dim)
        self.blocks = nn.ModuleList([TransformerBlock(heads * head_dim, heads, head_dim, context_dim)])
        self.proj_out = zero_(nn.Linear(heads * head_dim, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``x``: ``(b f) c h w``; ``context``: ``b L d`` (shared by a sample's frames) or ``(b f) L d``."""
        h, w = x.shape[-2:]
        y = self.proj_in(rearrange(self.norm(x), "n c h w -> n (h w) c"))
        for block in self.blocks:
            y = block(y, context)
        y = rearrange(self.proj_out(y), "n (h w) c -> n c h w", h=h, w=w)
        return x + y


class TokenConv1d(nn.Conv1d):
    """A kernel-1 ``Conv1d`` (the release's parameters) applied to tokens ``... c`` as the linear map it is.

    Same arithmetic as the convolution on ``n c l`` without the two transposes; a module (rather than
    ``F.linear`` on its weight) so per-module hooks such as sequential offloading see it run.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.squeeze(-1), self.bias)


def moved_prior(prior: torch.Tensor, travel: torch.Tensor, frames: int) -> torch.Tensor:
    """``prior`` ``b c h w`` translated for frame ``i`` by ``travel * (i - frames // 2) / frames`` -> ``b c f h w``.

    ``travel`` ``b 2``: (x right, y down) in image sides over the clip. Bilinear, the edges repeated, and
    differentiable in ``travel``; frame ``frames // 2`` (and every frame at zero travel) is the prior itself.
    """
    b, c, h, w = prior.shape
    offsets = (torch.arange(frames, device=prior.device, dtype=prior.dtype) - frames // 2) / frames
    shift = 2.0 * offsets[None, :, None] * travel.to(prior.dtype)[:, None, :]  # grid units: [-1, 1] spans a side
    theta = torch.cat([torch.eye(2, device=prior.device, dtype=prior.dtype).expand(b * frames, 2, 2),
                       -shift.reshape(b * frames, 2, 1)], dim=2)  # sample where the content was: out(p) = prior(p - shift)
    grid = F.affine_grid(theta, [b * frames, c, h, w], align_corners=False)
    repeated = prior[:, None].expand(-1, frames, -1, -1, -1).reshape(b * frames, c, h, w)
    moved = F.grid_sample(repeated, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return moved.reshape(b, frames, c, h, w).transpose(1, 2)


class PriorVelocity(nn.Module):
    """The spatial prior's travel over a clip (``UNetConfig.prior_motion``), ``b 2`` in image sides.

    A direction and size read linearly from the flattened context tokens, scaled by a gain linear in the
    clip's mean motion cue: the text says which way, the motion control how far. Both layers start at zero
    (no travel, gain one). Their outputs are scaled (:attr:`travel_scale`, :attr:`gain_scale`) so that an
    optimiser at a learning rate of ~1e-4 reaches the world's travels (0.1-0.5 sides) and a gain that varies
    over its motion cues (0-80) within a few hundred steps.
    """

    travel_scale = 0.02
    gain_scale = 10.0
    motion_unit = 32.0  # a moving object's typical motion cue (floor(10 * |latent step|))

    def __init__(self, context_features: int):
        super().__init__()
        self.from_context = zero_(nn.Linear(context_features, 2))
        self.gain = zero_(nn.Linear(1, 1))

    def forward(self, context: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        travel = self.travel_scale * self.from_context(context.flatten(1))
        speed = motion.to(travel.dtype).mean(1, keepdim=True) / self.motion_unit
        return travel * (1.0 + self.gain_scale * self.gain(speed))


def add_frames(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Residual ``x`` ``(b f) c h w`` + ``y`` ``b f c h w`` (any strides), in ``x``'s memory layout.

    Adding through a ``b f c h w`` view of ``x`` reads ``y`` where it lies instead of first copying it
    into ``x``'s layout; the sum takes ``x``'s strides (the first operand decides), so folding the
    frames back is a view.
    """
    return (rearrange(x, "(b f) c h w -> b f c h w", f=y.shape[1]) + y).flatten(0, 1)


class TemporalTransformer(nn.Module):
    """Self-attention along frames, separately at each (h, w) position; no positional encoding.

    GroupNorm sees all frames of a clip at once (the release normalises the ``b c f h w`` tensor).
    ``proj_in``/``proj_out`` are kernel-1 Conv1d in the release, applied here as :class:`TokenConv1d`.
    With one frame the module is skipped: the release multiplies its residual by 0 (higen.md §1).
    """

    vgen_rename = {"blocks": "transformer_blocks"}

    def __init__(self, channels: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = TokenConv1d(channels, inner)
        self.blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim)])
        self.proj_out = zero_(TokenConv1d(inner, channels))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x``: ``(b f) c h w``."""
        if num_frames == 1:
            return x
        h, w = x.shape[-2:]
        # The unfolded view is already channels_last_3d when x is channels_last: no copy for the norm.
        y = self.norm(rearrange(x, "(b f) c h w -> b c f h w", f=num_frames))
        # Attention along frames needs each position's frames contiguous: this one copy is inherent.
        y = self.proj_in(rearrange(y, "b c f h w -> (b h w) f c"))
        for block in self.blocks:
            y = block(y)
        return add_frames(x, rearrange(self.proj_out(y), "(b h w) f c -> b f c h w", h=h, w=w))


class FrameConv(nn.Conv3d):
    """The release's ``Conv3d`` with kernel (3, 1, 1) along frames, run as the ``Conv2d`` it equals.

    A (3, 1, 1) kernel never mixes pixels, so on ``b c f (h w)`` (a view of ``b c f h w``) it is a
    (3, 1) 2-D convolution. PyTorch's CPU backend has no fast kernel for this 3-D case (it unfolds
    the input, ``slow_conv3d``), while 2-D convolutions go to oneDNN: ~1.5-2x faster here, and
    channels_last inputs stay channels_last. Parameters keep the ``Conv3d`` shapes.
    """

    def __init__(self, channels: int):
        super().__init__(channels, channels, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``b c f h w``."""
        y = F.conv2d(x.flatten(3), self.weight.squeeze(-1), self.bias, padding=(1, 0))
        return y.unflatten(3, x.shape[3:])


class TemporalConvLayer(nn.Module):
    """GroupNorm -> SiLU -> (dropout) -> Conv3d with kernel (3, 1, 1) along frames."""

    def __init__(self, channels: int, dropout: float | None):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels)
        self.dropout = nn.Dropout(dropout) if dropout is not None else nn.Identity()
        self.conv = FrameConv(channels)
        # Release names: Sequential(GN, SiLU, Conv3d) for the first layer, (GN, SiLU, Dropout, Conv3d) after.
        self.vgen_rename = {"norm": "0", "conv": "2" if dropout is None else "3"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(F.silu(self.norm(x))))


class TemporalConvStack(nn.Module):
    """Four temporal conv layers, residual, last conv zero-initialised; identity for one frame."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList([TemporalConvLayer(channels, None if i == 0 else dropout) for i in range(4)])
        zero_(self.layers[-1].conv)
        self.vgen_rename = {"layers": ""}
        self.layers.vgen_rename = {str(i): f"conv{i + 1}" for i in range(4)}

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x``: ``(b f) c h w``."""
        if num_frames == 1:
            return x
        # A view; with x channels_last it is channels_last_3d, which GroupNorm and Conv3d take as is.
        y = rearrange(x, "(b f) c h w -> b c f h w", f=num_frames)
        for layer in self.layers:
            y = layer(y)
        return add_frames(x, rearrange(y, "b c f h w -> b f c h w"))


class ResBlock(nn.Module):
    """GN-SiLU-conv, + Linear(SiLU(emb)), GN-SiLU-dropout-conv(zero), + skip; then the temporal convs."""

    vgen_rename = {
        "norm1": "in_layers.0",
        "conv1": "in_layers.2",
        "emb_proj": "emb_layers.1",
        "norm2": "out_layers.0",
        "conv2": "out_layers.3",
        "skip": "skip_connection",
        "temporal_conv": "temopral_conv",  # sic: the release's spelling
    }

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float, temporal_dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(32, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        self.temporal_conv = TemporalConvStack(out_channels, temporal_dropout)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x``: ``(b f) c h w``; ``emb``: ``(b f) e``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None].to(h.dtype)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.temporal_conv(self.skip(x) + h, num_frames)


class Downsample(nn.Module):
    vgen_rename = {"conv": "op"}

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TextResampler(nn.Module):
    """Learned queries cross-attend to the text tokens (the release's ``context_embedding``).

    ``b L text_dim`` -> ``b num_tokens context_dim``; both attentions of every block are
    cross-attention from the queries to the (projected) text.
    """

    vgen_rename = {
        "queries": "tokens",
        "text_proj": "input_mapping",
        "blocks": "context_transformer",
        "out_proj": "output_mapping",
    }

    def __init__(self, text_dim: int, width: int, context_dim: int, num_tokens: int, depth: int, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            [TransformerBlock(width, heads, width // heads, context_dim=width, cross_only=True) for _ in range(depth)]
        )
        self.text_proj = nn.Linear(text_dim, width)
        self.out_proj = nn.Linear(width, context_dim)
        self.queries = nn.Parameter(torch.randn(1, num_tokens, width) / math.sqrt(width))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        projected = self.text_proj(text)
        out = self.queries.to(text.dtype).repeat(text.shape[0], 1, 1)
        for block in self.blocks:
            out = block(out, projected)
        return self.out_proj(out)


class AttributeContext(nn.Module):
    """A factorised text context (not in the release): one context token per attribute of a closed vocabulary.

    ``b L text_dim`` -> ``b K context_dim`` for ``K = len(values)`` attributes, attribute ``k`` having
    ``values[k]`` values. Each attribute reads the text through its own attention pooling over the valid
    (non-zero) tokens and a small MLP of that pool and the mean token, giving logits over its values plus
    "not said" (the last); its token is the softmax-weighted mix of a learned embedding per value. Trained
    with the diffusion loss and a cross-entropy of :meth:`logits` against the captions' attributes
    (``loss.attribute_weight``), the tokens approach one learned embedding per stated value: a context
    whose variance is the attributes' rather than the wording's.
    """

    def __init__(self, text_dim: int, context_dim: int, values: tuple[int, ...], hidden: int = 256):
        super().__init__()
        self.values = tuple(int(v) for v in values)
        self.score = nn.Linear(text_dim, len(self.values))
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * text_dim, hidden), nn.GELU(), nn.Linear(hidden, v + 1)) for v in self.values
        )
        self.tables = nn.ParameterList(nn.Parameter(torch.randn(v + 1, context_dim)) for v in self.values)

    def logits(self, text: torch.Tensor) -> list[torch.Tensor]:
        """Per attribute, ``b (values + 1)`` logits; the last value is "not said"."""
        valid = (text != 0).any(dim=-1)
        valid[:, 0] |= ~valid.any(dim=1)  # an all-zero text still pools something
        weights = self.score(text).masked_fill(~valid[..., None], float("-inf")).softmax(dim=1)
        mask = valid[..., None].to(text.dtype)
        mean = (text * mask).sum(1) / mask.sum(1)
        return [head(torch.cat([torch.einsum("bl,bld->bd", weights[..., k], text), mean], dim=-1))
                for k, head in enumerate(self.heads)]

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return torch.stack([logit.softmax(-1) @ table.to(text.dtype) for logit, table in zip(self.logits(text), self.tables)], dim=1)
