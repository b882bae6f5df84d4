"""``higen bench``: the inference benchmark (a script that prints numbers, not a test). docs/performance.md."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark UNet and generation speed against a matmul ceiling, diffusers' UNet3D and our fp32 eager baseline")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    src.add_argument("--preset", choices=("bundled-like", "released"), help="random weights of a known shape instead of a folder")
    src.add_argument("--released", action="store_true", help="same as --preset released (32 x 256 x 448; use a GPU)")
    p.add_argument("--frames", type=int, help="frames (default: the model's)")
    p.add_argument("--height", type=int, help="pixels (default: the model's)")
    p.add_argument("--width", type=int, help="pixels (default: the model's)")
    p.add_argument("--batch", type=int, default=2, help="UNet batch (2 = both guidance branches of one video)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    g = p.add_argument_group("the optimised path (default: the fp32 eager baseline itself)")
    g.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="UNet and autoencoder weights")
    g.add_argument("--channels-last", action="store_true", help="channels_last activations")
    g.add_argument("--compile", action="store_true", help="torch.compile the UNet (fullgraph)")
    g.add_argument("--sdpa", choices=("auto", "flash", "efficient", "math"), default="auto", help="allow only this attention kernel")
    g.add_argument("--compare", action="store_true", help="also run the plain fp32 eager baseline, interleaved with the optimised path")
    p.add_argument("--offload", nargs="+", choices=("model", "sequential"), default=(), help="also generate with these CPU offloads (GPU only)")
    p.add_argument("--rounds", "--repeats", dest="rounds", type=int, default=5, help="timed rounds of the UNet calls (median reported)")
    p.add_argument("--generate-rounds", type=int, default=1, help="timed rounds of end-to-end generation")
    p.add_argument("--steps", type=int, help="sampler steps of both stages (default: the model's)")
    p.add_argument("--no-peer", action="store_true", help="skip diffusers' UNet3D")
    p.add_argument("--no-generate", action="store_true", help="skip end-to-end generation and decoding")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    p.add_argument("--markdown", type=Path, help="also write the results as a Markdown table (benchmarks/results/README.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from higen import benchmark as B
    from higen.cli.common import resolve_device
    from higen.io.files import atomic_write_text

    for name in ("rounds", "generate_rounds", "batch", "steps", "threads", "frames", "height", "width"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    device = resolve_device(args.device)
    if args.offload and device.type != "cuda":
        raise ValueError("--offload measures GPU memory with weights kept in CPU memory; it needs --device cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    variant = B.Variant(args.dtype, args.channels_last, args.compile, args.sdpa)
    variants = [B.BASELINE, variant] if args.compare and variant != B.BASELINE else [variant]

    pipe, source = B.load_benchmark_pipeline(args.model, "released" if args.released else args.preset, device)
    settings = pipe.resolve_settings(frames=args.frames, height=args.height, width=args.width, spatial_steps=args.steps, temporal_steps=args.steps)
    frames = settings.frames
    latent_hw = (settings.height // pipe.autoencoder.downscale_factor, settings.width // pipe.autoencoder.downscale_factor)
    pipes = {v: (pipe if v == B.BASELINE else B.variant_pipeline(pipe, v)) for v in variants}
    setup = dict(source=source, frames=frames, height=settings.height, width=settings.width, latent=list(latent_hw),
                 batch=args.batch, variants=[v.name for v in variants], rounds=args.rounds, steps=[settings.spatial_steps, settings.temporal_steps],
                 unet_parameters=pipe.unet.num_parameters())
    print(f"{source}: {frames} frames, {settings.height}x{settings.width} pixels, latents {latent_hw[0]}x{latent_hw[1]}, "
          f"UNet batch {args.batch}; {B.environment(device)}", flush=True)

    rows, summary = _unet_rows(B, pipes, pipe.unet.config, frames, latent_hw, args, device, variant)
    if not args.no_generate:
        rows.append(B.bench_text(pipe, device, args.rounds))
        gen = dict(frames=frames, height=settings.height, width=settings.width,
                   spatial_steps=settings.spatial_steps, temporal_steps=settings.temporal_steps)
        rows += B.bench_generation({f"generate {v.name}": p for v, p in pipes.items()}, device, args.generate_rounds, **gen)
        chunks = [1, settings.decode_chunk_size, frames]
        rows += B.bench_decode(pipes[variant], frames, latent_hw, chunks, device, args.rounds, variant.dtype)
        for mode in args.offload:
            offloaded = _offloaded(B, pipe, variant, mode, device)
            rows += B.bench_generation({f"generate {offloaded[1]}": offloaded[0]}, device, args.generate_rounds, **gen)
        summary.update(_generation_summary(rows, variants))
    dtypes = {"fp32"} | {v.dtype for v in variants}
    ceilings = {d: B.matmul_ceiling(device, B.DTYPES[d]) for d in sorted(dtypes)}
    env = B.environment(device)
    print(B.format_table(rows, ceilings))
    for key, value in summary.items():
        print(f"{key}: {value:.3f}")
    print(f"load average (1, 5, 15 min) at the end: {env['load_average']} on {env['cpu_count']} CPUs")
    if args.json:
        atomic_write_text(args.json, B.to_json(rows, ceilings, env, setup, summary) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, _markdown(rows, ceilings, env, setup, summary))
    return 0


def _markdown(rows: list, ceilings: dict, env: dict, setup: dict, summary: dict) -> str:
    """The results as one Markdown table, headed by what was measured and where."""
    import datetime

    steps = " + ".join(str(s) for s in setup["steps"])
    source = Path(setup["source"])  # a model folder, or a preset's name
    if source.is_absolute() and source.is_relative_to(Path.cwd()):
        source = source.relative_to(Path.cwd())
    source = f"`{source}`" if source.exists() else setup["source"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `higen bench --markdown` on {datetime.date.today().isoformat()}: {source}, "
        f"{setup['frames']} frames of {setup['height']} x {setup['width']}, UNet batch {setup['batch']}, {steps} sampler steps, "
        f"{setup['rounds']} rounds (median). Device {env['device']} ({env['processor']}, {env['cpu_count']} CPUs), "
        f"{env['threads']} torch threads, torch {env['torch']}, load average at the end {env['load_average'][0]}.",
        "",
        "| what | median s | fastest s | GFLOP | share of the matmul rate | peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows + list(ceilings.values()):
        ceiling = ceilings.get(r.dtype)
        gflop = f"{r.flops / 1e9:.2f}" if r.flops else ""
        share = f"{r.flops_per_second / ceiling.flops_per_second:.1%}" if r.flops and ceiling and r is not ceiling else ""
        fastest = min(r.times) if r.times else r.seconds
        memory = f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb else ""
        lines.append(f"| {r.name} | {r.seconds:.4f} | {fastest:.4f} | {gflop} | {share} | {memory} |")
    lines += ["", *(f"- {key}: {value:.3f}" for key, value in summary.items())]
    return "\n".join(lines) + "\n"


def _unet_rows(B, pipes: dict, config, frames: int, latent_hw, args, device, main_variant) -> tuple[list, dict]:
    """UNet forwards at F = 1 and F = frames for each variant (and the peer at F = frames), interleaved."""
    rows, summary = [], {}
    peer = None
    if not args.no_peer:
        peer = B.diffusers_peer(config).to(device=device, dtype=B.DTYPES[main_variant.dtype]).eval()
    for f in sorted({1, frames}):
        calls = {f"higen {v.name} UNet F={f}": (B.unet_call(p.unet, config, f, latent_hw, args.batch, device, v.sdpa), v.dtype) for v, p in pipes.items()}
        resident = {f"higen {v.name} UNet F={f}": [p.unet] for v, p in pipes.items()}
        peer_name = f"diffusers UNet3D {main_variant.dtype} eager F={f}"
        if peer is not None and f == frames:
            # The peer picks its attention kernels itself: its head split (our head size read as a
            # number of heads) can rule out the kernel --sdpa names.
            calls[peer_name] = (B.peer_call(peer, config, f, latent_hw, args.batch, device), main_variant.dtype)
            resident[peer_name] = [peer]
        timed = B.bench_calls(calls, device, args.rounds, resident)
        rows += timed
        by_name = {t.name: t for t in timed}
        if peer is not None and f == frames:
            p = by_name[peer_name]
            for v in (v for v in pipes if v.dtype == main_variant.dtype):  # time per FLOP within one dtype only
                ours = by_name[f"higen {v.name} UNet F={f}"]
                per_flop = [(a / ours.flops) / (b / p.flops) for a, b in zip(ours.times, p.times)]
                summary[f"time per FLOP, higen {v.name} / diffusers UNet3D {main_variant.dtype} (F={f}, median of rounds)"] = statistics.median(per_flop)
        if len(pipes) == 2:
            base, opt = (by_name[f"higen {v.name} UNet F={f}"] for v in pipes)
            summary[f"speed-up of {main_variant.name} over the fp32 eager baseline, UNet F={f}"] = B.paired_ratio(base.times, opt.times)
    return rows, summary


def _generation_summary(rows: list, variants: list) -> dict:
    totals = {r.name: r for r in rows if r.name.endswith(": total")}
    out = {f"{v.name}: generation total, median seconds": totals[f"generate {v.name}: total"].seconds for v in variants}
    if len(variants) == 2:
        base, opt = (totals[f"generate {v.name}: total"] for v in variants)
        out[f"speed-up of {variants[1].name} over the fp32 eager baseline, generation"] = base.seconds / opt.seconds
    return out


def _offloaded(B, pipe, variant, mode: str, device):
    """The variant's pipeline with weights in CPU memory (sequential offload runs uncompiled)."""
    import dataclasses

    v = dataclasses.replace(variant, compile=False) if mode == "sequential" else variant
    offloaded = B.variant_pipeline(pipe, v, device="cpu")
    if mode == "model":
        offloaded.enable_model_cpu_offload(device)
    else:
        offloaded.enable_sequential_cpu_offload(device)
    return offloaded, f"{v.name} offload={mode}"
