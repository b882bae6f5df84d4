"""The trainer's pieces and one-process runs: loss, conditioning, cues, histogram embedder, parameter
groups, gradient accumulation, export, the CLI and its errors. Tiny random models on CPU."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from higen.cues import appearance_from_embeddings, motion_from_latents
from higen.diffusion.schedule import NoiseSchedule
from higen.encoders.histogram import HistogramEmbedder
from higen.encoders.text import NULL_TEXT
from higen.pipeline.settings import GenerationSettings
from higen.training.conditioning import (
    Conditioner, caption_dropout_mask, sample_generator, sample_generators, step_kind,
)
from higen.training.config import load_config
from higen.training.logging import read_log
from higen.training.loss import VPredictionLoss, contrast_weights, draw_noise, draw_timesteps, min_snr_weights
from higen.training.optim import SPATIAL_PATTERN
from higen.training.synthetic import TINY_RUN, SyntheticData, synthetic_factory, tiny_components
from higen.training.trainer import make_training_data, train


def tiny_config(out: Path, *overrides: str):
    return load_config(None, [*TINY_RUN, f"train.output_dir={out}", *overrides])


def run(out: Path, *overrides: str, components=None, factory=None):
    return train(tiny_config(out, *overrides), components or tiny_components(), factory or synthetic_factory())


def conditioner(components, p=0.0, scale=10.0, seed=1):
    return Conditioner(components.text_encoder, components.autoencoder, components.embedder, seed=seed,
                       caption_dropout=p, appearance_scale=scale, device=torch.device("cpu"))


def checkpoint_tensors(out: Path, stem: str, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / f"step_{step:07d}" / f"{stem}.safetensors"))


# ------------------------------------------------------------------------------------------ loss


def test_loss_is_per_sample_v_mse():
    schedule = NoiseSchedule()
    a = schedule.alphas_cumprod()
    x0, noise = torch.randn(3, 4, 2, 4, 4), torch.randn(3, 4, 2, 4, 4)
    t = torch.tensor([0, 500, 999])
    loss = VPredictionLoss(schedule)
    # v = sqrt(a_t) noise - sqrt(1 - a_t) x0 (higen.md §4): a model predicting zeros pays mean(v^2) per sample.
    v = a[t].sqrt()[:, None, None, None, None] * noise - (1 - a[t]).sqrt()[:, None, None, None, None] * x0
    zeros = loss(lambda x, ts, **kw: torch.zeros_like(x), x0, t, noise)
    assert zeros.shape == (3,)
    torch.testing.assert_close(zeros, v.pow(2).flatten(1).mean(1))
    # Zero terminal SNR: at t = 999 the input is pure noise and the target is -x0.
    seen = {}

    def oracle(x, ts, **kw):
        seen["x"] = x
        return v

    assert loss(oracle, x0, t, noise).abs().max() < 1e-10
    torch.testing.assert_close(seen["x"][2], noise[2])


def test_foreground_weighted_loss_weights_each_frame_by_its_contrast_map():
    schedule = NoiseSchedule()
    x0, noise = torch.randn(2, 4, 3, 6, 6), torch.randn(2, 4, 3, 6, 6)
    t = torch.tensor([100, 900])
    zeros = lambda x, ts, **kw: torch.zeros_like(x)  # noqa: E731
    plain = VPredictionLoss(schedule)(zeros, x0, t, noise)
    torch.testing.assert_close(VPredictionLoss(schedule, 0.0)(zeros, x0, t, noise), plain)
    weighted = VPredictionLoss(schedule, 5.0)
    a = schedule.alphas_cumprod()[t].float()[:, None, None, None, None]
    v = a.sqrt() * noise - (1 - a).sqrt() * x0
    # frame f of sample b is weighted by contrast_weights of that clean frame alone
    w = torch.stack([torch.stack([contrast_weights(x0[b, :, f][None], 5.0)[0] for f in range(3)], dim=1) for b in range(2)])
    assert weighted.weights(x0).shape == (2, 1, 3, 6, 6)
    torch.testing.assert_close(weighted.weights(x0), w)
    torch.testing.assert_close(weighted(zeros, x0, t, noise), (w * v.pow(2)).flatten(1).mean(1))
    assert not torch.allclose(weighted(zeros, x0, t, noise), plain)


def test_min_snr_weighted_loss_is_the_clean_image_loss_weighted_by_min_snr_gamma():
    schedule = NoiseSchedule()
    a = schedule.alphas_cumprod().float()
    x0, noise = torch.randn(4, 4, 1, 5, 5), torch.randn(4, 4, 1, 5, 5)
    t = torch.tensor([10, 300, 800, 999])
    zeros = lambda x, ts, **kw: torch.zeros_like(x)  # noqa: E731
    plain, weighted = VPredictionLoss(schedule)(zeros, x0, t, noise), VPredictionLoss(schedule, snr_gamma=5.0)(zeros, x0, t, noise)
    snr = a[t] / (1 - a[t])
    expected = torch.tensor([5.0 / (snr[0] + 1), snr[1].clamp(max=5) / (snr[1] + 1), snr[2] / (snr[2] + 1), 1.0])
    torch.testing.assert_close(min_snr_weights(a, t, 5.0), expected)
    torch.testing.assert_close(weighted, plain * expected)
    assert snr[0] > 5 > snr[1] and snr[3] == 0  # the four cases: clipped, unclipped, tiny, the zero-SNR last step
    with pytest.raises(ValueError, match="loss.snr_gamma"):
        load_config(None, ["loss.snr_gamma=-1"])


def test_video_steps_can_keep_the_plain_loss_while_image_steps_use_min_snr(tmp_path, monkeypatch):
    import higen.training.trainer as trainer_module

    used = []

    class Recording(VPredictionLoss):
        def __call__(self, model, x0, *args, **kwargs):
            used.append((x0.shape[2] == 1, self.snr_gamma))
            return super().__call__(model, x0, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "VPredictionLoss", Recording)
    common = ("train.max_steps=6", "cues.image_probability=0.5", "loss.snr_gamma=5", "checkpoint.export_model=false")
    run(tmp_path / "a", *common, "loss.video_snr_gamma=0")
    assert {image for image, _ in used} == {True, False}
    assert all(gamma == (5.0 if image else 0.0) for image, gamma in used)
    used.clear()
    run(tmp_path / "b", *common)  # unset: video steps follow snr_gamma
    assert {gamma for _, gamma in used} == {5.0}
    with pytest.raises(ValueError, match="loss.video_snr_gamma"):
        load_config(None, ["loss.video_snr_gamma=-1"])


def test_noise_and_timesteps_follow_their_keys():
    gens = sample_generators(7, 3, [11], "noise")
    noise = draw_noise(gens, (4, 2, 5, 5), 0.1)
    g = sample_generator(7, 3, 11, "noise")
    # Offset noise: Gaussian plus 0.1 x one value per (c, f), constant over (h, w).
    expected = torch.randn(1, 4, 2, 5, 5, generator=g) + 0.1 * torch.randn(1, 4, 2, 1, 1, generator=g)
    assert torch.equal(noise, expected)
    t = draw_timesteps(sample_generators(0, 0, list(range(5000)), "timestep"), 1000)
    assert t.min() >= 0 and t.max() <= 999 and t.dtype == torch.int64
    # U{0..999}: mean 499.5, standard deviation 288.7; the mean of 5000 draws is within 4 sigma.
    assert abs(t.float().mean().item() - 499.5) < 4 * 288.7 / math.sqrt(5000)


def test_timestep_range_draws_only_inside_it(tmp_path, monkeypatch):
    t = draw_timesteps(sample_generators(0, 0, list(range(2000)), "timestep"), 1000, 600)
    assert t.min() >= 600 and t.max() <= 999 and abs(t.float().mean().item() - 799.5) < 4 * 115.5 / math.sqrt(2000)
    with pytest.raises(ValueError, match="low < high"):
        draw_timesteps(sample_generators(0, 0, [0], "timestep"), 1000, 1000)
    for bad in ("loss.timesteps=[500,500]", "loss.timesteps=[-1,10]"):
        with pytest.raises(ValueError, match="loss.timesteps"):
            tiny_config(tmp_path / "run", bad)
    # The trainer draws from the configured range, and refuses one past the schedule.
    import higen.training.trainer as trainer_module

    drawn = []
    monkeypatch.setattr(trainer_module, "draw_timesteps", lambda *a: drawn.append(draw_timesteps(*a)) or drawn[-1])
    run(tmp_path / "run", "train.max_steps=3", "loss.timesteps=[990,1000]", "checkpoint.export_model=false")
    assert len(drawn) == 3 and all(990 <= int(x) <= 999 for t in drawn for x in t)
    with pytest.raises(ValueError, match="past the schedule"):
        run(tmp_path / "run2", "train.max_steps=1", "loss.timesteps=[0,1001]")


def test_per_sample_randomness_is_independent_of_the_batch():
    alone = sample_generators(5, 9, [42], "noise")[0]
    batched = sample_generators(5, 9, [3, 42, 8], "noise")[1]
    assert torch.equal(torch.randn(8, generator=alone), torch.randn(8, generator=batched))
    reference = torch.randn(8, generator=sample_generator(5, 9, 42, "noise"))
    for other in (sample_generator(5, 10, 42, "noise"), sample_generator(5, 9, 43, "noise"), sample_generator(5, 9, 42, "timestep"),
                  sample_generator(6, 9, 42, "noise")):
        assert not torch.equal(reference, torch.randn(8, generator=other))


# ------------------------------------------------------------------------------------ conditioning


def test_caption_dropout_rate_and_null_text():
    n = 4000
    rate = sum(caption_dropout_mask(3, 1, list(range(n)), 0.1)) / n
    assert abs(rate - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n)  # binomial, 4 sigma
    assert not any(caption_dropout_mask(3, 1, list(range(50)), 0.0))
    assert all(caption_dropout_mask(3, 1, list(range(50)), 1.0))
    # The null text is what inference uses for the unconditional branch.
    assert NULL_TEXT == GenerationSettings().negative_prompt == ""
    components = tiny_components()
    data = SyntheticData(frames=4, height=32, width=32, length=8, seed=0, batch_size=2)
    batch = data.next_batch("video")
    dropped = conditioner(components, p=1.0)(batch, step=1)
    kept = conditioner(components, p=0.0)(batch, step=1)
    null = components.text_encoder.encode([""])
    assert dropped.dropped == [True, True]
    assert torch.equal(dropped.text, null.expand(2, -1, -1))
    assert torch.equal(kept.text, components.text_encoder.encode(batch.captions))


def test_image_step_rate_is_per_step_and_rank_free():
    n, p = 4000, 0.25
    kinds = [step_kind(9, s, p) for s in range(1, n + 1)]
    rate = kinds.count("image") / n
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert kinds == [step_kind(9, s, p) for s in range(1, n + 1)]  # a function of (seed, step) only
    assert step_kind(9, 1, 1.0, has_images=False) == "video"
    assert step_kind(9, 1, 0.0, has_videos=False) == "image"


@pytest.mark.parametrize("frames", [4, 5])
def test_video_conditioning(frames):
    components = tiny_components()
    data = SyntheticData(frames=frames, height=32, width=32, length=8, seed=0, batch_size=2)
    batch = data.next_batch("video")
    cond = conditioner(components, seed=4)
    inputs = cond(batch, step=3)
    latents = inputs.latents
    assert latents.shape == (2, 4, frames, 16, 16)
    # The spatial prior is the clean latent of the middle frame (higen.md §1).
    assert torch.equal(inputs.cues.spatial_prior, latents[:, :, frames // 2])
    assert torch.equal(inputs.cues.motion, motion_from_latents(latents).float())
    # Latents are a posterior sample keyed by (seed, step, index): the same alone or in any batch.
    i = batch.indices[1]
    own = components.autoencoder.encode(batch.pixels[1:2], sample=True, generator=sample_generator(4, 3, i, "posterior"))
    assert torch.equal(latents[1:2], own)
    mean = components.autoencoder.encode(batch.pixels[1:2], sample=False)
    assert not torch.equal(own, mean)
    # Appearance: 1 - k (1 - cos) of the per-frame embeddings.
    e = torch.nn.functional.normalize(components.embedder.embed(batch.pixels), dim=-1)
    cos = e @ e.transpose(1, 2)
    torch.testing.assert_close(inputs.cues.appearance, 1 - 10.0 * (1 - cos))


def test_image_step_cues_are_what_stage_one_sees():
    components = tiny_components()
    data = SyntheticData(frames=4, height=32, width=32, length=8, seed=0, batch_size=2)
    inputs = conditioner(components)(data.next_batch("image"), step=1)
    b = 2
    assert inputs.latents.shape[2] == 1
    # Cues.spatial_stage: no prior (the UNet reads zeros), motion [0], appearance ones.
    assert inputs.cues.spatial_prior is None
    assert torch.equal(inputs.cues.motion, torch.zeros(b, 1))
    assert torch.equal(inputs.cues.appearance, torch.ones(b, 1, 1))
    # The 1 x 1 appearance matrix and ones (b, 1, W) are embedded identically.
    unet = components.unet
    width = unet.config.appearance_width
    torch.testing.assert_close(unet.appearance_embedding(inputs.cues.appearance, b, 1),
                               unet.appearance_embedding(torch.ones(b, 1, width), b, 1))


def test_appearance_scale_five_is_the_release_remap():
    e = torch.randn(2, 6, 16)
    n = torch.nn.functional.normalize(e, dim=-1)
    torch.testing.assert_close(appearance_from_embeddings(e), 5 * n @ n.transpose(1, 2) - 4)
    torch.testing.assert_close(appearance_from_embeddings(e, 1.0), n @ n.transpose(1, 2))


# ---------------------------------------------------------------------------- histogram embedder


def _frame_with_square(colour, background=(-1.0, -1.0, -1.0), box=(0, 0, 0, 0), size=40):
    """``1 3 1 H W`` in [-1, 1]: ``background`` with a ``colour`` rectangle at ``box`` = (y0, x0, h, w)."""
    frame = torch.tensor(background).reshape(1, 3, 1, 1, 1).expand(1, 3, 1, size, size).clone()
    y, x, h, w = box
    frame[:, :, :, y : y + h, x : x + w] = torch.tensor(colour).reshape(1, 3, 1, 1, 1)
    return frame


def _centre(k: int, bins: int = 8) -> float:
    """The [-1, 1] value at bin ``k``'s centre ((k + 0.5) / bins on the [0, 1] scale)."""
    return 2 * (k + 0.5) / bins - 1


def test_histogram_bins_and_soft_assignment():
    h = HistogramEmbedder(bins=8)
    c = (_centre(1), _centre(6), _centre(3))
    one = h.embed(_frame_with_square(c, background=c))[0, 0]
    expected = torch.zeros(512)
    expected[1 * 64 + 6 * 8 + 3] = 1.0
    torch.testing.assert_close(one, expected)
    # Halfway between the centres of red bins 1 and 2: half the vote each, sqrt(0.5) after the root.
    half = ((_centre(1) + _centre(2)) / 2, _centre(6), _centre(3))
    soft = h.embed(_frame_with_square(half, background=half))[0, 0]
    assert torch.allclose(soft[1 * 64 + 6 * 8 + 3], torch.tensor(math.sqrt(0.5))) and torch.allclose(soft[2 * 64 + 6 * 8 + 3], torch.tensor(math.sqrt(0.5)))
    assert torch.allclose(soft.norm(), torch.tensor(1.0))


def test_histogram_ignores_position_and_sees_colour_and_size():
    h = HistogramEmbedder()
    red, green, black = (_centre(7), _centre(0), _centre(0)), (_centre(0), _centre(7), _centre(0)), (_centre(0),) * 3
    n = 40 * 40
    a = 160 / n  # a 10 x 16 object covers a = 10% of the 40 x 40 frame
    clip = torch.cat([
        _frame_with_square(red, black, (2, 3, 10, 16)),
        _frame_with_square(red, black, (25, 20, 10, 16)),  # moved: the same histogram
        _frame_with_square(green, black, (25, 20, 10, 16)),  # recoloured
        _frame_with_square(red, black, (5, 5, 20, 16)),  # grown to 2a
    ], dim=2)
    e = h.embed(clip)[0]
    cos = e @ e.T
    assert torch.allclose(cos[0, 1], torch.tensor(1.0), atol=1e-6)
    # Bhattacharyya coefficients of two-colour histograms: sum over bins of sqrt(p q).
    assert torch.allclose(cos[0, 2], torch.tensor(1 - a), atol=1e-6)
    assert torch.allclose(cos[0, 3], torch.tensor(math.sqrt((1 - a) * (1 - 2 * a)) + math.sqrt(a * 2 * a)), atol=1e-6)
    # The default scale 10 maps a complete colour change of a tenth of the frame to about 0.
    appearance = appearance_from_embeddings(e[None], 10.0)[0]
    assert abs(appearance[0, 2].item()) < 1e-4 and torch.allclose(appearance[0, 1], torch.tensor(1.0), atol=1e-5)


def test_histogram_is_float32_under_autocast():
    video = torch.rand(1, 3, 2, 48, 48) * 2 - 1
    h = HistogramEmbedder()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = h.embed(video)
    assert low.dtype == torch.float32 and torch.equal(low, h.embed(video))


# ------------------------------------------------------------------------------------- training runs


def test_run_logs_checkpoints_and_exports(tmp_path):
    out = tmp_path / "run"
    result = run(out, "train.max_steps=4", "checkpoint.every=2", "log.every=1", "cues.image_probability=0.5", "sample.every=4",
                 "sample.steps=2", "sample.prompts=[a red square]")
    records = read_log(out / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) and r["clips_per_s"] > 0 for r in records)
    seed = load_config(None, list(TINY_RUN)).train.seed
    assert [r["kind"] for r in records] == [step_kind(seed, s, 0.5) for s in (1, 2, 3, 4)]
    assert result.step == 4 and result.loss == records[-1]["loss"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_0000004"
    assert (out / "samples" / "step_0000004_0.mp4").is_file()
    # The exported folder holds the EMA weights and loads as a pipeline.
    from higen.pipeline.pipeline import HiGenPipeline

    pipe = HiGenPipeline.from_pretrained(out / "model")
    ema = checkpoint_tensors(out, "ema", 4)
    for name, value in pipe.unet.state_dict().items():
        assert torch.equal(value, ema[name]), name
    assert pipe("a red square", frames=4, spatial_steps=1, temporal_steps=1, seed=0).video.shape == (1, 4, 32, 32, 3)


def test_frozen_groups_stay_and_grad_scale_scales_adam_moments(tmp_path):
    components = tiny_components(dropout=0.0)
    before = {k: v.clone() for k, v in components.unet.state_dict().items()}
    run(tmp_path / "frozen", "train.max_steps=2", "optim.param_groups=[{pattern: temporal, freeze: true}]", components=components)
    after = checkpoint_tensors(tmp_path / "frozen", "model", 2)
    temporal = [k for k in before if "temporal" in k]
    assert temporal and all(torch.equal(after[k], before[k]) for k in temporal)
    assert any(not torch.equal(after[k], before[k]) for k in before if "temporal" not in k)
    assert not any("temporal" in k for k in checkpoint_tensors(tmp_path / "frozen", "optimizer", 2))

    # One step without clipping: Adam's first moment is (1 - b1) g, so grad_scale 0.5 halves it
    # (and quarters the second moment) on the @spatial weights and leaves the others alone.
    common = ("train.max_steps=1", "optim.grad_clip=0")
    run(tmp_path / "plain", *common, components=tiny_components(dropout=0.0))
    run(tmp_path / "scaled", *common, "optim.param_groups=[{pattern: '@spatial', grad_scale: 0.5}]", components=tiny_components(dropout=0.0))
    plain, scaled = checkpoint_tensors(tmp_path / "plain", "optimizer", 1), checkpoint_tensors(tmp_path / "scaled", "optimizer", 1)
    import re

    spatial = re.compile(SPATIAL_PATTERN)
    checked = 0
    for key, value in plain.items():
        name, _, field = key.rpartition("::")
        if field in ("exp_avg", "exp_avg_sq"):
            factor = (0.5 if field == "exp_avg" else 0.25) if spatial.search(name) else 1.0
            torch.testing.assert_close(scaled[key], factor * value, rtol=1e-5, atol=1e-12)
            checked += 1
    assert checked > 0


# Runs compared for equality differ only in the order of floating-point sums (~1e-7 relative). Adam
# divides each gradient by its running RMS + eps: a gradient that is zero in exact arithmetic (e.g. a
# bias followed by a GroupNorm) comes out as +-1e-10 of float noise, which eps = 1e-8 would turn into
# a full +-lr step of arbitrary sign. eps = 1e-3 keeps updates proportional to such gradients, so
# the comparison sees the trainer's arithmetic rather than Adam's sign amplification.
EQUIVALENCE = ("optim.eps=1e-3", "optim.grad_clip=0", "log.every=1")
# Weights near 1 have a float32 spacing of 1.2e-7; equal runs agree to a few of those.
WEIGHT_TOLERANCE = 1e-6


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert max((a[k] - initial[k]).abs().max().item() for k in a) > 100 * WEIGHT_TOLERANCE  # the runs did train
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < WEIGHT_TOLERANCE, worst


def test_grad_accumulation_matches_a_bigger_batch(tmp_path):
    # Dropout off: its masks come from the global RNG in a different order for 2 x 1 and 1 x 2 samples.
    components = tiny_components(dropout=0.0)
    initial = {k: v.clone() for k, v in components.unet.state_dict().items()}
    run(tmp_path / "accum", *EQUIVALENCE, "train.batch_size=1", "train.grad_accum=2", "train.max_steps=3", components=components)
    run(tmp_path / "batch", *EQUIVALENCE, "train.batch_size=2", "train.max_steps=3", components=tiny_components(dropout=0.0))
    a, b = checkpoint_tensors(tmp_path / "accum", "model", 3), checkpoint_tensors(tmp_path / "batch", "model", 3)
    assert_same_weights(a, b, initial)
    la, lb = read_log(tmp_path / "accum" / "log.jsonl"), read_log(tmp_path / "batch" / "log.jsonl")
    np.testing.assert_allclose([r["loss"] for r in la], [r["loss"] for r in lb], rtol=1e-5)


def test_vgen_init_starts_from_the_released_layout(tmp_path):
    """``model.init=vgen``: the official implementation's tiny fixture (VGen key names) is fine-tuned."""
    from higen.models.vgen import unet_config_from_vgen_kwargs, unet_from_vgen_state_dict
    from higen.tiny import tiny_autoencoder, tiny_text_encoder

    fixture = Path(__file__).parent / "fixtures" / "vgen_higen_tiny"
    kwargs = json.loads((fixture / "config.json").read_text())["vgen_kwargs"]
    tiny_text_encoder(dim=kwargs["y_dim"]).save_pretrained(tmp_path / "text_encoder")
    tiny_autoencoder().save_pretrained(tmp_path / "autoencoder")
    out = tmp_path / "run"
    cfg = tiny_config(out, "model.init=vgen", f"model.path={fixture / 'state_dict.safetensors'}", f"model.vgen_config={fixture / 'config.json'}",
                      f"model.text_encoder={tmp_path / 'text_encoder'}", f"model.autoencoder={tmp_path / 'autoencoder'}",
                      "train.max_steps=1", "optim.lr=1e-4", "cues.appearance_embedder=ones", "checkpoint.export_model=false")
    train(cfg, data_factory=synthetic_factory())
    meta = json.loads((out / "checkpoints" / "step_0000001" / "trainer.json").read_text())
    assert meta["unet_config"] == unet_config_from_vgen_kwargs(kwargs).to_dict()
    initial = unet_from_vgen_state_dict(load_file(str(fixture / "state_dict.safetensors")), kwargs).state_dict()
    trained = checkpoint_tensors(out, "model", 1)
    assert trained.keys() == initial.keys()
    # One AdamW step moves each weight by at most about lr (plus rounding): it started from the fixture.
    change = max((trained[k] - initial[k]).abs().max().item() for k in trained)
    assert 0 < change < 1.5e-4


def test_folder_init_trains_fp32_weights_from_an_fp16_folder(tmp_path):
    """The bundled model is stored in fp16; fine-tuning it must keep fp32 master weights (AdamW updates of
    ~lr would round away in fp16, and fp16 kernels crawl on a CPU)."""
    from safetensors.torch import save_file

    from support import save_tiny_model
    from higen.training.components import build_unet

    model = save_tiny_model(tmp_path / "tiny")
    weights = model / "unet" / "model.safetensors"
    half = {k: v.half() for k, v in load_file(str(weights)).items()}
    save_file(half, str(weights))
    unet = build_unet(tiny_config(tmp_path / "run", "model.init=folder", f"model.path={model}"))
    assert {p.dtype for p in unet.parameters()} == {torch.float32}
    assert all(torch.equal(unet.state_dict()[k], v.float()) for k, v in half.items())


def test_add_prior_motion_widens_a_folder_zero_initialised_and_resumes_into_the_same_config(tmp_path):
    from support import save_tiny_model
    from higen.training.components import build_unet, expected_unet_config

    model = save_tiny_model(tmp_path / "tiny")
    cfg = tiny_config(tmp_path / "run", "model.init=folder", f"model.path={model}", "model.add_prior_motion=true")
    unet = build_unet(cfg)
    assert unet.config.prior_motion and expected_unet_config(cfg) == unet.config
    assert not any(p.any() for p in unet.prior_velocity.parameters())
    resumed = build_unet(cfg, load_weights=False)  # resuming builds the widened UNet, to take the checkpoint's weights
    assert set(resumed.state_dict()) == set(unet.state_dict())
    with pytest.raises(ValueError, match="model.add_prior_motion"):
        load_config(None, ["model.add_prior_motion=true"])


# ------------------------------------------------------------------------------------------------ CLI


def _write_clips(folder: Path, n: int) -> Path:
    """``n`` tiny MP4 clips of moving squares and a manifest.csv naming them."""
    from higen.io.video import write_video
    from higen.training.synthetic import render_clip

    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,caption"]
    for i in range(n):
        video, caption = render_clip(0, i, 8, 32, 32)
        frames = ((video.permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        write_video(folder / f"clip{i}.mp4", frames, fps=8)
        rows.append(f"clip{i}.mp4,{caption}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def _cli(args: list[str], capsys) -> tuple[int, str]:
    from higen.cli.main import main

    code = main(args)
    return code, capsys.readouterr().err


def _cli_config(tmp_path: Path, **extra) -> Path:
    from support import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny")
    manifest = _write_clips(tmp_path / "clips", 4)
    config = {
        "model": {"init": "folder", "path": str(model)},
        "data": {"source": "manifest", "videos": str(manifest), "frames": 4, "height": 32, "width": 32, "fps": 8.0, "num_workers": 0},
        "train": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "batch_size": 2},
        "optim": {"warmup_steps": 0},
        "log": {"progress": False, "tensorboard": False},
    }
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / "train.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_trains_from_a_manifest_and_resumes(tmp_path, capsys):
    config = _cli_config(tmp_path)
    code, err = _cli(["train", "--config", str(config)], capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "model" / "model_index.json").is_file()
    # Continue the finished run for two more steps.
    code, err = _cli(["train", "--config", str(config), "--resume", "train.max_steps=4"], capsys)
    assert code == 0, err
    assert [r["step"] for r in read_log(tmp_path / "run" / "log.jsonl")][-1] == 4
    assert "changed: train.max_steps: 2 -> 4" in err


def test_cli_on_a_manifest_where_nothing_loads_says_so_in_one_line(tmp_path, capsys):
    config = _cli_config(tmp_path)
    clips = tmp_path / "clips"
    for clip in clips.glob("*.mp4"):
        clip.write_bytes(b"not a video")
    code, err = _cli(["train", "--config", str(config)], capsys)
    assert code == 2
    assert "no video sample of epoch 0 could be loaded: all 4 entries were skipped" in err
    assert "Traceback" not in err and err.count("higen train: error:") == 1


def test_train_export_writes_any_checkpoint_as_a_model_folder(tmp_path, capsys):
    from higen.pipeline.pipeline import HiGenPipeline

    config = _cli_config(tmp_path, train={"max_steps": 3}, checkpoint={"every": 1, "keep_last": 5})
    assert _cli(["train", "--config", str(config)], capsys)[0] == 0
    run_dir = tmp_path / "run"
    code, err = _cli(["train-export", str(run_dir / "checkpoints" / "step_0000002"), str(tmp_path / "ema2")], capsys)
    assert code == 0, err
    ema2 = HiGenPipeline.from_pretrained(tmp_path / "ema2")
    for name, value in checkpoint_tensors(run_dir, "ema", 2).items():
        assert torch.equal(ema2.unet.state_dict()[name], value), name
    # A run folder means its latest checkpoint; --no-ema takes the raw weights; the target is replaced.
    assert _cli(["train-export", str(run_dir), str(tmp_path / "ema2"), "--no-ema"], capsys)[0] == 0
    raw3 = HiGenPipeline.from_pretrained(tmp_path / "ema2")
    for name, value in checkpoint_tensors(run_dir, "model", 3).items():
        assert torch.equal(raw3.unet.state_dict()[name], value), name
    assert raw3.defaults == HiGenPipeline.from_pretrained(run_dir / "model").defaults
    assert raw3("a red square", frames=4, spatial_steps=1, temporal_steps=1, seed=0).video.shape == (1, 4, 32, 32, 3)
    code, err = _cli(["train-export", str(tmp_path / "clips"), str(tmp_path / "x")], capsys)
    assert code == 2 and "neither a complete checkpoint nor a run folder" in err
    assert not (tmp_path / "x").exists()
    # generation.KEY=VALUE replaces single generation defaults; the rest stay the checkpoint config's.
    code, err = _cli(["train-export", str(run_dir), str(tmp_path / "m"), "generation.motion=30", "generation.sampler=dpm++"], capsys)
    assert code == 0, err
    changed = HiGenPipeline.from_pretrained(tmp_path / "m").defaults
    assert (changed.motion, changed.sampler) == (30.0, "dpm++")
    assert dataclasses.replace(changed, motion=raw3.defaults.motion, sampler=raw3.defaults.sampler) == raw3.defaults
    for bad, words in [("train.max_steps=9", "only generation settings"), ("generation.motoin=3", "unknown generation settings: motoin"),
                       ("generation.spatial_steps=2.5", "generation.spatial_steps must be an integer")]:
        code, err = _cli(["train-export", str(run_dir), str(tmp_path / "x"), bad], capsys)
        assert code == 2 and words in err, (bad, err)
        assert not (tmp_path / "x").exists()


def test_dotted_overrides_reach_one_generation_setting(tmp_path):
    cfg = tiny_config(tmp_path / "run", "generation={motion: 42.0, sampler: dpm++}", "generation.motion=7", "generation.appearance=0.5")
    assert cfg.generation == {"motion": 7.0, "sampler": "dpm++", "appearance": 0.5}
    with pytest.raises(ValueError, match="generation.motion is one value and has no sub-keys"):
        tiny_config(tmp_path / "run", "generation.motion.x=1")


@pytest.mark.parametrize(
    "override, words",
    [
        ("optim.lrr=1e-4", ["optim.lrr", "did you mean 'lr'"]),
        ("optim.lr=fast", ["optim.lr", "number"]),
        ("train.max_steps=2.5", ["train.max_steps", "integer"]),
    ],
)
def test_cli_config_errors_name_the_key(tmp_path, capsys, override, words):
    code, err = _cli(["train", "--config", str(_cli_config(tmp_path)), override], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and all(w in err for w in words), err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_refuses_missing_manifest_files_and_other_models(tmp_path, capsys):
    config = _cli_config(tmp_path)
    (tmp_path / "clips" / "clip2.mp4").unlink()
    code, err = _cli(["train", "--config", str(config)], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "clip2.mp4" in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()

    config = _cli_config(tmp_path / "b")
    assert _cli(["train", "--config", str(config)], capsys)[0] == 0
    # A scratch UNet of another size cannot continue this run.
    code, err = _cli(["train", "--config", str(config), "--resume", "model.init=scratch", "model.unet.base_channels=64",
                      f"model.text_encoder={tmp_path / 'b' / 'tiny' / 'text_encoder'}", "model.unet.text_dim=16",
                      "model.unet.channel_mult=[1,2]", "model.unet.attention_levels=[0]", "model.unet.head_dim=16"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "different model" in err and "base_channels" in err, err
    assert sorted(p.name for p in (tmp_path / "b" / "run" / "checkpoints").iterdir()) == ["latest", "step_0000002"]


def test_train_cache_then_train_from_it(tmp_path, capsys):
    world = {"source": "world", "length": 6, "videos": None}
    config = _cli_config(tmp_path, data=world)
    cache = tmp_path / "cache"
    code, err = _cli(["train-cache", str(cache), "--config", str(config), "--batch-size", "4", "--shard-size", "4"], capsys)
    assert code == 0, err
    from higen.data.cache import open_cache

    info = json.loads((cache / "cache.json").read_text())
    assert info["count"] == 6 and sorted(info["fields"]) == ["appearance", "latents", "motion", "text"]
    settings = info["settings"]
    row = open_cache(cache, settings).load(5, np.random.default_rng(0)).tensors
    assert row["latents"].shape == (4, 4, 16, 16) and row["text"].shape == (77, 16)
    # The cached cues are the training cues of the cached latents.
    torch.testing.assert_close(row["motion"], motion_from_latents(row["latents"][None])[0].float())
    torch.testing.assert_close(torch.diagonal(row["appearance"]), torch.ones(4))
    assert settings["appearance"] == "histogram" and settings["appearance_scale"] == 10.0

    on_cache = ["data.source=cache", f"data.videos={cache}"]
    code, err = _cli(["train", "--config", str(config), *on_cache], capsys)
    assert code == 0, err
    assert len(read_log(tmp_path / "run" / "log.jsonl")) == 1  # log.every 10: the last step only
    # A run whose cues differ from the cache's is refused, naming the setting.
    code, err = _cli(["train", "--config", str(config), *on_cache, "cues.appearance_embedder=ones", f"train.output_dir={tmp_path / 'other'}"], capsys)
    assert code == 2 and "appearance" in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "other" / "checkpoints").exists()


@pytest.mark.slow
def test_a_few_hundred_steps_lower_the_loss(tmp_path):
    """Training a tiny model on the procedural world: the last 50 steps' mean loss is clearly below the first 50's.

    The same as ``higen train --config configs/world_tiny_cpu.yaml`` with a smaller model (docs/training.md).
    """
    out = tmp_path / "long"
    run(out, "train.max_steps=300", "log.every=1", "optim.lr=5e-4", "optim.warmup_steps=20", "train.batch_size=4",
        "checkpoint.every=1000", "checkpoint.export_model=false", "data.length=256", "data.num_workers=0",
        components=tiny_components(dropout=0.0), factory=make_training_data)
    losses = [r["loss"] for r in read_log(out / "log.jsonl")]
    first, last = np.mean(losses[:50]), np.mean(losses[-50:])
    print(f"mean loss, steps 1-50: {first:.4f}; steps 251-300: {last:.4f}", file=sys.stderr)
    assert last < 0.8 * first


def test_example_configs_are_valid():
    configs = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    assert len(configs) >= 3
    for path in configs:
        cfg = load_config(path)
        assert cfg.train.output_dir.startswith("runs/"), path


def test_a_config_can_start_from_a_base_config(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "first.yaml").write_text(
        "data:\n  source: world\ntrain:\n  output_dir: runs/first\n  max_steps: 100\n  batch_size: 4\noptim:\n  lr: 1.0e-3\n"
        "model:\n  unet:\n    attention_levels: [1, 2]\n    base_channels: 64\n")
    (tmp_path / "sub" / "second.yaml").write_text(  # base is relative to the file naming it
        "base: ../first.yaml\ntrain:\n  output_dir: runs/second\nmodel:\n  unet:\n    attention_levels: [2]\n")
    (tmp_path / "third.yaml").write_text("base: sub/second.yaml\noptim:\n  lr: 2.0e-4\n")
    first, third = load_config(tmp_path / "first.yaml"), load_config(tmp_path / "third.yaml", ["train.max_steps=7"])
    # a section named again replaces only the keys it sets; a list replaces the base's list
    assert third.train.output_dir == "runs/second" and third.train.batch_size == 4 and third.train.max_steps == 7
    assert list(third.model.unet.attention_levels) == [2]
    assert third.model.unet.base_channels == 64 and third.optim.lr == pytest.approx(2.0e-4)
    assert first.train.output_dir == "runs/first"
    (tmp_path / "loop_a.yaml").write_text("base: loop_b.yaml\n")
    (tmp_path / "loop_b.yaml").write_text("base: loop_a.yaml\n")
    with pytest.raises(ValueError, match="loop"):
        load_config(tmp_path / "loop_a.yaml")
    (tmp_path / "orphan.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "orphan.yaml")
    (tmp_path / "odd.yaml").write_text("base: [first.yaml]\n")
    with pytest.raises(ValueError, match="base must be the path"):
        load_config(tmp_path / "odd.yaml")


# ---------------------------------------------------------------------- the plain (non-decoupled) ablation


def test_without_decoupling_every_step_sees_the_stage_one_inputs():
    components = tiny_components()
    data = SyntheticData(frames=4, height=32, width=32, length=8, seed=0, batch_size=2)
    batch = data.next_batch("video")
    plain = Conditioner(components.text_encoder, components.autoencoder, components.embedder, seed=4,
                        caption_dropout=0.0, appearance_scale=10.0, device=torch.device("cpu"), decoupled=False)(batch, step=3)
    higen = conditioner(components, seed=4)(batch, step=3)
    assert torch.equal(plain.latents, higen.latents) and torch.equal(plain.text, higen.text)
    assert plain.cues.spatial_prior is None and higen.cues.spatial_prior is not None
    assert torch.equal(plain.cues.motion, torch.zeros(2, 3))
    assert torch.equal(plain.cues.appearance, torch.ones(2, 4, 4))
    assert higen.cues.motion.abs().sum() > 0  # the HiGen inputs do carry a signal here


def test_generation_section_and_the_ablation_reach_the_exported_model(tmp_path):
    out = tmp_path / "run"
    run(out, "train.max_steps=1", "cues.decoupled=false", "generation={motion: 42.0, sampler: dpm++}")
    saved = json.loads((out / "model" / "pipeline.json").read_text())
    assert saved["decoupled"] is False and saved["motion"] == 42.0 and saved["sampler"] == "dpm++"
    with pytest.raises(ValueError, match="generation: unknown generation settings: motoin"):
        tiny_config(out, "generation={motoin: 3}")


def test_overrides_may_follow_options(monkeypatch):
    from higen.cli import main as cli

    seen = {}
    monkeypatch.setattr("higen.cli.train.run_cache", lambda args: seen.setdefault("overrides", args.overrides) and 0)
    parser_args = ["train-cache", "out", "data.fps=4", "--kind", "image", "data.frames=3"]
    assert cli.main(parser_args) == 0
    assert seen["overrides"] == ["data.fps=4", "data.frames=3"]
    with pytest.raises(SystemExit):
        cli.main(["train-cache", "out", "--kind", "image", "stray"])
