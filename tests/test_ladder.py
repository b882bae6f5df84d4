"""The oracle ladder's, the direction gap's, the still drift's and the appearance change's measurements (benchmarks/), which the model card cites."""

import importlib.util
from pathlib import Path

import pytest
import torch

_SPEC = importlib.util.spec_from_file_location("oracle_ladder", Path(__file__).parents[1] / "benchmarks" / "oracle_ladder.py")
ladder = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ladder)


def _benchmark(name: str):
    import sys

    folder = str(Path(__file__).parents[1] / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the scripts import their neighbours
    spec = importlib.util.spec_from_file_location(name, Path(folder) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variance_share_is_the_group_means_share():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4000) % 4
    means = torch.randn(4, 16, generator=g) * 2.0
    noise = torch.randn(4000, 16, generator=g)
    assert ladder.variance_share(means[labels], labels) == pytest.approx(1.0)
    assert ladder.variance_share(noise, labels) < 0.01
    mixed = means[labels] + noise
    between = (means - means.mean(0)).pow(2).sum(1).mean().item()
    assert ladder.variance_share(mixed, labels) == pytest.approx(between / (between + 16.0), abs=0.02)


def test_pooled_context_ignores_padding_and_has_the_oracle_norm():
    torch.manual_seed(0)
    pooled = ladder.PooledContext(text_dim=12, width=64, num_tokens=3)
    words = torch.randn(2, 5, 12)
    padded = torch.cat([words, torch.zeros(2, 7, 12)], dim=1)  # MiniLM zeroes its padding
    out = pooled(padded)
    assert out.shape == (2, 3, 64)
    torch.testing.assert_close(out, pooled(words))
    assert out.norm(dim=-1).mean().item() == pytest.approx(64**0.5, rel=0.01)  # an N(0, 1) token of 64
    assert not torch.allclose(pooled(torch.randn(1, 5, 12)), pooled(torch.randn(1, 5, 12)))


def test_the_direction_gaps_counterfactual_clips_share_the_true_clips_middle_frame():
    import numpy as np

    from higen.world.render import render

    gap = _benchmark("direction_gap")
    spec = gap.moving_clips(1)[0]
    prior = render(spec, 16, 64, 64)[8]
    for direction, speed in (("left", 0.07), ("up", 0.25), ("still", 0.0), (spec.direction, spec.speed)):
        clip = render(gap.through(spec, direction, speed), 16, 64, 64)
        np.testing.assert_array_equal(clip[8], prior)
        assert not np.array_equal(clip[0], clip[15]) or direction == "still"
    first = lambda d: render(gap.through(spec, d, 0.2), 16, 64, 64)[0].astype(float)  # noqa: E731
    assert np.abs(first("left") - first("right")).sum() > 0  # different ways out of the same middle


def test_the_moved_prior_keeps_the_middle_frame_and_moves_content_with_the_velocity():
    import numpy as np

    warp = _benchmark("warped_prior")
    prior = torch.zeros(2, 1, 16, 16)
    prior[:, :, 6:10, 6:10] = 1.0  # a square in the middle
    moved = warp.moved_prior(prior, np.array([[0.25, 0.0], [0.0, -0.25]]), frames=16)  # right; up (y down)
    assert moved.shape == (2, 1, 16, 16, 16)
    torch.testing.assert_close(moved[:, :, 8], prior)
    xs = torch.arange(16.0)
    centroid = lambda img, dim: (img.sum(dim=dim) * xs).sum() / img.sum()  # noqa: E731
    # 0.25 sides/s over 2 s in 16 frames: 1/32 side = 0.5 latent cell per frame; frame 15 is 7 frames after the middle.
    assert centroid(moved[0, 0, 15], 0) - centroid(prior[0, 0], 0) == pytest.approx(3.5, abs=0.05)
    assert centroid(moved[0, 0, 0], 0) - centroid(prior[0, 0], 0) == pytest.approx(-4.0, abs=0.05)
    assert centroid(moved[1, 0, 15], 1) - centroid(prior[1, 0], 1) == pytest.approx(-3.5, abs=0.05)


def test_still_drift_picks_still_clips_and_shares_the_conditional_travel_with_the_unconditional_branch():
    from higen.models.config import tiny_unet_config
    from higen.models.unet import HiGenUNet
    from higen.world.captions import parse_prompt

    drift = _benchmark("still_drift")
    specs = drift.still_clips(3)
    assert all(s.direction == "still" and s.change == "none" for s in specs)
    assert all(parse_prompt(drift.prompt(s))["direction"] == "still" for s in specs)
    unet = HiGenUNet(tiny_unet_config(prior_motion=True))
    with torch.no_grad():
        unet.prior_velocity.from_context.weight.normal_()  # a travel that depends on the context
    context = torch.randn(4, unet.config.num_text_tokens, unet.config.context_dim)  # a guided batch of 2: [cond; uncond]
    motion = torch.full((4, 3), 21.0)
    before = unet.prior_velocity(context, motion)
    assert not torch.allclose(before[:2], before[2:])
    with drift.shared_travel(unet, batch=2):
        shared = unet.prior_velocity(context, motion)
        torch.testing.assert_close(shared, torch.cat([before[:2]] * 2))  # [cond; uncond]: uncond takes cond's travel
        torch.testing.assert_close(unet.prior_velocity(context[:3], motion[:3]), before[:3])  # not a guided batch: as is
    torch.testing.assert_close(unet.prior_velocity(context, motion), before)


def test_appearance_change_prompts_still_colour_changes_and_can_give_each_frame_its_own_prior():
    from higen.models.config import tiny_unet_config
    from higen.models.unet import HiGenUNet
    from higen.world.captions import parse_prompt

    change = _benchmark("appearance_change")
    specs = change.changing_clips(3)
    assert all(s.direction == "still" and s.change == "colour" and s.end_colour != s.colour for s in specs)
    named = [parse_prompt(change.prompt(s, said=True)) for s in specs]
    assert [(a["colour"], a["change"], a["end_colour"]) for a in named] == [(s.colour, "colour", s.end_colour) for s in specs]
    assert all(parse_prompt(change.prompt(s, said=False))["change"] is None for s in specs)
    unet = HiGenUNet(tiny_unet_config()).eval()
    frames = torch.randn(2, 4, unet.config.in_channels, 8, 8)  # b f c h w
    prior, context, motion = torch.randn(4, unet.config.in_channels, 8, 8), None, torch.zeros(4, 3)
    with change.per_frame_prior(unet, frames):
        got = unet.prior_embedding(prior, context, motion, 4)  # a guided batch of 2: [cond; uncond]
    expected = unet.prior_embed(frames.flatten(0, 1)).reshape(2, 4, -1, 8, 8)
    torch.testing.assert_close(got, torch.cat([expected] * 2))
    assert unet.prior_embedding(prior, context, motion, 4).shape == got.shape  # restored: the prior as given
    torch.testing.assert_close(unet.prior_embedding(prior, context, motion, 4)[:, 0], unet.prior_embed(prior))
