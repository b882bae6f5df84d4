"""``higen train``, ``higen train-cache`` and ``higen train-export``: thin layers over :mod:`higen.training`.

Several processes: ``torchrun --nproc_per_node=8 -m higen train --config FILE.yaml`` (see docs/training.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune a HiGen model from a YAML config",
        description=(
            "Train HiGen. Settings come from --config (YAML) and key=value overrides, e.g. optim.lr=1e-4 train.max_steps=500; "
            "see docs/training.md for every key. Launch several processes with torchrun."
        ),
    )
    p.add_argument("--config", type=Path, help="training config (YAML); omitted: all defaults")
    p.add_argument("--resume", action="store_const", const="auto",
                   help="continue from the latest checkpoint in train.output_dir (train.resume=auto)")
    p.add_argument("--resume-from", dest="resume", type=str, metavar="PATH",
                   help="continue from this checkpoint folder (or a run folder: its latest checkpoint)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=100")
    p.set_defaults(run=run_train)

    c = sub.add_parser(
        "train-cache",
        help="encode a dataset once (latents, text, cues) for data.source=cache",
        description=(
            "Encode the data a training config names (data.source manifest, webdataset or world) with its encoders into a "
            "latent cache; train from it with data.source=cache data.videos=OUT (the same other settings)."
        ),
    )
    c.add_argument("out", type=Path, help="cache folder to write (must not exist, or be empty, unless --overwrite)")
    c.add_argument("--config", type=Path, help="the training config whose data and encoders to use")
    c.add_argument("--kind", choices=("video", "image"), default="video", help="which stream to encode (default: video)")
    c.add_argument("--batch-size", type=int, default=4, help="samples encoded at once (default: 4)")
    c.add_argument("--shard-size", type=int, default=256, help="samples per shard file (default: 256)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing cache folder")
    c.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    c.set_defaults(run=run_cache)

    e = sub.add_parser(
        "train-export",
        help="write a training checkpoint as a model folder",
        description=(
            "Write the model folder of a training checkpoint (EMA weights unless --no-ema), for higen generate / evaluate; "
            "generation.KEY=VALUE items replace the generation defaults (pipeline.json) the checkpoint's config gives."
        ),
    )
    e.add_argument("checkpoint", type=Path, help="a checkpoints/step_* folder, or a run's output folder (its latest checkpoint)")
    e.add_argument("out", type=Path, help="model folder to write (replaced if it exists)")
    e.add_argument("--no-ema", action="store_true", help="the raw weights instead of the EMA ones")
    e.add_argument("overrides", nargs="*", metavar="generation.KEY=VALUE",
                   help="generation defaults to write instead of the checkpoint config's, e.g. generation.motion=30")
    e.set_defaults(run=run_export)


def _config(args: argparse.Namespace):
    from higen.training.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "resume", None) is not None:
        overrides.append(f"train.resume={args.resume}")
    return load_config(args.config, overrides)


def run_train(args: argparse.Namespace) -> int:
    from higen.training.trainer import train

    result = train(_config(args))
    if result.model_dir is not None:
        print(f"trained to step {result.step}; model folder: {result.model_dir}")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    from higen.training.cache import build_training_cache

    if args.batch_size < 1 or args.shard_size < 1:
        raise ValueError("--batch-size and --shard-size must be at least 1")
    out = build_training_cache(_config(args), args.out, args.kind, batch_size=args.batch_size, shard_size=args.shard_size,
                               overwrite=args.overwrite)
    print(f"latent cache written: {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from higen.training.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out, use_ema=not args.no_ema, overrides=args.overrides)
    print(f"model folder written: {out}")
    return 0
