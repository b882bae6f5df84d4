"""The small HiGen model shipped inside the package (trained here on the procedural world: docs/bundled_model.md).

``python -m higen.bundled install MODEL_FOLDER [key=value ...]`` copies a trained model folder into the package,
storing the UNet and the autoencoder in float16 (the repository keeps the weights under 30 MB); they still run
in float32 (``HiGenPipeline.from_pretrained``'s default compute dtype). ``key=value`` pairs replace generation
defaults (``GenerationSettings`` fields: ``sampler=dpm++ spatial_steps=25 motion=20`` ...), values read as YAML.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from higen.assets import BUNDLED_DIR
from higen.encoders.autoencoder import VideoAutoencoder
from higen.pipeline.pipeline import HiGenPipeline, write_model_folder


def install(model_folder: str | Path, target: str | Path = BUNDLED_DIR, defaults: dict | None = None) -> Path:
    """Write ``model_folder`` (a trained model folder) to ``target`` with fp16 weights, replacing what is there.

    ``defaults`` replaces generation defaults of the folder's ``pipeline.json``."""
    import torch

    pipe = HiGenPipeline.from_pretrained(model_folder)
    if defaults:
        pipe.defaults = type(pipe.defaults).from_dict({**dataclasses.asdict(pipe.defaults), **defaults})
    autoencoder = VideoAutoencoder(pipe.autoencoder.vae.to(torch.float16))
    write_model_folder(target, pipe.unet, pipe.text_encoder, autoencoder, pipe.schedule, pipe.defaults,
                       dtype=torch.float16, replace=True)
    return Path(target)


def parse_defaults(pairs: list[str]) -> dict:
    """``key=value`` strings to a dict, values parsed as YAML (``25`` -> int, ``dpm++`` -> str)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def _main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "install":
        print("usage: python -m higen.bundled install MODEL_FOLDER [key=value ...]", file=sys.stderr)
        return 2
    try:
        target = install(argv[1], defaults=parse_defaults(argv[2:]))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"installed {argv[1]} as the bundled model: {target} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
