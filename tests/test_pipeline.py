"""The two-stage pipeline end to end with tiny random components (support.tiny_pipeline)."""

import numpy as np
import pytest
import torch

from higen.diffusion.sampling import SAMPLERS
from higen.diffusion.schedule import offset_noise
from higen.pipeline.pipeline import HiGenPipeline

from support import TINY_DEFAULTS, tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


def _video(pipe, prompt="a red ball moves left", **kwargs):
    return pipe(prompt, **{"seed": 7, **kwargs}).video


def test_generation_shapes_and_dtypes(pipe):
    out = pipe(["a red ball", "a blue square"], seed=1, frames=3, height=16, width=24, output_latents=True)
    assert out.video.shape == (2, 3, 16, 24, 3) and out.video.dtype == np.uint8
    assert out.keyframe.shape == (2, 16, 24, 3) and out.keyframe.dtype == np.uint8
    assert out.latents.shape == (2, 4, 3, 8, 12) and out.prior_latents.shape == (2, 4, 8, 12)
    assert out.settings["frames"] == 3 and out.settings["seed"] == 1 and out.settings["prompt"] == ["a red ball", "a blue square"]
    assert out.video.std() > 0  # not a constant image
    # Defaults come from the model's GenerationSettings.
    assert pipe("a cat", seed=0).video.shape == (1, TINY_DEFAULTS["frames"], TINY_DEFAULTS["height"], TINY_DEFAULTS["width"], 3)


def test_same_seed_is_bitwise_identical_and_another_seed_differs(pipe):
    a, b, c = _video(pipe, seed=3), _video(pipe, seed=3), _video(pipe, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    generator_run = pipe("a red ball moves left", generator=torch.Generator().manual_seed(3)).video
    assert np.array_equal(generator_run, a)


def _noises(seed, b=1, c=4, f=TINY_DEFAULTS["frames"], h=16, w=16, strength=0.1):
    """The noise a seed means: spatial b c 1 h w first, then temporal with offset noise (the pipeline's order)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((b, c, 1, h, w), generator=g), offset_noise((b, c, f, h, w), strength, generator=g)


def test_explicit_noise_is_used(pipe):
    spatial, temporal = _noises(11)
    assert np.array_equal(_video(pipe, seed=999, spatial_noise=spatial, temporal_noise=temporal), _video(pipe, seed=11))
    # Each noise is used: changing either one changes the video.
    base = _video(pipe, spatial_noise=spatial, temporal_noise=temporal)
    assert not np.array_equal(_video(pipe, spatial_noise=-spatial, temporal_noise=temporal), base)
    assert not np.array_equal(_video(pipe, spatial_noise=spatial, temporal_noise=-temporal), base)
    with pytest.raises(ValueError, match="temporal_noise has shape"):
        pipe("a cat", temporal_noise=temporal[:, :, :2])


def test_prompt_embeds_equal_the_prompt_path(pipe):
    embeds = pipe.encode_prompts(["a red ball moves left"])
    negative = pipe.encode_prompts([""])
    by_text = _video(pipe)
    assert np.array_equal(_video(pipe, None, prompt_embeds=embeds, negative_prompt_embeds=negative), by_text)
    # Without negative embeddings the pipeline encodes the default negative prompt "" itself.
    assert np.array_equal(_video(pipe, None, prompt_embeds=embeds), by_text)
    with pytest.raises(ValueError, match="do not match"):
        pipe(prompt_embeds=embeds, negative_prompt_embeds=negative[:, :5])


def test_negative_prompt_changes_the_result(pipe):
    assert not np.array_equal(_video(pipe, negative_prompt="blurry"), _video(pipe))
    assert np.array_equal(_video(pipe, negative_prompt=""), _video(pipe))  # "" is the default


def test_keyframe_skips_the_spatial_stage_and_becomes_the_prior(pipe):
    rng = np.random.default_rng(0)
    keyframe = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    stages = []
    out = pipe("a cat", seed=5, keyframe=keyframe, output_latents=True, callback=lambda stage, step, total: stages.append(stage))
    assert "spatial" not in stages and "temporal" in stages
    image = torch.from_numpy(keyframe).permute(2, 0, 1)[None].float() / 127.5 - 1  # h w 3 -> 1 3 h w in [-1, 1]
    expected_prior = pipe.autoencoder.encode(image[:, :, None])[:, :, 0]
    torch.testing.assert_close(out.prior_latents, expected_prior, atol=0, rtol=0)
    # The prior steers the video: another keyframe, same seed, gives another video.
    other = pipe("a cat", seed=5, keyframe=255 - keyframe).video
    assert not np.array_equal(other, out.video)
    # A keyframe of another size is resized to the video's size.
    assert pipe("a cat", seed=5, keyframe=rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).video.shape == out.video.shape
    # The same prior given as latents gives the same video.
    assert np.array_equal(pipe("a cat", seed=5, spatial_prior=expected_prior).video, out.video)


def test_callback_reports_stages_and_steps(pipe):
    calls = []
    pipe("a cat", seed=0, spatial_steps=2, temporal_steps=3, callback=lambda *a: calls.append(a))
    assert calls == [("spatial", 1, 2), ("spatial", 2, 2), ("temporal", 1, 3), ("temporal", 2, 3), ("temporal", 3, 3), ("decode", 1, 1)]


def test_output_latents_decode_to_the_video(pipe):
    out = pipe("a cat", seed=2, output_latents=True)
    assert np.array_equal(pipe.decode(out.latents), out.video)
    assert np.array_equal(pipe.decode(out.prior_latents[:, :, None])[:, 0], out.keyframe)
    plain = pipe("a cat", seed=2)
    assert plain.latents is None and plain.prior_latents is None


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs(pipe, sampler):
    out = pipe("a cat", seed=0, sampler=sampler)
    assert out.video.shape == (1, 4, 32, 32, 3) and out.settings["sampler"] == sampler


def test_samplers_differ(pipe):
    assert not np.array_equal(_video(pipe, sampler="ddim"), _video(pipe, sampler="dpm++"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(frames=0), "frames must be at least 1"),
        (dict(height=33), "height 33 must be a positive multiple of 4"),
        (dict(width=6), "width 6 must be a positive multiple of 4"),
        (dict(sampler="euler"), "unknown sampler 'euler'"),
        (dict(spatial_steps=-1), "spatial_steps must be at least 1"),
        (dict(temporal_steps=0), "temporal_steps must be at least 1"),
        (dict(spatial_guidance=-2.0), "spatial_guidance must not be negative"),
        (dict(temporal_guidance=-0.5), "temporal_guidance must not be negative"),
        (dict(decode_chunk_size=0), "decode_chunk_size must be at least 1"),
    ],
)
def test_bad_inputs_name_the_problem(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe("a cat", seed=0, **kwargs)


def test_missing_prompt(pipe):
    with pytest.raises(ValueError, match="prompt"):
        pipe()
    with pytest.raises(ValueError, match="empty"):
        pipe([])


def test_save_and_load_give_the_identical_video(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    loaded = HiGenPipeline.from_pretrained(tmp_path / "model")
    assert loaded.defaults == pipe.defaults and loaded.schedule == pipe.schedule
    assert np.array_equal(_video(loaded), _video(pipe))


def test_failed_save_leaves_nothing(pipe, tmp_path, monkeypatch):
    def broken(directory):
        raise OSError("disk full")

    monkeypatch.setattr(pipe.autoencoder, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        pipe.save_pretrained(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_chunked_decode_equals_whole_decode(pipe):
    out = pipe("a cat", seed=6, output_latents=True)
    whole = pipe.decode(out.latents, chunk_size=TINY_DEFAULTS["frames"])
    for chunk in (1, 3):
        # uint8 after rounding: float differences of ~1e-6 may move a value across a rounding boundary.
        assert np.abs(pipe.decode(out.latents, chunk_size=chunk).astype(int) - whole).max() <= 1
    assert np.abs(_video(pipe, decode_chunk_size=1).astype(int) - _video(pipe, decode_chunk_size=4)).max() <= 1


def test_no_guidance_runs_one_branch(pipe):
    calls = []
    original = pipe.text_encoder.encode

    def counting(prompts):
        calls.append(list(prompts))
        return original(prompts)

    pipe.text_encoder.encode = counting
    try:
        pipe("a cat", seed=0, spatial_guidance=1.0, temporal_guidance=1.0)
        pipe("a cat", seed=0)
    finally:
        del pipe.text_encoder.encode
    assert calls == [["a cat"], ["a cat", ""]]  # guidance 1 needs no negative prompt


def test_minilm_pipeline_generates_and_round_trips(tmp_path):
    pipe = tiny_pipeline(seed=1, text_encoder="minilm", frames=2)
    assert pipe.unet.config.text_dim == 384
    video = _video(pipe)
    assert video.shape == (1, 2, 32, 32, 3)
    pipe.save_pretrained(tmp_path / "model")
    assert [p.name for p in (tmp_path / "model" / "text_encoder").iterdir()] == ["config.json"]  # no weight copy
    assert np.array_equal(_video(HiGenPipeline.from_pretrained(tmp_path / "model")), video)


def test_a_model_without_decoupling_samples_in_one_stage_and_ignores_the_cue_controls():
    from support import tiny_pipeline

    pipe = tiny_pipeline(decoupled=False)
    stages = []
    out = pipe("a cat", seed=0, motion=300.0, appearance=0.9, callback=lambda stage, i, n: stages.append(stage))
    assert "spatial" not in stages and "temporal" in stages
    same = pipe("a cat", seed=0, motion=0.0, appearance=0.0)
    assert np.array_equal(out.video, same.video)
    # ...while a HiGen model's video does depend on them.
    higen = tiny_pipeline()
    assert not np.array_equal(higen("a cat", seed=0, motion=300.0).video, higen("a cat", seed=0, motion=0.0).video)
