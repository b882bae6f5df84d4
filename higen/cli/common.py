"""What the commands share: devices, loading a model folder, speed options and writing videos with their sidecars."""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import unicodedata
from pathlib import Path

from higen.pipeline.settings import SettingError

OFFLOAD = ("model", "sequential")


def slug(text: str, limit: int = 48) -> str:
    """A file name from a prompt: its letters and digits in any script (so two Japanese prompts differ), ``_`` between."""
    return re.sub(r"\W+", "_", unicodedata.normalize("NFC", text)).strip("_")[:limit] or "video"


def keyframe_path(target: Path) -> Path:
    return target.with_name(target.stem + "_keyframe.png")


def output_files(target: Path, keyframe: bool = False) -> list[Path]:
    """The files one generation writes: the video, its JSON sidecar and, when asked, the keyframe PNG."""
    return [target, sidecar_path(target)] + ([keyframe_path(target)] if keyframe else [])


def _occupied(path: Path) -> bool:
    return path.is_symlink() or path.is_file() or (path.is_dir() and any(path.iterdir()))


def free_name(target: Path, keyframe: bool = False) -> Path:
    """``target``, else ``stem_2``, ``stem_3`` ...: the first name whose files do not exist yet (default names never replace a file)."""
    candidate, n = target, 1
    while any(_occupied(p) for p in output_files(candidate, keyframe)):
        n += 1
        candidate = target.with_name(f"{target.stem}_{n}{target.suffix}")
    return candidate


def refuse_overwrite(target: Path, keyframe: bool = False) -> None:
    """A file the user named is replaced only when asked (``--overwrite``)."""
    existing = next((p for p in output_files(target, keyframe) if _occupied(p)), None)
    if existing is not None:
        raise FileExistsError(f"{existing} exists; add --overwrite to replace it, or choose another -o")


def check_prompt(prompt: str | None) -> str:
    """The prompt without surrounding spaces; an empty one is refused (by the command line and the web page alike)."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValueError("the prompt is empty: describe the video to generate")
    return prompt


def check_writable(path: Path) -> None:
    """Fail before generating anything if the output cannot be written: a file is created and removed where it will go."""
    parent = path if path.is_dir() else path.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PermissionError(f"cannot write to {parent}: {existing} is not a folder")
    try:
        tempfile.TemporaryFile(dir=existing).close()  # os.access says yes to root, even on a read-only file system
    except OSError as err:
        raise PermissionError(f"cannot write to {parent}: {err.strerror or err}") from None


def resolve_device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device name; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("--device mps was asked for but this machine has no Apple GPU (MPS)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: higen runs on cpu, cuda or mps")
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


# ------------------------------------------------------------------------- generation flags
def settings_from_args(args: argparse.Namespace, pipe):
    """The model's generation defaults with the flags given, validated for ``pipe``; a bad value names its flag."""
    return with_flag_names(args, lambda changes: pipe.resolve_settings(**changes))


def with_flag_names(args: argparse.Namespace, resolve):
    """``resolve(changes)`` with the settings the flags give; a :class:`SettingError` comes back naming the flag."""
    changes = dict(
        negative_prompt=args.negative_prompt, frames=args.frames, height=args.height, width=args.width, fps=args.fps,
        spatial_steps=_first(args.spatial_steps, args.steps), temporal_steps=_first(args.temporal_steps, args.steps),
        spatial_guidance=_first(args.spatial_guidance, args.guidance), temporal_guidance=_first(args.temporal_guidance, args.guidance),
        sampler=args.sampler, motion=args.motion, appearance=args.appearance, decode_chunk_size=args.decode_chunk_size,
    )
    try:
        return resolve(changes)
    except SettingError as err:
        message, flag = str(err), err.setting
        for both in ("steps", "guidance"):  # --steps / --guidance set both stages' settings
            if flag.endswith("_" + both) and getattr(args, flag) is None and getattr(args, both) is not None:
                flag = both
        if message.startswith(err.setting):
            message = "--" + flag.replace("_", "-") + message[len(err.setting):]
        raise ValueError(message) from None


def _first(*values):
    return next((v for v in values if v is not None), None)
