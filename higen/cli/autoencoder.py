"""``higen train-autoencoder``: train a small latent autoencoder for a model of our own (docs/bundled_model.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-autoencoder",
        help="train a small latent autoencoder (AutoencoderKL) on a data source",
        description=(
            "Train a diffusers AutoencoderKL on frames of the configured data (default: the procedural world at 64x64) and "
            "save it as OUTPUT_DIR/autoencoder, with its latent scale set from held-out frames. Keys: model.*, data.*, train.*."
        ),
    )
    p.add_argument("--config", type=Path, help="YAML config (sections model, data, train); omitted: all defaults")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=100")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from higen.training.autoencoder import load_autoencoder_config, train_autoencoder

    report = train_autoencoder(load_autoencoder_config(args.config, args.overrides))
    held = report["heldout"]
    print(f"autoencoder: {report['parameters']:,} parameters, {report['steps']} steps in {report['seconds']:.0f} s; "
          f"held-out PSNR {held['psnr']:.2f} dB; scaling_factor {report['scaling_factor']:.4f}")
    return 0
