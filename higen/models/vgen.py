"""Compatibility with the official implementation (VGen's ``UNetSD_HiGen``) and its released checkpoint.

- :func:`unet_config_from_vgen_kwargs`: VGen constructor kwargs -> our :class:`UNetConfig`.
- :func:`vgen_key_map`: our state-dict names -> VGen names, derived from the modules' ``vgen_rename``.
- :func:`unet_from_vgen_state_dict`: a VGen state dict + kwargs -> a loaded :class:`HiGenUNet`, strictly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from higen.models.config import UNetConfig
from higen.io.checkpoint import CheckpointError, check_state_dict
from higen.models.unet import HiGenUNet

# The constructor arguments of the released model (configs/higen_*.yaml over tools/modules/config.py).
RELEASED_VGEN_KWARGS: dict[str, Any] = {
    "in_dim": 4,
    "out_dim": 4,
    "dim": 320,
    "y_dim": 1024,
    "context_dim": 1024,
    "dim_mult": [1, 2, 4, 4],
    "num_heads": 8,
    "head_dim": 64,
    "num_res_blocks": 2,
    "attn_scales": [1.0, 0.5, 0.25],
    "dropout": 0.1,
    "temporal_attention": True,
    "temporal_attn_times": 1,
    "use_checkpoint": True,
    "use_image_dataset": False,
    "use_fps_condition": False,
    "num_tokens": 16,
    "context_embedding_depth": 2,
    "use_sim_mask": False,
}

# UNetSD_HiGen's own defaults for arguments a kwargs dict may omit.
_VGEN_DEFAULTS: dict[str, Any] = {
    "in_dim": 4,
    "dim": 512,
    "y_dim": 512,
    "context_dim": 512,
    "out_dim": 6,
    "num_tokens": 4,
    "dim_mult": [1, 2, 3, 4],
    "num_heads": None,
    "head_dim": 64,
    "num_res_blocks": 3,
    "attn_scales": [1 / 2, 1 / 4, 1 / 8],
    "dropout": 0.1,
    "temporal_attention": True,
    "use_checkpoint": False,
    "use_fps_condition": False,
    "context_embedding_depth": 4,
}

# Accepted but without effect on HiGen's parameters or forward pass in the reference code
# (leftovers of other VGen models, or flags the HiGen classes override with frame-count checks).
_VGEN_NO_EFFECT = {
    "config", "hist_dim", "dim_condition", "temporal_attn_times", "use_scale_shift_norm", "use_image_dataset",
    "use_sim_mask", "training", "inpainting", "p_all_zero", "p_all_keep", "zero_y", "adapter_transformer_layers",
    "upper_len", "concat_dim", "default_fps", "type",
}

# The reference builds decoder cross-attention with this width whatever context_dim says.
_VGEN_DECODER_CONTEXT_DIM = 1024
# The reference's appearance MLP input width (hard-wires 32 frames).
_VGEN_APPEARANCE_WIDTH = 32


def read_vgen_kwargs(path: str | Path | None) -> dict[str, Any] | None:
    """VGen constructor kwargs from JSON: a bare object or ``{"vgen_kwargs": {...}}`` (the fixtures' config.json).

    None: the release's kwargs (returns None).
    """
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGen config not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("vgen_kwargs"), dict):
        data = data["vgen_kwargs"]
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of VGen UNet kwargs")
    return data


def unet_config_from_vgen_kwargs(kwargs: Mapping[str, Any] | None = None) -> UNetConfig:
    """Translate ``UNetSD_HiGen(**kwargs)`` into our config (None: the released kwargs)."""
    kw = dict(_VGEN_DEFAULTS)
    kw.update(RELEASED_VGEN_KWARGS if kwargs is None else kwargs)
    unknown = sorted(set(kw) - set(_VGEN_DEFAULTS) - _VGEN_NO_EFFECT - set(RELEASED_VGEN_KWARGS))
    if unknown:
        raise CheckpointError(f"unknown VGen UNet kwargs: {', '.join(unknown)}")
    dim_mult = [int(m) for m in kw["dim_mult"]]
    # The reference tests `scale in attn_scales` with scale halving per level: exact in binary floats.
    attention_levels = tuple(level for level in range(len(dim_mult)) if 1.0 / 2**level in [float(s) for s in kw["attn_scales"]])
    if kw["use_fps_condition"]:
        raise CheckpointError("use_fps_condition=True (a frame-rate embedding) is not supported: HiGen's release does not use it")
    dim = int(kw["dim"])
    return UNetConfig(
        in_channels=int(kw["in_dim"]),
        out_channels=int(kw["out_dim"]),
        base_channels=dim,
        channel_mult=tuple(dim_mult),
        num_res_blocks=int(kw["num_res_blocks"]),
        attention_levels=attention_levels,
        head_dim=int(kw["head_dim"]),
        init_temporal_heads=int(kw["num_heads"] or dim // 32),
        text_dim=int(kw["y_dim"]),
        context_dim=int(kw["context_dim"]),
        decoder_context_dim=_VGEN_DECODER_CONTEXT_DIM,
        num_text_tokens=int(kw["num_tokens"]),
        resampler_depth=int(kw["context_embedding_depth"]),
        resampler_heads=8,
        appearance_width=_VGEN_APPEARANCE_WIDTH,
        temporal_attention=bool(kw["temporal_attention"]),
        dropout=float(kw["dropout"]),
        temporal_dropout=0.1,
        gradient_checkpointing=bool(kw["use_checkpoint"]),
    )


def vgen_key_map(model: nn.Module) -> dict[str, str]:
    """Map each of our state-dict keys to the release's key, following every module's ``vgen_rename``.

    A rename to ``""`` flattens a container (its children's names continue the parent's path).
    """
    mapping: dict[str, str] = {}

    def visit(module: nn.Module, ours: str, theirs: str) -> None:
        rename = getattr(module, "vgen_rename", {})
        for name, _ in module.named_parameters(recurse=False):
            mapping[ours + name] = theirs + rename.get(name, name)
        for name, buf in module.named_buffers(recurse=False):
            if name not in module._non_persistent_buffers_set:
                mapping[ours + name] = theirs + rename.get(name, name)
        for name, child in module.named_children():
            target = rename.get(name, name)
            visit(child, f"{ours}{name}.", f"{theirs}{target}." if target else theirs)

    visit(model, "", "")
    return mapping


def unet_from_vgen_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    vgen_kwargs: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = torch.float32,
    device: str | torch.device = "cpu",
) -> HiGenUNet:
    """Build our UNet from a VGen ``UNetSD_HiGen`` state dict and its constructor kwargs.

    Strict: every key is used and every shape checked; a mismatch raises :class:`CheckpointError`
    listing the missing, unexpected and wrong-shape keys (in VGen names). ``vgen_kwargs=None``
    means the released configuration.
    """
    config = unet_config_from_vgen_kwargs(vgen_kwargs)
    with torch.device("meta"):
        model = HiGenUNet(config)
    to_vgen = vgen_key_map(model)
    expected = {to_vgen[k]: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state_dict(expected, state_dict, hint="pass the VGen constructor kwargs the checkpoint was trained with: --vgen-config JSON")
    ours = {k: state_dict[v].to(device=device, dtype=dtype or state_dict[v].dtype) for k, v in to_vgen.items()}
    model.load_state_dict(ours, assign=True)
    return model.eval()


def unet_to_vgen_state_dict(model: HiGenUNet) -> dict[str, torch.Tensor]:
    """Our weights under the release's key names (loads strictly into ``UNetSD_HiGen``)."""
    if model.config.attribute_values:
        raise ValueError("this UNet has an attribute context (config.attribute_values), which UNetSD_HiGen lacks")
    if model.config.frame_position:
        raise ValueError("this UNet has a frame-position embedding (config.frame_position), which UNetSD_HiGen lacks")
    if model.config.prior_motion:
        raise ValueError("this UNet moves its spatial prior (config.prior_motion), which UNetSD_HiGen lacks")
    to_vgen = vgen_key_map(model)
    return {to_vgen[k]: v for k, v in model.state_dict().items()}
