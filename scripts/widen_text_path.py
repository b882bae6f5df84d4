"""Copy a model folder with its UNet given a text passthrough (``UNetConfig.text_passthrough``), zero-initialised.

The new linear map starts at zero, so the copy's context is the resampler's tokens plus as many zero tokens as
the text encoder gives; a fine-tune from the copy (``model.init=folder``) then learns the map
(docs/bundled_model.md, "Why direction is at chance"):

    python scripts/widen_text_path.py higen/assets/bundled_model runs/eval/passthrough_init
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch

from higen.models.unet import HiGenUNet


def widen(source: Path, out: Path) -> HiGenUNet:
    if out.exists():
        raise FileExistsError(f"{out} exists")
    unet = HiGenUNet.from_pretrained(source / "unet", dtype=torch.float32)
    if unet.config.text_passthrough:
        raise ValueError(f"{source}: its UNet already has a text passthrough")
    widened = HiGenUNet(dataclasses.replace(unet.config, text_passthrough=True))
    missing, unexpected = widened.load_state_dict(unet.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["text_resampler.passthrough.bias", "text_resampler.passthrough.weight"], missing
    torch.nn.init.zeros_(widened.text_resampler.passthrough.weight)
    torch.nn.init.zeros_(widened.text_resampler.passthrough.bias)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("unet"))
    widened.save_pretrained(out / "unet")  # fp32: the fine-tune's master weights
    return widened


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="a higen model folder")
    p.add_argument("out", type=Path, help="the folder to write (must not exist)")
    args = p.parse_args()
    try:
        widen(args.source, args.out)
    except (OSError, ValueError) as error:  # a missing or unreadable folder, an existing output, a widened source
        raise SystemExit(f"widen_text_path: {error}") from None
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
