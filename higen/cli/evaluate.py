"""``higen evaluate``: judge a model on the procedural world (default), the judge on ground-truth clips
(``--ground-truth``), or existing videos (``--videos FOLDER``). Prints a table; ``-o`` writes the JSON report."""

from __future__ import annotations

import argparse
from pathlib import Path

SWEEP_POINTS = 5


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="judge a model (or ground truth, or video files) on the procedural world",
                       description="Generate videos for world prompts and judge colour, shape, motion, background, appearance "
                                   "change and stability from the frames alone (docs/world.md).")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--ground-truth", action="store_true", help="judge rendered world clips instead of a model (judge validation)")
    mode.add_argument("--videos", type=Path, metavar="FOLDER",
                      help="judge the videos in FOLDER (prompts from .json sidecars with a 'prompt' key, prompts.csv or manifest.csv)")
    p.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    p.add_argument("--n", type=int, help="number of prompts / clips (default: 30 for a model, 500 for --ground-truth)")
    p.add_argument("--split", choices=("train", "heldout", "all"), help="world split (default: heldout for a model, all for --ground-truth)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="height and width (default 64)")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--noise", type=float, default=0.0, help="--ground-truth: Gaussian noise added, in levels of 255")
    p.add_argument("--autoencoder", type=Path, help="--ground-truth: judge clips after a round trip through this autoencoder folder")
    p.add_argument("--blur", type=float, default=0.0, help="--ground-truth: Gaussian blur applied first, sigma in pixels")
    p.add_argument("--batch-size", type=int, default=1, help="prompts generated together")
    p.add_argument("--steps", type=int, help="sampler steps of both stages")
    p.add_argument("--sampler", help="ddim, dpm++ or unipc")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale of both stages")
    p.add_argument("--motion", type=float, help="motion cue for the evaluation videos (default: the model's)")
    p.add_argument("--appearance", type=float, help="appearance factor for the evaluation videos (default: the model's)")
    p.add_argument("--motion-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help=f"motion sweep over {SWEEP_POINTS} values from LOW to HIGH (default: 0 to twice the model's motion)")
    p.add_argument("--appearance-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help=f"appearance sweep over {SWEEP_POINTS} values (default: 0 to twice the model's appearance)")
    p.add_argument("--sweep-prompts", type=int, default=3, help="prompts per sweep (default 3)")
    p.add_argument("--no-sweeps", action="store_true", help="skip the motion and appearance sweeps")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32")
    p.add_argument("-o", "--output", type=Path, help="write the JSON report here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from higen.world import evaluate as ev

    if args.output is not None:
        from higen.cli.common import check_writable

        check_writable(args.output)
    height, width = args.height or args.size, args.width or args.size
    progress = not args.no_progress
    if args.ground_truth:
        report = ev.evaluate_ground_truth(args.n or 500, args.seed, args.frames, height, width, args.split or "all",
                                          noise=args.noise, blur=args.blur, progress=progress,
                                          autoencoder=_autoencoder(args.autoencoder))
    elif args.videos is not None:
        report = ev.evaluate_videos(args.videos, progress=progress)
    else:
        report = _evaluate_model(args, height, width, progress)
    print(ev.format_report(report))
    if args.output is not None:
        ev.write_report(args.output, report)
        print(f"wrote {args.output}")
    return 0


def _evaluate_model(args: argparse.Namespace, height: int, width: int, progress: bool) -> dict:
    import numpy as np

    from higen.cli.common import load_pipeline, resolve_device
    from higen.world.evaluate import evaluate_model

    pipe, _ = load_pipeline(args.model, resolve_device(args.device), args.dtype)
    motion_values = appearance_values = None
    if not args.no_sweeps:
        low, high = args.motion_range or (0.0, 2.0 * pipe.defaults.motion)
        motion_values = np.linspace(low, high, SWEEP_POINTS).tolist()
        low, high = args.appearance_range or (0.0, 2.0 * pipe.defaults.appearance)
        appearance_values = np.linspace(low, high, SWEEP_POINTS).tolist()
    return evaluate_model(
        pipe, args.n or 30, args.split or "heldout", args.seed, args.frames, height, width, batch_size=args.batch_size,
        motion_values=motion_values, appearance_values=appearance_values, sweep_prompts=args.sweep_prompts, progress=progress,
        spatial_steps=args.steps, temporal_steps=args.steps, sampler=args.sampler, spatial_guidance=args.guidance,
        temporal_guidance=args.guidance, motion=args.motion, appearance=args.appearance,
    )


def _autoencoder(folder):
    if folder is None:
        return None
    from higen.encoders.autoencoder import VideoAutoencoder

    return VideoAutoencoder.from_pretrained(folder)
