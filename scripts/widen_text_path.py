"""Copy a model folder with its UNet given a new, zero-initialised text path: a text passthrough
(``UNetConfig.text_passthrough``, the default) or a pooled-text embedding (``UNetConfig.text_embedding``).

The new path's last layer starts at zero, so the copy computes what the source does (the passthrough adds as many
zero context tokens as the text encoder gives; the embedding adds zero to every frame's embedding); a fine-tune
from the copy (``model.init=folder``) then learns it (docs/bundled_model.md, "Why direction is at chance"):

    python scripts/widen_text_path.py higen/assets/bundled_model runs/eval/passthrough_init
    python scripts/widen_text_path.py higen/assets/bundled_model runs/eval/text_embedding_init --add text-embedding
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch

from higen.models.unet import HiGenUNet


# --add value -> (UNetConfig field, the new module's name in the state dict)
PATHS = {"passthrough": ("text_passthrough", "text_resampler.passthrough"), "text-embedding": ("text_embedding", "text_embed")}


def widen(source: Path, out: Path, add: str = "passthrough") -> HiGenUNet:
    if add not in PATHS:
        raise ValueError(f"unknown text path {add!r}; choose from {sorted(PATHS)}")
    field, prefix = PATHS[add]
    if out.exists():
        raise FileExistsError(f"{out} exists")
    unet = HiGenUNet.from_pretrained(source / "unet", dtype=torch.float32)
    if getattr(unet.config, field):
        raise ValueError(f"{source}: its UNet already has {field}")
    widened = HiGenUNet(dataclasses.replace(unet.config, **{field: True}))
    missing, unexpected = widened.load_state_dict(unet.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(prefix + ".") for k in missing), (missing, unexpected)
    # zero the new module's last (or only) linear map, whatever its own init did
    last = widened.get_submodule(prefix)
    last = last[-1] if isinstance(last, torch.nn.Sequential) else last
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("unet"))
    widened.save_pretrained(out / "unet")  # fp32: the fine-tune's master weights
    return widened


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="a higen model folder")
    p.add_argument("out", type=Path, help="the folder to write (must not exist)")
    p.add_argument("--add", choices=sorted(PATHS), default="passthrough", help="the text path to add (default: passthrough)")
    args = p.parse_args()
    try:
        widen(args.source, args.out, args.add)
    except (OSError, ValueError) as error:  # a missing or unreadable folder, an existing output, a widened source
        raise SystemExit(f"widen_text_path: {error}") from None
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
