"""Inference benchmark: UNet forward time, FLOPs, FLOP/s against the device's matmul ceiling, a
diffusers UNet3D peer at matched size, our own fp32 eager baseline, and end-to-end generation per stage.

FLOPs are counted by ``torch.utils.flop_counter`` (matmuls, convolutions, attention), never estimated
by hand. The "ceiling" is a large square matrix product timed in the same run on the same device and
dtype: the practical peak this machine reaches.

Timed calls that are compared (baseline, optimised variant, peer) run **interleaved**, round by
round, and each reports the median over rounds: on a machine shared with other work, a burst of load
then slows all candidates alike instead of whichever happened to run during it; ratios are medians of
per-round ratios for the same reason.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from higen.cues import Cues
from higen.models.config import UNetConfig
from higen.models.unet import HiGenUNet

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SDPA_BACKENDS = ("auto", "flash", "efficient", "math")
PRESETS = ("bundled-like", "released")
PROMPT = "a red circle moving left on a black background"


@dataclass
class Timing:
    name: str
    seconds: float  # median over rounds
    flops: float | None = None
    peak_memory_mb: float | None = None
    dtype: str = "fp32"  # selects the matmul ceiling this row is compared with
    times: list[float] = field(default_factory=list)  # every round, in order
    extra: dict = field(default_factory=dict)

    @property
    def flops_per_second(self) -> float | None:
        return None if self.flops is None else self.flops / self.seconds


# ------------------------------------------------------------------------------------------ timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn`` after ``warmup`` untimed calls."""
    return statistics.median(time_interleaved({"fn": fn}, device, repeats, warmup)["fn"])


def time_interleaved(calls: dict[str, Callable[[], object]], device: torch.device, rounds: int = 3, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times of each call over ``rounds`` rounds; every round runs every call once, in turn.

    ``warmup`` untimed rounds come first (kernel selection, caches, torch.compile's first trace).
    """
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a / b`` (both timed in the same rounds)."""
    return statistics.median(x / y for x, y in zip(a, b))


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call; compiled modules run eagerly for it (the counter cannot see into compiled code)."""
    eager = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    with eager("force_eager") if eager else contextlib.nullcontext(), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Process-wide peak resident set (Linux reports KiB): an upper bound for the CPU.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def call_peak_mb(fn: Callable[[], object], device: torch.device, resident: list[torch.nn.Module] = ()) -> float | None:
    """CUDA only: peak memory of one call of ``fn``, counting what it allocates plus the ``resident``
    modules' tensors already on ``device`` (its weights), not what unrelated models there hold.

    None on the CPU, where torch keeps no per-call peak (the process's peak RSS is in :func:`environment`).
    """
    if device.type != "cuda":
        return None
    _sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    own = sum(t.numel() * t.element_size() for m in resident for t in (*m.parameters(), *m.buffers()) if t.device == device)
    return (torch.cuda.max_memory_allocated(device) - before + own) / 2**20


def matmul_ceiling(device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 3) -> Timing:
    """FLOP/s of an ``n x n`` by ``n x n`` matrix product: the practical peak of this device and dtype."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_interleaved({"mm": lambda: a @ b}, device, repeats)["mm"]
    name = {v: k for k, v in DTYPES.items()}[dtype]
    return Timing(f"matmul {n}x{n} {name}", statistics.median(times), flops=2.0 * n**3, dtype=name, times=times)


# ------------------------------------------------------------------------------------------ models
def bundled_like_config() -> UNetConfig:
    """The bundled model's expected UNet (random weights until the trained folder exists)."""
    return UNetConfig(
        base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(0, 1, 2), head_dim=32,
        text_dim=384, context_dim=256,
    )


def bundled_like_pipeline(seed: int = 0):
    """The bundled model's expected shape with random weights: the UNet of :func:`bundled_like_config`,
    the MiniLM text encoder (384-d), a (32, 64, 128, 128) ``AutoencoderKL`` (8x down, 4 channels), and
    16 frames of 64 x 64 pixels with the release's sampling defaults (50 + 50 DDIM steps, guidance 12).
    """
    from higen.encoders.text import MiniLMTextEncoder
    from higen.pipeline.pipeline import HiGenPipeline
    from higen.pipeline.settings import GenerationSettings
    from higen.tiny import seeded, tiny_autoencoder

    autoencoder = tiny_autoencoder(
        seed, block_out_channels=[32, 64, 128, 128], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, sample_size=64,
    )
    with seeded(seed):
        unet = HiGenUNet(bundled_like_config())
    return HiGenPipeline(unet, MiniLMTextEncoder(), autoencoder, defaults=GenerationSettings(frames=16, height=64, width=64))


def released_pipeline(device: torch.device, seed: int = 0):
    """Random models of the release's sizes (higen.md §3): the 1.48 B UNet, an OpenCLIP ViT-H-14-sized
    text tower (with the tiny tokenizer: vocabulary size does not change the cost), the SD 2.1
    autoencoder; built directly on ``device``. Time does not depend on the weights' values.
    """
    from transformers import CLIPTextConfig

    from higen.encoders.autoencoder import VideoAutoencoder
    from higen.encoders.text import CLIPTextEncoder
    from higen.pipeline.pipeline import HiGenPipeline
    from higen.tiny import seeded, tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()
    vocab = len(tokenizer)
    text_config = CLIPTextConfig(
        vocab_size=vocab, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=1024, pad_token_id=0, bos_token_id=vocab - 2, eos_token_id=vocab - 1,
    )
    with seeded(seed), torch.device(device):
        return HiGenPipeline(HiGenUNet(UNetConfig()), CLIPTextEncoder.from_config(text_config, tokenizer), VideoAutoencoder.from_config())


def load_benchmark_pipeline(model: Path | None, preset: str | None, device: torch.device):
    """A model folder, or a preset (``bundled-like``, ``released``) with random weights; on ``device``."""
    from higen.pipeline.pipeline import HiGenPipeline

    if model is not None and preset is not None:
        raise ValueError("give either a model folder or a preset, not both")
    if preset == "released":
        return released_pipeline(device), "released (random weights)"
    if preset == "bundled-like":
        return bundled_like_pipeline().to(device), "bundled-like (random weights)"
    if preset is not None:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    if model is None:
        from higen.assets import bundled_model_path

        model = bundled_model_path()
    return HiGenPipeline.from_pretrained(model, device=device), str(model)


# ---------------------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """How the UNet and the autoencoder run. The default is the baseline: plain fp32 eager."""

    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    sdpa: str = "auto"  # the SDPA backends allowed: auto (PyTorch chooses), flash, efficient, math

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose one of: {', '.join(DTYPES)}")
        if self.sdpa not in SDPA_BACKENDS:
            raise ValueError(f"unknown SDPA backend {self.sdpa!r}; choose one of: {', '.join(SDPA_BACKENDS)}")

    @property
    def name(self) -> str:
        parts = [self.dtype, "channels_last" if self.channels_last else "", "compiled" if self.compile else "eager"]
        parts.append("" if self.sdpa == "auto" else f"sdpa={self.sdpa}")
        return " ".join(p for p in parts if p)


BASELINE = Variant()


def sdpa_backend(name: str):
    """A context allowing only the named SDPA kernels (``auto``: no restriction).

    On CUDA, bf16/fp16 attention with head sizes up to 256 uses FlashAttention-2 or the
    memory-efficient kernel by itself; naming one checks that it really runs (PyTorch raises if the
    inputs do not suit it) and pins it for timing. On the CPU only ``flash`` (PyTorch's CPU flash
    kernel, the default there) and ``math`` exist.
    """
    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel  # torch >= 2.3

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    return sdpa_kernel([backends[name]])


def variant_pipeline(pipe, variant: Variant, device: torch.device | None = None):
    """Copies of ``pipe``'s UNet and autoencoder prepared for ``variant`` (cast, channels_last,
    compiled). With no ``device`` the copy shares ``pipe``'s text encoder (fp32, as the pipeline
    loads it); with one, everything is copied there (an offloaded pipeline moves its own)."""
    from higen.pipeline.pipeline import HiGenPipeline

    dtype = DTYPES[variant.dtype]
    unet = copy.deepcopy(pipe.unet).to(device=device, dtype=dtype)
    autoencoder = copy.deepcopy(pipe.autoencoder).to(device=device, dtype=dtype)
    text_encoder = pipe.text_encoder if device is None else copy.deepcopy(pipe.text_encoder).to(device)
    out = HiGenPipeline(unet, text_encoder, autoencoder, pipe.schedule, pipe.defaults)
    if variant.channels_last:
        out.enable_channels_last()
    if variant.compile:
        out.compile_unet()
    return out


# ------------------------------------------------------------------------------------- measurements
def unet_inputs(config: UNetConfig, batch: int, frames: int, latent_hw, device, dtype=torch.float32, text_len: int = 77) -> dict:
    """Random UNet inputs as the samplers give them: float32 latents (the UNet casts to its dtype), the cues of
    the release's motion control (500) with unchanging appearance (one frame: the spatial stage's)."""
    h, w = latent_hw
    cues = Cues.from_controls(500.0, 0.0, batch, frames, config.appearance_width, device=device)
    return dict(
        x=torch.randn(batch, config.in_channels, frames, h, w, device=device, dtype=dtype),
        timesteps=torch.full((batch,), 500, device=device),
        text=torch.randn(batch, text_len, config.text_dim, device=device, dtype=dtype),
        **cues.unet_kwargs(),
    )


def unet_call(unet: torch.nn.Module, config: UNetConfig, frames: int, latent_hw, batch: int, device, sdpa: str = "auto") -> Callable[[], torch.Tensor]:
    args = unet_inputs(config, batch, frames, latent_hw, device)

    @torch.inference_mode()
    def call():
        with sdpa_backend(sdpa):
            return unet(**args)

    return call


def diffusers_peer(config: UNetConfig):
    """diffusers' ``UNet3DConditionModel`` (the ModelScope T2V lineage) at HiGen's widths and depth.

    Same channels per level, res blocks per level, attention at the same levels, and cross-attention
    to ``context_dim``-wide tokens. Its ``attention_head_dim`` argument is really a number of heads
    (the same at every level) and sets its input temporal transformer to 8 heads of that size; passing
    our head size gives that transformer our width (8 x 64 = 512 in the release) and every attention
    layer the same inner width as ours, hence the same attention FLOPs; only the head split differs.
    UNet3D fixes that input transformer at 8 heads; for configs with another ``init_temporal_heads``
    it is rebuilt with ours, so its width matches too.
    """
    from diffusers import UNet3DConditionModel
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

    widths = tuple(config.base_channels * m for m in config.channel_mult)
    down = tuple("CrossAttnDownBlock3D" if i in config.attention_levels else "DownBlock3D" for i in range(len(widths)))
    up = tuple("CrossAttnUpBlock3D" if i in config.attention_levels else "UpBlock3D" for i in reversed(range(len(widths))))
    peer = UNet3DConditionModel(
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
    if config.init_temporal_heads != 8:
        peer.transformer_in = TransformerTemporalModel(
            num_attention_heads=config.init_temporal_heads, attention_head_dim=config.head_dim, in_channels=widths[0],
            num_layers=1, norm_num_groups=32,
        )
    return peer


def peer_call(peer, config: UNetConfig, frames: int, latent_hw, batch: int, device, sdpa: str = "auto") -> Callable[[], torch.Tensor]:
    """One forward of the diffusers peer (in its parameters' dtype) on inputs shaped like ours."""
    h, w = latent_hw
    dtype = next(peer.parameters()).dtype
    x = torch.randn(batch, config.in_channels, frames, h, w, device=device, dtype=dtype)
    context = torch.randn(batch, config.num_text_tokens, config.context_dim, device=device, dtype=dtype)
    t = torch.full((batch,), 500, device=device)

    @torch.inference_mode()
    def call():
        with sdpa_backend(sdpa):
            return peer(x, t, encoder_hidden_states=context).sample

    return call


def bench_calls(calls: dict[str, tuple[Callable[[], object], str]], device, rounds: int, resident: dict | None = None) -> list[Timing]:
    """Time ``{name: (call, dtype name)}`` interleaved; FLOPs counted on one extra call of each."""
    flops = {name: count_flops(fn) for name, (fn, _) in calls.items()}
    times = time_interleaved({name: fn for name, (fn, _) in calls.items()}, device, rounds)
    peaks = {name: call_peak_mb(fn, device, (resident or {}).get(name, ())) for name, (fn, _) in calls.items()}
    return [
        Timing(name, statistics.median(times[name]), flops=flops[name], peak_memory_mb=peaks[name], dtype=dtype, times=times[name])
        for name, (_, dtype) in calls.items()
    ]


def bench_generation(pipes: dict[str, object], device, rounds: int = 1, prompt: str = PROMPT, **settings) -> list[Timing]:
    """End-to-end generations of several pipelines, interleaved, split into stages.

    Stages: text + spatial stage (the text encoder, then stage 1 to its last step), temporal stage,
    decode (video and keyframe). One untimed warm-up generation per pipeline comes first.
    """
    stages = ("text + spatial stage", "temporal stage", "decode", "total")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in pipes}
    peaks: dict[str, float | None] = {}
    for r in range(rounds + 1):
        for name, pipe in pipes.items():
            marks = _timed_generation(pipe, device, prompt, settings)
            if r:
                runs[name].append(marks)
            else:
                peaks[name] = call_peak_mb(lambda: pipe(prompt, seed=0, **settings), device, [pipe.unet, pipe.text_encoder, pipe.autoencoder])
    rows = []
    for name in pipes:
        for stage in stages:
            times = [m[stage] for m in runs[name]]
            peak = peaks[name] if stage == "total" else None
            rows.append(Timing(f"{name}: {stage}", statistics.median(times), peak_memory_mb=peak, times=times))
    return rows


def _timed_generation(pipe, device, prompt: str, settings: dict) -> dict[str, float]:
    marks: dict[str, float] = {}

    def callback(stage: str, step: int, total: int) -> None:
        _sync(device)
        marks[stage] = time.perf_counter()

    start = time.perf_counter()
    pipe(prompt, callback=callback, seed=0, **settings)
    _sync(device)
    end = time.perf_counter()
    spatial_end = marks.get("spatial", start)
    temporal_end = marks.get("temporal", spatial_end)
    return {
        "text + spatial stage": spatial_end - start,
        "temporal stage": temporal_end - spatial_end,
        "decode": end - temporal_end,
        "total": end - start,
    }


def bench_text(pipe, device, rounds: int, prompt: str = PROMPT) -> Timing:
    """The text encoder on the prompt and the negative prompt (one call, as the pipeline makes it)."""
    negative = pipe.defaults.negative_prompt
    times = time_interleaved({"text": lambda: pipe.encode_prompts([prompt, negative])}, device, rounds)["text"]
    return Timing("text encoder (prompt + negative)", statistics.median(times), times=times)


def bench_decode(pipe, frames: int, latent_hw, chunk_sizes: list[int], device, rounds: int, dtype: str = "fp32") -> list[Timing]:
    """Decoding one video's latents ``frames`` at a time in chunks of each size (time; peak memory on CUDA)."""
    latents = torch.randn(1, pipe.autoencoder.latent_channels, frames, *latent_hw, device=device)
    sizes = sorted({max(1, min(c, frames)) for c in chunk_sizes})
    calls = {f"decode {frames} frames, chunks of {c}": (lambda c=c: pipe.decode(latents, c)) for c in sizes}
    times = time_interleaved(calls, device, rounds)
    return [
        Timing(name, statistics.median(times[name]), peak_memory_mb=call_peak_mb(fn, device, [pipe.autoencoder]), dtype=dtype, times=times[name])
        for name, fn in calls.items()
    ]


# ------------------------------------------------------------------------------------------ report
def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(), "device": str(device)}
    env["processor"] = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    env["cpu_count"] = os.cpu_count()
    # How busy the machine was: runnable processes averaged over 1, 5 and 15 minutes.
    env["load_average"] = [round(x, 2) for x in os.getloadavg()]
    env["peak_rss_mb"] = round(peak_memory_mb(torch.device("cpu")))
    # With OpenMP's default active waiting, idle worker threads spin and starve threads of a busy
    # machine's other processes, which then stall every parallel region (docs/performance.md).
    env.update({k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ})
    return env


def format_table(rows: list[Timing], ceilings: dict[str, Timing]) -> str:
    """One line per row; FLOP/s are compared with the matmul ceiling of the row's dtype."""
    head = f"{'what':58s} {'median s':>9s} {'min s':>8s} {'GFLOP':>8s} {'GFLOP/s':>9s} {'of ceiling':>10s} {'peak MB':>8s}"
    lines = [head]
    for r in rows + list(ceilings.values()):
        ceiling = ceilings.get(r.dtype)
        gflop = f"{r.flops / 1e9:8.2f}" if r.flops else f"{'':8s}"
        rate = f"{r.flops_per_second / 1e9:9.1f}" if r.flops else f"{'':9s}"
        frac = f"{r.flops_per_second / ceiling.flops_per_second:10.1%}" if r.flops and ceiling else f"{'':10s}"
        mem = f"{r.peak_memory_mb:8.0f}" if r.peak_memory_mb else f"{'':8s}"
        fastest = min(r.times) if r.times else r.seconds
        lines.append(f"{r.name:58s} {r.seconds:9.4f} {fastest:8.4f} {gflop} {rate} {frac} {mem}")
    return "\n".join(lines)


def to_json(rows: list[Timing], ceilings: dict[str, Timing], env: dict, setup: dict | None = None, summary: dict | None = None) -> str:
    def row(t: Timing) -> dict:
        return {**asdict(t), "flops_per_second": t.flops_per_second}

    return json.dumps(
        {"environment": env, "setup": setup or {}, "summary": summary or {}, "ceilings": {k: row(v) for k, v in ceilings.items()},
         "results": [row(r) for r in rows]},
        indent=2,
    )
