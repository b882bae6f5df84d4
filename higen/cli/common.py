"""What the commands share: devices, loading a model folder, speed options and writing videos with their sidecars."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

OFFLOAD = ("model", "sequential")


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "_", text).strip("_")[:limit] or "video"


def check_writable(path: Path) -> None:
    """Fail before generating anything if the output cannot be written."""
    parent = path if path.is_dir() else path.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to {parent}")


def resolve_device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available")
    return device


def load_pipeline(model: Path | None, device, dtype_name: str):
    import torch

    from higen.pipeline.pipeline import HiGenPipeline

    if model is None:
        from higen.assets import bundled_model_path

        model = bundled_model_path()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    return HiGenPipeline.from_pretrained(model, device=device, dtype=dtype), model


def check_speed_options(device, compile: bool = False, offload: str | None = None) -> None:
    """Refuse combinations that cannot work, before anything is loaded."""
    if offload is not None and device.type == "cpu":
        raise ValueError("--offload keeps weights in CPU memory for a GPU; it needs --device cuda")
    if offload == "sequential" and compile:
        raise ValueError("--compile and --offload sequential do not combine (the offload hooks would break the compiled graph)")


def speed_options(pipe, device, channels_last: bool = False, compile: bool = False, offload: str | None = None):
    """Apply the opt-in speed and memory options (docs/performance.md) to a pipeline loaded on the CPU or ``device``."""
    check_speed_options(device, compile, offload)
    if channels_last:
        pipe.enable_channels_last()
    if compile:
        pipe.compile_unet()
    if offload == "model":
        pipe.enable_model_cpu_offload(device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device)
    return pipe


def sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + ".json") if target.suffix else target.with_suffix(".json")


def write_sidecar(target: Path, settings: dict, prompt: str, **extra) -> dict:
    """``target``'s JSON sidecar: the pipeline's ``settings`` for one prompt, the output path and ``extra``."""
    from higen.io.files import atomic_write_text

    sidecar = dict(settings, prompt=prompt, negative_prompt=settings["negative_prompt"][0], output=str(target), **extra)
    atomic_write_text(sidecar_path(target), json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def write_output(target: Path, frames, fps: float, fmt: str) -> None:
    from higen.io.video import write_video

    if fmt == "png-file":
        from higen.io.image import write_image

        write_image(target, frames[0])
        return
    write_video(target, frames, fps=fps, format=fmt)
