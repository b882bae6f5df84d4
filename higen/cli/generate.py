"""``higen generate``: prompt(s) -> video file(s) plus a JSON sidecar with every setting and the seed."""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from higen.cli.common import (OFFLOAD, check_prompt, check_speed_options, check_writable, free_name, keyframe_path, load_pipeline, refuse_overwrite,
                              resolve_device, settings_from_args, slug, speed_options, with_flag_names, write_output,
                              write_sidecar)
from higen.pipeline.settings import SEED_LIMIT, GenerationSettings

FORMATS = ("mp4", "gif", "png")


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate videos from text", description="Generate videos from text with a HiGen model folder.")
    p.add_argument("prompt", nargs="?", help="the text prompt")
    p.add_argument("--prompts-file", type=Path, help="a text file of 'prompt|seed' lines ('#' lines skipped); -o is then a folder")
    p.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    p.add_argument("-o", "--output", type=Path, help="output file (.mp4, .gif, or a folder for PNG frames)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse -o that exists; default names get a counter)")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from -o's suffix, else mp4)")
    p.add_argument("--negative-prompt", help="text of the unconditional branch (default '')")
    p.add_argument("--frames", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--fps", type=float, help="frame rate of the written video (default: the model's)")
    p.add_argument("--steps", type=int, help="sampler steps of both stages")
    p.add_argument("--spatial-steps", type=int)
    p.add_argument("--temporal-steps", type=int)
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale of both stages")
    p.add_argument("--spatial-guidance", type=float)
    p.add_argument("--temporal-guidance", type=float)
    p.add_argument("--sampler", help="ddim (the release's), dpm++ or unipc")
    p.add_argument("--motion", type=float, help="motion cue: larger means more motion")
    p.add_argument("--appearance", type=float, help="appearance factor: 0 keeps appearance fixed, larger changes it more")
    p.add_argument("--seed", type=int, help="random seed (default: drawn and recorded in the sidecar)")
    p.add_argument("--keyframe", type=Path, help="an image to use as the spatial prior (image-to-video)")
    p.add_argument("--decode-chunk-size", type=int, help="frames decoded at once by the autoencoder")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32", help="the UNet's and autoencoder's weights (sampling stays fp32)")
    p.add_argument("--channels-last", action="store_true", help="run the UNet channels_last (faster convolutions; docs/performance.md)")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet: a slow first video, faster ones after")
    p.add_argument("--offload", choices=OFFLOAD, help="keep weights in CPU memory on small GPUs: whole components (model) or layer by layer (sequential, slow)")
    p.add_argument("--save-keyframe", action="store_true", help="also write the spatial prior keyframe as PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def parse_prompts_file(path: Path) -> list[tuple[str, int | None]]:
    """``prompt|seed`` lines (seed optional); blank and ``#`` lines skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    items = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        prompt, sep, seed = line.rpartition("|")
        if not sep:
            prompt, seed = seed, ""
        if seed.strip() and not seed.strip().lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: seed {seed.strip()!r} is not an integer")
        if not prompt.strip():
            raise ValueError(f"{path}:{n}: empty prompt")
        if seed.strip() and not 0 <= int(seed) < SEED_LIMIT:
            raise ValueError(f"{path}:{n}: seed {seed.strip()} is outside 0 to 2**64 - 1")
        items.append((prompt.strip(), int(seed) if seed.strip() else None))
    if not items:
        raise ValueError(f"{path} has no prompts")
    return items


def output_format(path: Path | None, fmt: str | None) -> str:
    """--format, else -o's suffix (.mp4, .gif; none: mp4, or PNG frames for an existing folder). A suffix that
    is not a video file this command writes, or that contradicts --format, is refused rather than mislabelled."""
    suffix = path.suffix.lower().lstrip(".") if path is not None else ""
    if suffix and suffix not in ("mp4", "gif") and fmt != "png":
        raise ValueError(f"cannot write {path}: .{suffix} videos are not supported; use .mp4, .gif, or a folder with --format png")
    if suffix in ("mp4", "gif") and fmt is not None and fmt != suffix:
        raise ValueError(f"-o {path} does not match --format {fmt}")
    if fmt:
        return fmt
    if suffix:
        return suffix
    return "png" if path is not None and path.is_dir() else "mp4"


def run(args: argparse.Namespace) -> int:
    # Everything that can be checked without the model first: a bad flag costs no loading and no sampling.
    if (args.prompt is None) == (args.prompts_file is None):
        raise ValueError("give either a prompt or --prompts-file")
    if args.seed is not None and not 0 <= args.seed < SEED_LIMIT:
        raise ValueError(f"--seed must be a whole number from 0 to 2**64 - 1, got {args.seed}")
    with_flag_names(args, lambda changes: GenerationSettings().replace(**changes))
    jobs = parse_prompts_file(args.prompts_file) if args.prompts_file else [(check_prompt(args.prompt), args.seed)]
    if args.prompts_file and args.seed is not None:
        jobs = [(p, s if s is not None else args.seed + i) for i, (p, s) in enumerate(jobs)]
    jobs = [(p, s if s is not None else random.randrange(2**31)) for p, s in jobs]  # drawn now: default names carry it
    fmt = output_format(None if args.prompts_file else args.output, args.format)
    targets = plan_outputs(args, jobs, fmt)
    for target in targets:
        check_writable(target)
    keyframe = None
    if args.keyframe is not None:
        from higen.io.image import read_image

        keyframe = read_image(args.keyframe)

    device = resolve_device(args.device)
    check_speed_options(device, args.compile, args.offload)
    pipe, model_path = load_pipeline(args.model, "cpu" if args.offload else device, args.dtype)
    speed_options(pipe, device, args.channels_last, args.compile, args.offload)
    settings = settings_from_args(args, pipe)
    for (prompt, seed), target in zip(jobs, targets):
        start = time.perf_counter()
        with _progress(not args.no_progress, prompt) as callback:
            out = pipe(prompt, settings=settings, seed=seed, keyframe=keyframe, callback=callback)
        elapsed = time.perf_counter() - start
        write_output(target, out.video[0], settings.fps, fmt)
        if args.save_keyframe:
            write_output(keyframe_path(target), out.keyframe[0][None], settings.fps, "png-file")
        write_sidecar(target, out.settings, prompt, model=str(model_path), format=fmt, device=str(device),
                      dtype=args.dtype, channels_last=args.channels_last, compile=args.compile, offload=args.offload,
                      keyframe=str(args.keyframe) if args.keyframe else None, seconds=round(elapsed, 3))
        print(f"wrote {target} ({out.video.shape[1]} frames, {out.video.shape[3]}x{out.video.shape[2]}, seed {seed}, {elapsed:.1f} s)")
    return 0


def plan_outputs(args, jobs, fmt: str) -> list[Path]:
    """One path per job. A file named by -o is replaced only with --overwrite; default names (prompt, seed;
    a prompts file's line number and prompt) get a counter rather than replace an earlier video."""
    suffix = {"mp4": ".mp4", "gif": ".gif", "png": ""}[fmt]
    if args.output is not None and not args.prompts_file:
        if not args.overwrite:
            refuse_overwrite(args.output, args.save_keyframe)
        return [args.output]
    if args.prompts_file:
        folder = args.output or Path("outputs")
        names = [folder / f"{i:03d}_{slug(p)}{suffix}" for i, (p, _) in enumerate(jobs)]
    else:
        prompt, seed = jobs[0]
        names = [Path("outputs") / f"{slug(prompt)}_{seed}{suffix}"]
    return names if args.overwrite else [free_name(n, args.save_keyframe) for n in names]


class _progress:
    """A tqdm bar over both sampling stages and decoding."""

    def __init__(self, enabled: bool, prompt: str):
        self.enabled, self.prompt, self.bar = enabled, prompt, None

    def __enter__(self):
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        def callback(stage: str, step: int, total: int) -> None:
            if self.bar is None or self.bar.desc != stage:
                if self.bar is not None:
                    self.bar.close()
                self.bar = tqdm(total=total, desc=stage, unit="step", leave=False)
            self.bar.n = step
            self.bar.refresh()

        return callback

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
