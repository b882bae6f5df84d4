"""Behaviour of the HiGen UNet beyond reference parity: image mode, zero-init, any frame count,
checkpointing, persistence, and conversion over VGen configurations other than the release's."""

import pytest
import torch

from higen.cues import appearance_template, resample_appearance
from higen.models.config import UNetConfig, tiny_unet_config
from higen.io.checkpoint import CheckpointError, load_checkpoint_file
from higen.models.layers import PriorVelocity
from higen.models.unet import HiGenUNet
from higen.models.vgen import unet_config_from_vgen_kwargs, unet_from_vgen_state_dict, unet_to_vgen_state_dict


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (the zero-initialised ones too) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def inputs(config: UNetConfig, b=2, f=4, h=8, w=8):
    return dict(
        x=torch.randn(b, config.in_channels, f, h, w),
        timesteps=torch.tensor([999, 10][:b]),
        text=torch.randn(b, 5, config.text_dim),
    )


def test_image_mode_ignores_every_temporal_parameter():
    config = tiny_unet_config()
    model = randomize(HiGenUNet(config))
    args = inputs(config, f=1)
    with torch.no_grad():
        before = model(**args)
        for name, p in model.named_parameters():
            if "temporal" in name:
                p.add_(1.0)
        after = model(**args)
    assert torch.equal(before, after)
    with torch.no_grad():  # ...but the same perturbation does change a video
        assert not torch.equal(model(**inputs(config, f=3)), randomize(HiGenUNet(config))(**inputs(config, f=3)))


def test_new_branches_are_zero_initialised():
    torch.manual_seed(1)
    config = tiny_unet_config()
    model = HiGenUNet(config).eval()
    args = inputs(config, f=4)
    with torch.no_grad():
        plain = model(**args)
        cued = model(**args, spatial_prior=torch.randn(2, 4, 8, 8), motion=torch.full((2, 3), 300.0), appearance=torch.rand(2, 4, config.appearance_width))
    assert torch.equal(plain, cued)
    # The head's weight is zero-initialised (its bias is not, as in the release): the output is the bias.
    assert torch.equal(plain, model.out[2].bias.view(1, -1, 1, 1, 1).expand_as(plain))


def test_moved_prior_translates_each_frame_by_its_share_of_the_travel():
    from higen.models.layers import moved_prior

    prior = torch.zeros(2, 1, 16, 16)
    prior[:, :, 6:10, 6:10] = 1.0  # a square in the middle
    travel = torch.tensor([[0.5, 0.0], [0.0, -0.25]])  # half a side right; a quarter up (y down)
    moved = moved_prior(prior, travel, frames=8)
    assert moved.shape == (2, 1, 8, 16, 16)
    torch.testing.assert_close(moved[:, :, 4], prior)  # frame f // 2 is the prior
    torch.testing.assert_close(moved_prior(prior, torch.zeros(2, 2), 8), prior[:, :, None].expand(-1, -1, 8, -1, -1))
    xs = torch.arange(16.0)
    centre = lambda img, dim: (img.sum(dim=dim) * xs).sum() / img.sum()  # noqa: E731  (dim 0: x, dim 1: y)
    # Frame 7 is 3/8 of the clip after the middle: 0.5 * 3/8 side = 3 cells of 16 to the right; frame 0 4 cells left.
    assert centre(moved[0, 0, 7], 0) - centre(prior[0, 0], 0) == pytest.approx(3.0, abs=0.05)
    assert centre(moved[0, 0, 0], 0) - centre(prior[0, 0], 0) == pytest.approx(-4.0, abs=0.05)
    assert centre(moved[1, 0, 7], 1) - centre(prior[1, 0], 1) == pytest.approx(-1.5, abs=0.05)
    travel.requires_grad_(True)
    (moved_prior(prior, travel, 8)[:, :, 0] * xs).sum().backward()  # x-weighted mass of frame 0
    assert travel.grad.abs().sum() > 0  # differentiable in the travel


def test_prior_motion_is_zero_initialised_moves_the_prior_by_the_context_and_motion_and_is_not_in_the_release():
    config = tiny_unet_config(prior_motion=True)
    torch.manual_seed(0)
    model = randomize(HiGenUNet(config))
    with torch.no_grad():
        for p in model.prior_velocity.parameters():
            p.zero_()
    plain = HiGenUNet(tiny_unet_config())
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prior_velocity.")})
    plain.eval()
    args = dict(inputs(config, f=4), spatial_prior=torch.randn(2, config.in_channels, 8, 8))
    with torch.no_grad():
        torch.testing.assert_close(model(**args), plain(**args), atol=1e-5, rtol=1e-4)  # zero travel: the release's path
        model.prior_velocity.from_context.bias.copy_(torch.tensor([10.0, 0.0]))  # travel 0.2 sides to the right
        assert not torch.allclose(model(**args), plain(**args), atol=1e-3)
        image = dict(inputs(config, f=1), spatial_prior=args["spatial_prior"])
        torch.testing.assert_close(model(**image), plain(**image))  # one frame: nothing moves
    widened = HiGenUNet(tiny_unet_config()).eval()
    before = widened(**args).detach()
    widened.add_prior_motion()  # widening a built UNet: zero-initialised, so it computes what it did
    assert widened.config.prior_motion and widened.prior_velocity is not None
    torch.testing.assert_close(widened(**args).detach(), before, atol=1e-5, rtol=1e-4)
    loss = widened(**args).pow(2).mean()
    loss.backward()
    assert widened.prior_velocity.from_context.weight.grad is not None
    with pytest.raises(ValueError, match="prior_motion"):
        unet_to_vgen_state_dict(model)
    import re

    from higen.training.optim import SPATIAL_PATTERN  # the temporal stage's new weights, not the image model's

    assert not any(re.search(SPATIAL_PATTERN, k) for k in model.state_dict() if k.startswith("prior_velocity."))


def test_prior_velocity_reads_the_direction_from_the_context_and_scales_it_with_the_motion_cue():
    velocity = PriorVelocity(6)
    context = torch.randn(3, 2, 3)
    motion = torch.tensor([[0.0, 0.0], [32.0, 32.0], [16.0, 48.0]])  # mean motion 0, 32, 32
    assert not velocity(context, motion).any()  # zero-initialised: no travel
    with torch.no_grad():
        velocity.from_context.bias.copy_(torch.tensor([5.0, -5.0]))  # 0.1 sides right and up
        torch.testing.assert_close(velocity(context, motion), torch.tensor([[0.1, -0.1]] * 3))  # gain one
        velocity.gain.weight.fill_(0.1)  # gain 1 + 10 * 0.1 * motion / 32
        velocity.gain.bias.fill_(-0.1)  # ... - 1: travel proportional to the motion cue
    travel = velocity(context, motion)
    torch.testing.assert_close(travel, torch.tensor([[0.0, 0.0], [0.1, -0.1], [0.1, -0.1]]))
    doubled = velocity(context, 2 * motion)
    torch.testing.assert_close(doubled, 2 * travel)
    travel[:, 0].sum().backward()
    assert velocity.gain.weight.grad.abs() > 0 and velocity.from_context.weight.grad.abs().sum() > 0


def test_frame_position_embedding_is_a_zero_initialised_temporal_branch_of_normalised_time():
    config = tiny_unet_config(frame_position=True)
    torch.manual_seed(0)
    model = HiGenUNet(config).eval()
    assert torch.equal(model.position_embedding(2, 4, "cpu"), torch.zeros(8, config.embed_dim))  # no-op at init
    randomize(model)
    with torch.no_grad():
        emb = model.position_embedding(1, 4, "cpu")
        # one distinct vector per frame, the same for every sample of the batch
        assert len({tuple(row.tolist()) for row in emb}) == 4
        torch.testing.assert_close(model.position_embedding(3, 4, "cpu"), emb.repeat(3, 1))
        # normalised time: the first and last frames get the same vectors at any length
        longer = model.position_embedding(1, 7, "cpu")
        torch.testing.assert_close(longer[[0, -1]], emb[[0, -1]])
        # image mode (the spatial stage) does not see it
        args = inputs(config, f=1)
        before = model(**args)
        for p in model.position_embed.parameters():
            p.add_(1.0)
        assert torch.equal(model(**args), before)
        video = inputs(config, f=3)
        changed = model(**video)
        for p in model.position_embed.parameters():
            p.sub_(1.0)
        assert not torch.equal(model(**video), changed)
    with pytest.raises(ValueError, match="frame-position"):
        unet_to_vgen_state_dict(model)


@pytest.mark.parametrize("frames", [2, 3, 8, 13])
def test_any_number_of_frames(frames):
    config = tiny_unet_config(appearance_width=8)
    model = randomize(HiGenUNet(config))
    args = inputs(config, b=1, f=frames)
    appearance = appearance_template(0.7, frames, 8)
    with torch.no_grad():
        out = model(**args, motion=torch.full((1, frames - 1), 200.0), appearance=appearance)
    assert out.shape == args["x"].shape
    assert torch.isfinite(out).all()


def test_appearance_at_native_width_is_the_release_template_and_square_matrices_are_resampled():
    width = 8
    template = appearance_template(1.0, width, width)
    i = torch.arange(width, dtype=torch.float32)
    torch.testing.assert_close(template[0], 1 - (i[:, None] - i[None, :]).abs() / (width - 1))
    # A frames x frames similarity matrix is resampled over time to the model's width.
    square = appearance_template(0.5, 5, 5)
    torch.testing.assert_close(resample_appearance(square, width), appearance_template(0.5, 5, width), atol=1e-6, rtol=0)
    config = tiny_unet_config(appearance_width=width)
    model = randomize(HiGenUNet(config))
    args = inputs(config, b=1, f=5)
    with torch.no_grad():
        a = model(**args, appearance=square)
        b = model(**args, appearance=resample_appearance(square, width))
    assert torch.equal(a, b)


def test_gradient_checkpointing_gives_the_same_gradients():
    config = tiny_unet_config(dropout=0.0, temporal_dropout=0.0)
    model = randomize(HiGenUNet(config)).train()
    args = inputs(config, f=3)
    model(**args).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing = True
    model(**args).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], atol=1e-6, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    config = tiny_unet_config()
    model = randomize(HiGenUNet(config))
    model.save_pretrained(tmp_path / "unet")
    loaded = HiGenUNet.from_pretrained(tmp_path / "unet")
    assert loaded.config == config
    args = inputs(config)
    with torch.no_grad():
        assert torch.equal(model(**args), loaded(**args))
    assert not list((tmp_path / "unet").glob("*.tmp*"))


def test_latent_size_must_fit_the_downsampling():
    config = tiny_unet_config(channel_mult=(1, 2, 2))
    model = HiGenUNet(config).eval()
    with pytest.raises(ValueError, match="divisible by 4"):
        model(**inputs(config, h=6, w=8))


OTHER_VGEN_KWARGS = dict(
    in_dim=4, out_dim=4, dim=64, y_dim=48, context_dim=1024, dim_mult=[1, 2, 3], num_heads=None, head_dim=32,
    num_res_blocks=1, attn_scales=[0.5], dropout=0.0, temporal_attention=True, use_fps_condition=False,
    num_tokens=3, context_embedding_depth=1, use_checkpoint=False,
)


def test_config_from_vgen_kwargs_follows_the_reference_rules():
    config = unet_config_from_vgen_kwargs(OTHER_VGEN_KWARGS)
    assert config.attention_levels == (1,)  # attn_scales 0.5 -> the second level only
    assert config.init_temporal_heads == 64 // 32  # num_heads None -> dim // 32
    assert config.decoder_context_dim == 1024  # hard-coded in the reference
    assert config.appearance_width == 32
    released = unet_config_from_vgen_kwargs(None)
    assert released.attention_levels == (0, 1, 2) and released.channel_mult == (1, 2, 4, 4)


def test_conversion_round_trips_another_vgen_configuration():
    config = unet_config_from_vgen_kwargs(OTHER_VGEN_KWARGS)
    model = randomize(HiGenUNet(config))
    vgen_state = unet_to_vgen_state_dict(model)
    # Reference layout facts: one decoder unit per level with an upsample at index 1 or 3,
    # the misspelt temporal conv name.
    assert "output_blocks.1.1.conv.weight" in vgen_state  # level 2: no attention, upsample at index 1
    assert "output_blocks.3.3.conv.weight" in vgen_state  # level 1: res, spatial, temporal, upsample
    assert "input_blocks.1.0.temopral_conv.conv4.3.weight" in vgen_state
    loaded = unet_from_vgen_state_dict(vgen_state, OTHER_VGEN_KWARGS)
    args = inputs(config, f=3)
    with torch.no_grad():
        assert torch.equal(model(**args), loaded(**args))


def test_config_from_vgen_kwargs_refuses_the_frame_rate_embedding():
    with pytest.raises(ValueError, match="use_fps_condition=True"):
        unet_config_from_vgen_kwargs({**OTHER_VGEN_KWARGS, "use_fps_condition": True})


def test_strict_conversion_lists_missing_unexpected_and_wrong_shapes():
    config = unet_config_from_vgen_kwargs(OTHER_VGEN_KWARGS)
    state = unet_to_vgen_state_dict(HiGenUNet(config))
    del state["time_embed.0.weight"]
    state["bogus.weight"] = torch.zeros(1)
    state["out.2.weight"] = torch.zeros(1, 2, 3, 3)
    with pytest.raises(CheckpointError) as err:
        unet_from_vgen_state_dict(state, OTHER_VGEN_KWARGS)
    message = str(err.value)
    assert "1 missing keys: time_embed.0.weight" in message
    assert "1 unexpected keys: bogus.weight" in message
    assert "out.2.weight: checkpoint (1, 2, 3, 3)" in message


def test_unknown_vgen_kwarg_is_refused():
    with pytest.raises(CheckpointError, match="unknown VGen UNet kwargs: dimm"):
        unet_config_from_vgen_kwargs({**OTHER_VGEN_KWARGS, "dimm": 3})


def test_checkpoint_files(tmp_path):
    state = {"a": torch.ones(2), "b": torch.zeros(3)}
    torch.save({"state_dict": state, "step": 7}, tmp_path / "wrapped.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth")
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "w.safetensors"))
    for name in ("wrapped.pth", "ddp.pth", "w.safetensors"):
        loaded = load_checkpoint_file(tmp_path / name)
        assert loaded.keys() == state.keys() and torch.equal(loaded["a"], state["a"])
    data = (tmp_path / "wrapped.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pth").write_text("not a checkpoint")
    (tmp_path / "empty.pth").write_bytes(b"")
    for name in ("truncated.pth", "text.pth", "empty.pth", "missing.pth"):
        with pytest.raises(CheckpointError):
            load_checkpoint_file(tmp_path / name)


def test_pickled_code_is_refused(tmp_path):
    torch.save({"state_dict": {"a": torch.ones(1)}, "config": UNetConfig}, tmp_path / "code.pth")
    with pytest.raises(CheckpointError):
        load_checkpoint_file(tmp_path / "code.pth")
