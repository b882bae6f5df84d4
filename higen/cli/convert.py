"""``higen convert-vgen``: the released (VGen) HiGen checkpoint -> a higen model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = ("fp32", "fp16", "bf16")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert-vgen",
        help="convert a VGen HiGen checkpoint into a model folder",
        description=(
            "Convert a VGen UNetSD_HiGen checkpoint (.pth read with weights_only=True, or .safetensors) into a higen "
            "model folder. With --open-clip and --sd-checkpoint the folder is a complete model for `higen generate`."
        ),
    )
    p.add_argument("src", type=Path, help="VGen UNet checkpoint, e.g. cvpr2024.t2v.e003.non_ema_0725000.pth")
    p.add_argument("dst", type=Path, help="output model folder (must not exist, or be empty)")
    p.add_argument("--vgen-config", type=Path, help="JSON of the VGen UNet constructor kwargs (default: the release's)")
    p.add_argument("--open-clip", type=Path, help="open_clip_pytorch_model.bin (OpenCLIP ViT-H-14): the text encoder")
    p.add_argument("--tokenizer", type=Path, help="CLIP tokenizer folder or bpe_simple_vocab_16e6.txt.gz (if open_clip is not installed)")
    p.add_argument("--sd-checkpoint", type=Path, help="v2-1_512-ema-pruned.ckpt (Stable Diffusion 2.1): the autoencoder")
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help="storage dtype of the converted UNet")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from higen.io.checkpoint import load_checkpoint_file
    from higen.models.vgen import read_vgen_kwargs, unet_from_vgen_state_dict
    from higen.pipeline.pipeline import write_model_folder

    if args.dst.exists() and (not args.dst.is_dir() or any(args.dst.iterdir())):
        raise FileExistsError(f"{args.dst} exists and is not an empty folder")
    kwargs = read_vgen_kwargs(args.vgen_config)
    state = load_checkpoint_file(args.src)
    unet = unet_from_vgen_state_dict(state, kwargs)
    del state
    text_encoder = autoencoder = None
    if args.open_clip is not None:
        from higen.encoders.text import CLIPTextEncoder

        text_encoder = CLIPTextEncoder.from_open_clip_checkpoint(args.open_clip, tokenizer=args.tokenizer)
    if args.sd_checkpoint is not None:
        from higen.encoders.autoencoder import load_sd_autoencoder

        autoencoder = load_sd_autoencoder(args.sd_checkpoint)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    write_model_folder(args.dst, unet, text_encoder, autoencoder, dtype=dtype)
    n = unet.num_parameters()
    parts = "UNet" + (" + text encoder" if text_encoder is not None else "") + (" + autoencoder" if autoencoder is not None else "")
    print(f"converted {args.src} -> {args.dst} ({parts}; UNet {n:,} parameters)")
    if text_encoder is None or autoencoder is None:
        print("note: add --open-clip and --sd-checkpoint for a folder that `higen generate --model` can use")
    return 0
