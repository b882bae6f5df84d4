"""``higen bench``: the inference benchmark (a script that prints numbers, not a test)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark UNet and generation speed against a matmul ceiling and diffusers' UNet3D")
    p.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    p.add_argument("--released", action="store_true", help="the released configuration with random weights (32 x 256 x 448; use a GPU)")
    p.add_argument("--frames", type=int, help="frames (default: the model's)")
    p.add_argument("--height", type=int, help="pixels (default: the model's)")
    p.add_argument("--width", type=int, help="pixels (default: the model's)")
    p.add_argument("--batch", type=int, default=2, help="UNet batch (2 = both guidance branches of one video)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-peer", action="store_true", help="skip diffusers' UNet3D")
    p.add_argument("--no-generate", action="store_true", help="skip end-to-end generation")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from higen import benchmark as B
    from higen.cli.generate import resolve_device
    from higen.io.files import atomic_write_text

    device = resolve_device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    pipe = None
    if args.released:
        from higen.models.unet import HiGenUNet
        from higen.models.vgen import unet_config_from_vgen_kwargs

        config = unet_config_from_vgen_kwargs(None)
        unet = HiGenUNet(config).to(device).eval()
        frames, height, width, vae_factor = args.frames or 32, args.height or 256, args.width or 448, 8
    else:
        from higen.cli.generate import load_pipeline

        pipe, _ = load_pipeline(args.model, device, "fp32")
        unet, config = pipe.unet, pipe.unet.config
        d = pipe.defaults
        frames, height, width = args.frames or d.frames, args.height or d.height, args.width or d.width
        vae_factor = pipe.autoencoder.downscale_factor
    latent_hw = (height // vae_factor, width // vae_factor)
    rows = [
        B.bench_unet(unet, 1, latent_hw, args.batch, device, dtype, args.repeats),
        B.bench_unet(unet, frames, latent_hw, args.batch, device, dtype, args.repeats),
    ]
    if not args.no_peer:
        rows.append(B.bench_peer(config, frames, latent_hw, args.batch, device, dtype, args.repeats))
        ours, peer = rows[1], rows[2]
        print(f"time per FLOP, higen / diffusers UNet3D: {(ours.seconds / ours.flops) / (peer.seconds / peer.flops):.2f} "
              f"(higen {ours.flops / 1e9:.1f} GFLOP in {ours.seconds:.3f} s; UNet3D {peer.flops / 1e9:.1f} GFLOP in {peer.seconds:.3f} s)")
    if pipe is not None and not args.no_generate:
        rows += B.bench_pipeline(pipe, "a red circle moving left on a black background", device, frames=frames, height=height, width=width)
    ceiling = B.matmul_ceiling(device, dtype)
    print(f"{frames} frames, {height}x{width} pixels, latents {latent_hw[0]}x{latent_hw[1]}, batch {args.batch}, {args.dtype}, {B.environment(device)}")
    print(B.format_table(rows, ceiling))
    if args.json:
        atomic_write_text(args.json, B.to_json(rows, ceiling, B.environment(device)) + "\n")
    return 0
