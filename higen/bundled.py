"""The small HiGen model shipped inside the package (trained here on the procedural world: docs/bundled_model.md).

``python -m higen.bundled install MODEL_FOLDER`` copies a trained model folder into the package, storing the
UNet and the autoencoder in float16 (the repository keeps the weights under 30 MB); they still run in float32
(``HiGenPipeline.from_pretrained``'s default compute dtype).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "assets" / "bundled_model"


def bundled_model_path() -> Path:
    """The bundled model folder; a clear error if this installation has none."""
    if not (BUNDLED_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            f"no model was named and the bundled model is not installed at {BUNDLED_DIR}; pass --model FOLDER"
        )
    return BUNDLED_DIR


def install(model_folder: str | Path, target: str | Path = BUNDLED_DIR) -> Path:
    """Write ``model_folder`` (a trained model folder) to ``target`` with fp16 weights, replacing what is there."""
    import torch

    from higen.encoders.autoencoder import VideoAutoencoder
    from higen.pipeline.pipeline import HiGenPipeline, write_model_folder

    pipe = HiGenPipeline.from_pretrained(model_folder)
    autoencoder = VideoAutoencoder(pipe.autoencoder.vae.to(torch.float16))
    target = Path(target)
    staging = target.with_name(f".{target.name}-new")
    if staging.exists():
        shutil.rmtree(staging)
    write_model_folder(staging, pipe.unet, pipe.text_encoder, autoencoder, pipe.schedule, pipe.defaults, dtype=torch.float16)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "install":
        print("usage: python -m higen.bundled install MODEL_FOLDER", file=sys.stderr)
        return 2
    target = install(argv[1])
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"installed {argv[1]} as the bundled model: {target} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
