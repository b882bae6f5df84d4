"""Training throughput: clips per second and peak memory of ``higen.training.train`` (a script, not a test).

    python benchmarks/train.py                       # tiny model, 4 frames of 32 x 32, on the CPU
    python benchmarks/train.py --released            # the released 1.48 B UNet, 32 frames of 256 x 448 (GPU)
    python benchmarks/train.py --released --batch 2 --appearance-embedder openclip --json out.json

Each configuration runs the real trainer (``train(cfg)``: encoders, conditioning, loss, backward,
AdamW, EMA) on in-memory moving squares for ``--warmup + --steps`` steps and reports the steps after
the warm-up, as the trainer measures them (``clips_per_s`` in ``log.jsonl``: training time only). The
released configuration uses randomly initialised models of the release's sizes (OpenCLIP ViT-H-14 text
tower, SD 2.1 autoencoder, and with ``--appearance-embedder openclip`` the ViT-H-14 image tower): the cost of a
step does not depend on the weights' values. No checkpoints are written.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from higen.benchmark import environment, peak_memory_mb
from higen.io.files import atomic_write_text
from higen.training.conditioning import resolve_appearance_embedder
from higen.training.config import load_config
from higen.training.logging import read_log
from higen.training.synthetic import TINY_RUN, synthetic_factory, tiny_components
from higen.training.trainer import train


def released_components(appearance_embedder: str):
    """Random models of the release's sizes (higen.md §3): UNet 1.48 B, ViT-H-14 text tower, SD 2.1 VAE."""
    from transformers import CLIPTextConfig, CLIPVisionConfig

    from higen.diffusion.schedule import NoiseSchedule
    from higen.encoders.autoencoder import VideoAutoencoder
    from higen.encoders.histogram import HistogramEmbedder
    from higen.encoders.image import CLIPImageEmbedder
    from higen.encoders.text import CLIPTextEncoder
    from higen.models.config import UNetConfig
    from higen.models.unet import HiGenUNet
    from higen.pipeline.settings import GenerationSettings
    from higen.tiny import tiny_clip_tokenizer
    from higen.training.components import Components

    tokenizer = tiny_clip_tokenizer()  # the vocabulary size does not change the cost of a step
    vocab = len(tokenizer)
    text = CLIPTextEncoder.from_config(CLIPTextConfig(
        vocab_size=vocab, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=1024, pad_token_id=0, bos_token_id=vocab - 2, eos_token_id=vocab - 1,
    ), tokenizer)
    if appearance_embedder == "openclip":
        embedder = CLIPImageEmbedder.from_config(CLIPVisionConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
            patch_size=14, projection_dim=1024, hidden_act="gelu",
        ))
    else:
        embedder = HistogramEmbedder()
    return Components(HiGenUNet(UNetConfig()), text, VideoAutoencoder.from_config(), embedder, NoiseSchedule(), GenerationSettings())


def bench(name: str, components, overrides: list[str], warmup: int, steps: int, device: torch.device) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(None, [*TINY_RUN, f"train.output_dir={out}", f"train.max_steps={warmup + steps}", "log.every=1",
                                 "checkpoint.every=0", "checkpoint.export_model=false", "ema.enabled=true", *overrides])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        train(cfg, components, synthetic_factory(length=64))
        wall = time.perf_counter() - start
        records = read_log(Path(out) / "log.jsonl")[warmup:]
    batch = cfg.train.batch_size * cfg.train.grad_accum
    seconds = sum(batch / r["clips_per_s"] for r in records)
    params = sum(p.numel() for p in components.unet.parameters())
    return {
        "name": name, "device": str(device), "precision": cfg.train.precision, "batch": batch, "frames": cfg.data.frames,
        "height": cfg.data.height, "width": cfg.data.width, "unet_parameters": params,
        "gradient_checkpointing": cfg.train.gradient_checkpointing, "appearance_embedder": resolve_appearance_embedder(cfg.cues),
        "steps": len(records), "seconds_per_step": seconds / len(records), "clips_per_s": batch * len(records) / seconds,
        "peak_memory_mb": peak_memory_mb(device), "wall_seconds": wall, "final_loss": records[-1]["loss"],
    }


def table(rows: list[dict]) -> str:
    head = f"{'config':<10} {'device':<8} {'prec':<5} {'batch':>5} {'frames x size':>15} {'UNet params':>12} {'s/step':>8} {'clips/s':>8} {'peak MB':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        size = f"{r['frames']} x {r['height']}x{r['width']}"
        lines.append(f"{r['name']:<10} {r['device']:<8} {r['precision']:<5} {r['batch']:>5} {size:>15} {r['unet_parameters']:>12,} "
                     f"{r['seconds_per_step']:>8.3f} {r['clips_per_s']:>8.2f} {r['peak_memory_mb']:>9.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--released", action="store_true", help="also the released configuration (needs a CUDA GPU with ~40+ GB)")
    p.add_argument("--steps", type=int, default=10, help="measured steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="steps run before measuring (default 3)")
    p.add_argument("--batch", type=int, default=None, help="clips per step (default: 2 tiny, 1 released)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None, help="default: fp32 on CPU, bf16 on GPU")
    p.add_argument("--appearance-embedder", choices=("histogram", "openclip"), default="histogram", help="released: the appearance embedder")
    p.add_argument("--no-checkpointing", action="store_true", help="released: no gradient checkpointing")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--json", type=Path, help="write the results here (atomically)")
    args = p.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu" if args.device == "auto" else args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    common = [f"train.device={device.type}", f"train.precision={precision}", "cues.image_probability=0"]
    rows = [bench("tiny", tiny_components(dropout=0.0), [*common, f"train.batch_size={args.batch or 2}"], args.warmup, args.steps, device)]
    print(table(rows), flush=True)
    if args.released:
        if device.type != "cuda":
            print("--released needs a CUDA GPU (the 1.48 B UNet with AdamW and EMA takes ~30 GB before activations)", file=sys.stderr)
        else:
            overrides = [*common, f"train.batch_size={args.batch or 1}", "data.frames=32", "data.height=256", "data.width=448",
                         f"train.gradient_checkpointing={not args.no_checkpointing}", f"cues.appearance_embedder={args.appearance_embedder}",
                         "optim.lr=3e-5", "ema.decay=0.9999"]
            if args.appearance_embedder == "openclip":
                overrides.append("cues.open_clip=random-weights")  # satisfies validation; the components are injected
            rows.append(bench("released", released_components(args.appearance_embedder), overrides, args.warmup, args.steps, device))
            print(table(rows[-1:]).split("\n", 2)[-1], flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps({"environment": environment(device), "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
