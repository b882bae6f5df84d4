"""Inference benchmark: UNet forward time, FLOPs, FLOP/s against the device's matmul ceiling, a
diffusers UNet3D peer at matched size, and end-to-end generation per stage.

FLOPs are counted by ``torch.utils.flop_counter`` (matmuls, convolutions, attention), never estimated
by hand. The "ceiling" is a large square matrix product timed in the same run on the same device and
dtype: the practical peak this machine reaches.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from higen.models.config import UNetConfig
from higen.models.unet import HiGenUNet


@dataclass
class Timing:
    name: str
    seconds: float  # median over repeats
    flops: float | None = None
    peak_memory_mb: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def flops_per_second(self) -> float | None:
        return None if self.flops is None else self.flops / self.seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_flops(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Process-wide peak resident set (Linux reports KiB): an upper bound for the CPU.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_ceiling(device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 3) -> Timing:
    """FLOP/s of an ``n x n`` by ``n x n`` matrix product: the practical peak of this device and dtype."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = time_call(lambda: a @ b, device, repeats=repeats)
    return Timing(f"matmul {n}x{n}", seconds, flops=2.0 * n**3)


def unet_inputs(config: UNetConfig, batch: int, frames: int, latent_hw: tuple[int, int], device, dtype, text_len: int = 77):
    h, w = latent_hw
    return dict(
        x=torch.randn(batch, config.in_channels, frames, h, w, device=device, dtype=dtype),
        timesteps=torch.full((batch,), 500, device=device),
        text=torch.randn(batch, text_len, config.text_dim, device=device, dtype=dtype),
        motion=torch.full((batch, max(frames - 1, 1)), 500.0, device=device),
        appearance=torch.ones(batch, frames, config.appearance_width, device=device),
    )


def bench_unet(model: HiGenUNet, frames: int, latent_hw, batch: int, device, dtype, repeats: int = 3, name: str = "higen") -> Timing:
    args = unet_inputs(model.config, batch, frames, latent_hw, device, dtype)
    if frames == 1:
        args["motion"] = torch.zeros(batch, device=device)

    @torch.no_grad()
    def call():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return model(**args)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    flops = count_flops(call)
    seconds = time_call(call, device, repeats=repeats)
    return Timing(f"{name} UNet F={frames}", seconds, flops=flops, peak_memory_mb=peak_memory_mb(device))


def diffusers_peer(config: UNetConfig):
    """diffusers' ``UNet3DConditionModel`` (the ModelScope T2V lineage) at HiGen's widths and depth.

    Same channels per level, res blocks per level, attention at the same levels, and cross-attention
    to ``context_dim``-wide tokens. Its ``attention_head_dim`` argument is really a number of heads
    (the same at every level) and sets its input temporal transformer to 8 heads of that size; passing
    our head size gives that transformer our width (8 x 64 = 512 in the release) and every attention
    layer the same inner width as ours, hence the same attention FLOPs; only the head split differs.
    """
    from diffusers import UNet3DConditionModel

    widths = tuple(config.base_channels * m for m in config.channel_mult)
    down = tuple("CrossAttnDownBlock3D" if i in config.attention_levels else "DownBlock3D" for i in range(len(widths)))
    up = tuple("CrossAttnUpBlock3D" if i in config.attention_levels else "UpBlock3D" for i in reversed(range(len(widths))))
    return UNet3DConditionModel(
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=widths,
        layers_per_block=config.num_res_blocks,
        cross_attention_dim=config.context_dim,
        attention_head_dim=config.head_dim,
        norm_num_groups=32,
    )


def bench_peer(config: UNetConfig, frames: int, latent_hw, batch: int, device, dtype, repeats: int = 3) -> Timing:
    peer = diffusers_peer(config).to(device=device).eval()
    h, w = latent_hw
    x = torch.randn(batch, config.in_channels, frames, h, w, device=device, dtype=dtype)
    context = torch.randn(batch, config.num_text_tokens, config.context_dim, device=device, dtype=dtype)
    t = torch.full((batch,), 500, device=device)

    @torch.no_grad()
    def call():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return peer(x, t, encoder_hidden_states=context).sample

    flops = count_flops(call)
    seconds = time_call(call, device, repeats=repeats)
    params = sum(p.numel() for p in peer.parameters())
    return Timing(f"diffusers UNet3D F={frames}", seconds, flops=flops, peak_memory_mb=peak_memory_mb(device), extra={"parameters": params})


def bench_pipeline(pipe, prompt: str, device, repeats: int = 1, **settings) -> list[Timing]:
    """End-to-end generation split into text, spatial stage, temporal stage and decoding."""
    marks: dict[str, float] = {}

    def callback(stage: str, step: int, total: int) -> None:
        _sync(device)
        marks[stage] = time.perf_counter()

    runs = []
    for _ in range(repeats + 1):  # the first run warms up
        marks.clear()
        start = time.perf_counter()
        pipe(prompt, callback=callback, seed=0, **settings)
        _sync(device)
        end = time.perf_counter()
        runs.append((start, dict(marks), end))
    start, m, end = runs[-1]
    spatial_end = m.get("spatial", start)
    temporal_end = m.get("temporal", spatial_end)
    return [
        Timing("generate: text + spatial stage", spatial_end - start),
        Timing("generate: temporal stage", temporal_end - spatial_end),
        Timing("generate: decode", end - temporal_end),
        Timing("generate: total", end - start, peak_memory_mb=peak_memory_mb(device)),
    ]


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(), "device": str(device)}
    env["processor"] = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return env


def format_table(rows: list[Timing], ceiling: Timing) -> str:
    lines = [f"{'what':38s} {'time (s)':>10s} {'GFLOP':>10s} {'GFLOP/s':>10s} {'of ceiling':>10s} {'peak MB':>9s}"]
    for r in rows + [ceiling]:
        gflop = f"{r.flops / 1e9:10.2f}" if r.flops else f"{'':10s}"
        rate = f"{r.flops_per_second / 1e9:10.2f}" if r.flops else f"{'':10s}"
        frac = f"{r.flops_per_second / ceiling.flops_per_second:10.1%}" if r.flops else f"{'':10s}"
        mem = f"{r.peak_memory_mb:9.0f}" if r.peak_memory_mb else f"{'':9s}"
        lines.append(f"{r.name:38s} {r.seconds:10.4f} {gflop} {rate} {frac} {mem}")
    return "\n".join(lines)


def to_json(rows: list[Timing], ceiling: Timing, env: dict) -> str:
    def row(t: Timing) -> dict:
        return {**asdict(t), "flops_per_second": t.flops_per_second}

    return json.dumps({"environment": env, "ceiling": row(ceiling), "results": [row(r) for r in rows]}, indent=2)
