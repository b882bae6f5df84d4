"""The Cues constructors (spatial stage, user controls, a training clip) and the generation settings' validation."""

import math

import pytest
import torch
import torch.nn.functional as F

from higen.cues import Cues, appearance_from_embeddings, appearance_template, motion_constant, motion_from_latents
from higen.models.config import tiny_unet_config
from higen.models.unet import HiGenUNet
from higen.models.vgen import unet_from_vgen_state_dict
from higen.pipeline.settings import GenerationSettings, SettingError


# ------------------------------------------------------------------------------------------- cues
def test_spatial_stage_cues_are_what_the_reference_image_pass_uses(vgen_tiny):
    kwargs, state, io = vgen_tiny
    model = unet_from_vgen_state_dict(state, kwargs)
    b = io["x_image"].shape[0]
    cues = Cues.spatial_stage(b)
    assert cues.spatial_prior is None and torch.equal(cues.motion, torch.zeros(b, 1)) and torch.equal(cues.appearance, torch.ones(b, 1, 1))
    with torch.no_grad():
        ours = model(io["x_image"], io["t"], io["y"], **cues.unet_kwargs())
        # the reference's image pass: zero prior, motion [0], appearance ones of the release's width 32
        explicit = model(io["x_image"], io["t"], io["y"], spatial_prior=torch.zeros(b, 4, 8, 16), motion=torch.zeros(b),
                         appearance=torch.ones(b, 1, 32))
    torch.testing.assert_close(ours, explicit, atol=0, rtol=0)
    torch.testing.assert_close(ours, io["out_image"], atol=1e-5, rtol=0)


def test_spatial_stage_cues_over_frames_are_the_unets_defaults():
    config = tiny_unet_config()
    model = HiGenUNet(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
        x, t, text = torch.randn(2, 4, 3, 8, 8), torch.tensor([10, 700]), torch.randn(2, 5, config.text_dim)
        cues = Cues.spatial_stage(2, frames=3)
        assert torch.equal(cues.motion, torch.zeros(2, 2)) and torch.equal(cues.appearance, torch.ones(2, 3, 3))
        torch.testing.assert_close(model(x, t, text, **cues.unet_kwargs()), model(x, t, text), atol=0, rtol=0)
        # the all-ones matrix means what ones of the model's width mean
        explicit = model(x, t, text, motion=torch.zeros(2, 2), appearance=torch.ones(2, 3, config.appearance_width))
        torch.testing.assert_close(model(x, t, text), explicit, atol=0, rtol=0)


def test_cues_from_controls():
    prior = torch.randn(2, 4, 8, 8)
    cues = Cues.from_controls(300.0, 0.4, batch=2, frames=5, width=8, spatial_prior=prior)
    assert cues.spatial_prior is prior
    assert torch.equal(cues.motion, motion_constant(300.0, 2, 5)) and cues.motion.shape == (2, 4)
    assert torch.equal(cues.appearance, appearance_template(0.4, 5, 8, batch=2))
    # one frame has no motion and unchanging appearance: the spatial stage's cues, at the model's width
    one = Cues.from_controls(300.0, 0.4, batch=2, frames=1, width=8)
    assert torch.equal(one.motion, torch.zeros(2, 1)) and torch.equal(one.appearance, torch.ones(2, 1, 8))


def test_cues_from_a_clip_are_the_measured_ones():
    g = torch.Generator().manual_seed(0)
    latents, embeddings = torch.randn(2, 4, 5, 6, 6, generator=g), torch.randn(2, 5, 16, generator=g)
    cues = Cues.from_clip(latents, embeddings, appearance_scale=10.0)
    assert torch.equal(cues.spatial_prior, latents[:, :, 2])  # the middle frame f // 2
    # floor(10 * the L2 norm of each adjacent difference over (c, h, w))
    expected_motion = torch.floor(10 * (latents[:, :, 1:] - latents[:, :, :-1]).flatten(3).transpose(1, 2).flatten(2).norm(dim=-1))
    assert torch.equal(cues.motion, expected_motion)
    e = F.normalize(embeddings, dim=-1)
    torch.testing.assert_close(cues.appearance, 1 - 10.0 * (1 - e @ e.transpose(1, 2)))
    torch.testing.assert_close(appearance_from_embeddings(embeddings), 5 * e @ e.transpose(1, 2) - 4)  # the release's remap
    # without embeddings appearance does not change; a one-frame clip (an image) gets the spatial stage's cues
    assert torch.equal(Cues.from_clip(latents).appearance, torch.ones(2, 5, 5))
    image = Cues.from_clip(latents[:, :, :1], embeddings[:, :1])
    spatial = Cues.spatial_stage(2)
    assert image.spatial_prior is None and torch.equal(image.motion, spatial.motion) and torch.equal(image.appearance, spatial.appearance)
    assert torch.equal(motion_from_latents(latents).float(), cues.motion)


def test_cues_to_moves_and_casts_the_cue_tensors():
    cues = Cues(torch.zeros(1, 4, 2, 2, dtype=torch.float16), torch.tensor([[3, 4]]), torch.ones(1, 3, 3, dtype=torch.float64)).to("cpu")
    assert cues.spatial_prior.dtype == torch.float16  # the prior keeps the latents' dtype
    assert cues.motion.dtype == torch.float32 and cues.appearance.dtype == torch.float32


# ------------------------------------------------------------------------------------- settings
def test_settings_defaults_are_the_release_and_replace_keeps_none():
    s = GenerationSettings()
    assert (s.frames, s.spatial_steps, s.spatial_guidance, s.sampler, s.motion, s.appearance) == (32, 50, 12.0, "ddim", 500.0, 1.0)
    changed = s.replace(frames=8, motion=None, appearance=0.0)
    assert (changed.frames, changed.motion, changed.appearance) == (8, 500.0, 0.0)
    assert GenerationSettings.from_dict(changed.to_dict()) == changed
    # whole numbers given as floats (a web page's number fields) become integers
    assert s.replace(frames=16.0).frames == 16 and isinstance(s.replace(frames=16.0).frames, int)


@pytest.mark.parametrize("name", ["spatial_guidance", "temporal_guidance", "motion", "appearance", "fps", "offset_noise"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_settings_refuse_non_finite_numbers_naming_the_setting(name, value):
    with pytest.raises(SettingError, match=f"^{name} must be a finite number") as err:
        GenerationSettings().replace(**{name: value})
    assert err.value.setting == name


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(frames=2.5), "frames must be a whole number"),
        (dict(frames=True), "frames must be a number"),
        (dict(spatial_steps="ten"), "spatial_steps must be a number"),
        (dict(temporal_steps=0), "temporal_steps must be at least 1"),
        (dict(fps=0), "fps must be positive"),
        (dict(spatial_guidance=-1), "spatial_guidance must not be negative"),
        (dict(sampler="euler"), "unknown sampler 'euler'"),
        (dict(negative_prompt=3), "negative_prompt must be text"),
        (dict(decoupled="yes"), "decoupled must be true or false"),
        (dict(motoin=3), "unknown generation settings: motoin"),
    ],
)
def test_settings_refuse_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        GenerationSettings().replace(**changes)


def test_settings_size_must_fit_the_model():
    GenerationSettings(height=64, width=96).check_size(32)
    with pytest.raises(SettingError, match="width 100 must be a positive multiple of 32"):
        GenerationSettings(height=64, width=100).check_size(32)
