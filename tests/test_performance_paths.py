"""Every fast path gives the plain path's results (docs/performance.md). Correctness only: nothing here is timed.

Tolerances: paths that only reorder float32 arithmetic (channels_last, the Conv2d form of the temporal
Conv3d, a shared cross-attention context, another SDPA kernel, compiled code) differ by summation order,
~1e-7 relative on outputs of magnitude ~1, so 1e-5. Offloading moves weights without touching the
arithmetic: bitwise equal. Lower precision is judged by how its error scales (see the bf16 test).
"""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from higen import benchmark as B
from higen.cli.main import main
from higen.models.layers import Attention, FrameConv, add_frames
from higen.pipeline.offload import ComponentOffload
from higen.tiny import tiny_unet

from support import save_tiny_model, tiny_pipeline

ATOL = 1e-5


def _inputs(unet, frames, batch=2, hw=(4, 4)):
    return B.unet_inputs(unet.config, batch, frames, hw, torch.device("cpu"))


def _run(unet, args):
    with torch.inference_mode():
        return unet(**args)


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(seed=0)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


# ----------------------------------------------------------------------------------- layouts
def test_frame_conv_equals_conv3d():
    conv = FrameConv(32)  # default init: outputs of magnitude ~1
    x = torch.randn(2, 32, 5, 3, 4)
    torch.testing.assert_close(conv(x), F.conv3d(x, conv.weight, conv.bias, padding=(1, 0, 0)), atol=ATOL, rtol=0)
    assert tuple(conv.weight.shape) == (32, 32, 3, 1, 1)  # the release's Conv3d parameter, unchanged


def test_shared_context_equals_context_repeated_per_frame():
    attn = Attention(16, heads=2, head_dim=8, context_dim=12)
    x, context, frames = torch.randn(2 * 3, 5, 16), torch.randn(2, 7, 12), 3
    shared = attn(x, context)
    repeated = attn(x, context.repeat_interleave(frames, dim=0))
    torch.testing.assert_close(shared, repeated, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="cannot share"):
        attn(torch.randn(5, 5, 16), context)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_add_frames_keeps_the_residual_layout(fmt):
    x = torch.randn(2 * 3, 8, 4, 5).contiguous(memory_format=fmt)
    y = torch.randn(2, 8, 3, 4, 5).transpose(1, 2)  # b f c h w, strided like a temporal branch's output
    out = add_frames(x, y)
    torch.testing.assert_close(out, x + y.reshape(6, 8, 4, 5), atol=0, rtol=0)
    assert out.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("frames", [1, 3])
def test_channels_last_equals_default(unet, frames):
    args = _inputs(unet, frames)
    fast = copy.deepcopy(unet).to_channels_last()
    seen = []
    fast.down[0].res.conv1.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].is_contiguous(memory_format=torch.channels_last)))
    out = _run(fast, args)
    torch.testing.assert_close(out, _run(unet, args), atol=ATOL, rtol=0)
    assert seen == [True]  # activations really run channels_last
    assert out.is_contiguous()  # the public b c f h w output is plain


def test_other_sdpa_kernel_equals_default(unet):
    args = _inputs(unet, 3)
    with B.sdpa_backend("math"):
        math = _run(unet, args)
    torch.testing.assert_close(math, _run(unet, args), atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------- precision
def test_bf16_and_fp16_weights_are_fp32_up_to_their_rounding(unet):
    """Rounding errors shrink with the format's precision; a wrong path (a cue or a branch lost, a bad
    cast) gives the same O(1) error in both formats. fp16 keeps 10 mantissa bits and bf16 7, so fp16's
    error should be about 8x smaller; we require 4x, and each error below 40 unit roundoffs."""
    args = _inputs(unet, 3)
    ref = _run(unet, args)
    errors = {}
    for dtype, unit_roundoff in ((torch.bfloat16, 2.0**-8), (torch.float16, 2.0**-11)):
        out = _run(copy.deepcopy(unet).to(dtype), args)
        assert out.dtype == torch.float32  # outputs come back in the input's dtype for the sampler
        errors[dtype] = ((out - ref).norm() / ref.norm()).item()
        assert errors[dtype] < 40 * unit_roundoff
    assert errors[torch.float16] < errors[torch.bfloat16] / 4


def test_bf16_pipeline_samples_in_float32(pipe):
    fast = B.variant_pipeline(pipe, B.Variant("bf16"))
    assert fast.unet.dtype == torch.bfloat16
    out = fast("a red ball", seed=0, output_latents=True)
    assert out.latents.dtype == torch.float32 and torch.isfinite(out.latents).all()
    ref = pipe("a red ball", seed=0, output_latents=True, spatial_guidance=1.0, temporal_guidance=1.0)
    low = fast("a red ball", seed=0, output_latents=True, spatial_guidance=1.0, temporal_guidance=1.0)
    # Without guidance (which multiplies differences by 12) three steps stay close to fp32.
    assert ((low.latents - ref.latents).norm() / ref.latents.norm()).item() < 0.05


# ----------------------------------------------------------------------------------- compile
@pytest.fixture(scope="module")
def one_level_unet():
    # The smallest UNet with every kind of module (temporal and spatial transformers, temporal
    # convs, resampler): tracing cost grows with the module count.
    return tiny_unet(seed=1, channel_mult=(1,), resampler_depth=1)


@pytest.mark.parametrize("frames", [1, 2])
def test_unet_compiles_as_one_graph_and_equals_eager(one_level_unet, frames):
    """``fullgraph=True`` raises on any graph break, so this fails if the UNet gains one.
    ``aot_eager`` traces to ATen ops (functionalised, decomposed) without generating code."""
    torch._dynamo.reset()
    args = _inputs(one_level_unet, frames, batch=1)
    compiled = torch.compile(one_level_unet, fullgraph=True, dynamic=False, backend="aot_eager")
    torch.testing.assert_close(_run(compiled, args), _run(one_level_unet, args), atol=ATOL, rtol=0)


def test_a_graph_break_fails_fullgraph(one_level_unet, monkeypatch):
    """The check above can fail: a break makes ``fullgraph=True`` raise."""
    torch._dynamo.reset()
    unet = copy.deepcopy(one_level_unet)
    forward = unet.time_embed.forward
    monkeypatch.setattr(unet.time_embed, "forward", lambda x: (torch._dynamo.graph_break(), forward(x))[1])
    with pytest.raises(torch._dynamo.exc.Unsupported, match="graph_break"):
        _run(torch.compile(unet, fullgraph=True, backend="eager"), _inputs(unet, 2, batch=1))


@pytest.mark.slow
def test_inductor_compiled_pipeline_equals_eager(pipe):
    torch._dynamo.reset()
    fast = B.variant_pipeline(pipe, B.Variant(compile=True))
    a = fast("a red ball", seed=0, output_latents=True, spatial_guidance=1.0, temporal_guidance=1.0).latents
    b = pipe("a red ball", seed=0, output_latents=True, spatial_guidance=1.0, temporal_guidance=1.0).latents
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------- offload
def _generate(pipe):
    return pipe("a red ball", seed=3, output_latents=True)


def test_model_offload_equals_no_offload_and_moves_each_component_when_used(pipe):
    ref = _generate(pipe)
    offloaded = B.variant_pipeline(pipe, B.BASELINE, device="cpu")
    offloaded.enable_model_cpu_offload("cpu")
    used = []
    use = offloaded.offload.use
    offloaded.offload.use = lambda name: (used.append(name), use(name))[1]
    out = _generate(offloaded)
    assert np.array_equal(out.video, ref.video) and torch.equal(out.latents, ref.latents)
    assert used[0] == "text_encoder" and used[-1] == "autoencoder" and "unet" in used
    assert used.index("unet") < used.index("autoencoder")
    assert offloaded.offload.active is None  # released at the end of the generation


def test_component_offload_moves_the_previous_component_back():
    moves = []

    class Recorder(torch.nn.Linear):
        def to(self, device):
            moves.append((self.name, str(device)))
            return self

    holder = type("P", (), {})()
    for name in ("text_encoder", "unet", "autoencoder"):
        setattr(holder, name, Recorder(1, 1))
        getattr(holder, name).name = name
    offload = ComponentOffload(holder, "meta")  # any device: nothing is really moved by the recorder
    moves.clear()
    offload.use("text_encoder")
    offload.use("unet")
    offload.use("unet")  # already there: no move
    assert moves == [("text_encoder", "meta"), ("text_encoder", "cpu"), ("unet", "meta")]
    with pytest.raises(ValueError, match="unknown component"):
        offload.use("vae")


def test_sequential_offload_equals_no_offload(pipe):
    ref = _generate(pipe)
    offloaded = B.variant_pipeline(pipe, B.BASELINE, device="cpu")
    offloaded.enable_sequential_cpu_offload("cpu")
    # accelerate's hooks hold the weights elsewhere; the modules keep meta placeholders.
    assert offloaded.unet.input_conv.weight.device.type == "meta"
    assert offloaded.device == torch.device("cpu")
    out = _generate(offloaded)
    assert np.array_equal(out.video, ref.video) and torch.equal(out.latents, ref.latents)
    with pytest.raises(ValueError, match="do not combine"):
        offloaded.compile_unet()


# ------------------------------------------------------------------------------------ decode
def test_chunked_decode_equals_whole(pipe):
    latents = torch.randn(2, 4, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    whole = pipe.autoencoder.decode(latents, chunk_size=10)
    for chunk in (1, 2, 3):
        torch.testing.assert_close(pipe.autoencoder.decode(latents, chunk_size=chunk), whole, atol=ATOL, rtol=0)


# -------------------------------------------------------------------------------- benchmark
def test_interleaved_timing_alternates_calls_round_by_round():
    order = []
    times = B.time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, torch.device("cpu"), rounds=3, warmup=1)
    assert order == ["a", "b"] * 4
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert B.paired_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 4.0]) == 2.0  # median of 2, 3, 1


def test_variant_names_and_validation():
    assert B.BASELINE.name == "fp32 eager"
    assert B.Variant("bf16", channels_last=True, compile=True, sdpa="flash").name == "bf16 channels_last compiled sdpa=flash"
    with pytest.raises(ValueError, match="unknown dtype"):
        B.Variant("int8")


def test_bench_cli_compares_and_writes_json(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model")
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    code = main(["bench", "--model", str(model), "--compare", "--channels-last", "--rounds", "1", "--steps", "1", "--json", str(out), "--markdown", str(table)])
    assert code == 0
    report = json.loads(out.read_text())
    names = [r["name"] for r in report["results"]]
    frames = report["setup"]["frames"]
    for variant in ("fp32 eager", "fp32 channels_last eager"):
        assert f"higen {variant} UNet F=1" in names and f"higen {variant} UNet F={frames}" in names
        assert f"generate {variant}: total" in names
    assert f"diffusers UNet3D fp32 eager F={frames}" in names
    assert set(report["ceilings"]) == {"fp32"} and report["environment"]["load_average"]
    unet_row = next(r for r in report["results"] if r["name"] == "higen fp32 eager UNet F=1")
    assert unet_row["flops"] > 0 and len(unet_row["times"]) == 1
    assert any(k.startswith("time per FLOP") for k in report["summary"])
    assert "speed-up of fp32 channels_last eager" in capsys.readouterr().out
    rows = [line.split(" | ")[0].lstrip("| ") for line in table.read_text().splitlines() if line.startswith("| ")]
    assert rows[1:] == [*names, report["ceilings"]["fp32"]["name"]]  # after the header: every result, then the ceiling


@pytest.mark.parametrize("command", [["bench", "--preset", "bundled-like"], ["generate", "a cat", "--no-progress"]])
def test_offload_on_cpu_is_a_user_error(tmp_path, capsys, command):
    assert main([*command, "--device", "cpu", "--offload", "model"]) == 2
    assert "needs --device cuda" in capsys.readouterr().err
