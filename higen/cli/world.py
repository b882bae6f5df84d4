"""``higen world``: the procedural world. ``export`` writes clips as MP4 files plus a manifest for training;
``captions`` prints a few clips' captions and specs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("world", help="the procedural text-video world: export clips, show captions",
                       description="The procedural world of shapes that move and change over backgrounds (docs/world.md).")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("export", help="write world clips as MP4 files with manifest.csv (path,caption)")
    e.add_argument("output", type=Path, help="output folder")
    _add_clip_arguments(e, n=100)
    e.add_argument("--fps", type=float, help="frame rate of the files (default: frames / 2 s, 8 fps for 16 frames)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing export in the folder")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(run=run_export)
    c = actions.add_parser("captions", help="print clips' captions (and specs with --specs)")
    _add_clip_arguments(c, n=10)
    c.add_argument("--specs", action="store_true", help="also print each clip's spec as JSON")
    c.set_defaults(run=run_captions)


def _add_clip_arguments(p: argparse.ArgumentParser, n: int) -> None:
    p.add_argument("--n", type=int, default=n, help=f"number of clips (default {n})")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="height and width in pixels (default 64)")
    p.add_argument("--height", type=int, help="height (default: --size)")
    p.add_argument("--width", type=int, help="width (default: --size)")
    p.add_argument("--split", choices=("train", "heldout", "all"), default="train",
                   help="train never shows a held-out (colour, shape, direction) triple; heldout shows only those")
    p.add_argument("--seed", type=int, default=0)


def run_export(args: argparse.Namespace) -> int:
    from higen.world.dataset import export

    manifest = export(args.output, args.n, args.frames, args.height or args.size, args.width or args.size, args.seed,
                      args.split, fps=args.fps, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {args.n} clips and {manifest}")
    return 0


def run_captions(args: argparse.Namespace) -> int:
    from higen.world.dataset import world_clip

    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    for i in range(args.n):
        spec, caption = world_clip(args.seed, i, args.split)
        print(caption)
        if args.specs:
            print("  " + json.dumps(spec.to_dict()))
    return 0
