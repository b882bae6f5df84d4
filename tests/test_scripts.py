"""The repository's scripts that write models (scripts/*.py), run on tiny random models."""

import importlib.util
from pathlib import Path

import pytest
import torch

from higen.models.unet import HiGenUNet

from support import save_tiny_model

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_widen_text_path_adds_a_zero_passthrough_and_keeps_everything_else(tmp_path):
    widen = load_script("widen_text_path").widen
    source = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "wide"
    widen(source, out)
    before = HiGenUNet.from_pretrained(source / "unet", dtype=torch.float32)
    after = HiGenUNet.from_pretrained(out / "unet", dtype=torch.float32)
    assert after.config.text_passthrough and not before.config.text_passthrough
    state = after.state_dict()
    assert all(torch.equal(state[k], v) for k, v in before.state_dict().items())
    assert not state["text_resampler.passthrough.weight"].any() and not state["text_resampler.passthrough.bias"].any()
    # the rest of the folder (autoencoder, text encoder, pipeline defaults) is copied as it was
    for path in source.rglob("*"):
        if path.is_file() and "unet" not in path.relative_to(source).parts:
            assert (out / path.relative_to(source)).read_bytes() == path.read_bytes()
    text = torch.randn(2, 5, after.config.text_dim)
    with torch.no_grad():
        context = after.text_resampler(text)
        torch.testing.assert_close(context[:, : after.config.num_text_tokens], before.text_resampler(text))
        assert not context[:, after.config.num_text_tokens :].any()
    with pytest.raises(FileExistsError):
        widen(source, out)
    with pytest.raises(ValueError, match="already has text_passthrough"):
        widen(out, tmp_path / "wider")


def test_widen_text_path_adds_a_zero_text_embedding_that_changes_nothing_until_trained(tmp_path):
    widen = load_script("widen_text_path").widen
    source = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "embedded"
    widen(source, out, add="text-embedding")
    before = HiGenUNet.from_pretrained(source / "unet", dtype=torch.float32).eval()
    after = HiGenUNet.from_pretrained(out / "unet", dtype=torch.float32).eval()
    assert after.config.text_embedding and not after.config.text_passthrough
    state = after.state_dict()
    assert sorted(set(state) - set(before.state_dict())) == [f"text_embed.{i}.{p}" for i in (0, 2) for p in ("bias", "weight")]
    assert all(torch.equal(state[k], v) for k, v in before.state_dict().items())
    c = after.config
    args = dict(x=torch.randn(2, c.in_channels, 3, 8, 8), timesteps=torch.tensor([10, 900]), text=torch.randn(2, 5, c.text_dim))
    with torch.no_grad():
        torch.testing.assert_close(after(**args), before(**args))
    with pytest.raises(ValueError, match="unknown text path"):
        widen(source, tmp_path / "other", add="words")


def test_direction_fit_clips_share_their_prior_and_differ_only_in_direction():
    import numpy as np

    from higen.world.captions import parse_prompt
    from higen.world.render import render

    chosen = load_script("direction_fit").clips(2)
    assert len(chosen) == 8
    for group in (chosen[:4], chosen[4:]):
        specs = [spec for spec, _ in group]
        assert [s.direction for s in specs] == ["left", "right", "up", "down"]
        videos = [render(s, 16, 32, 32) for s in specs]
        for video in videos[1:]:
            assert np.array_equal(video[8], videos[0][8])  # the middle frame: the temporal stage's prior
            assert not np.array_equal(video, videos[0])
        parsed = [parse_prompt(caption) for _, caption in group]
        assert [p.pop("direction") for p in parsed] == ["left", "right", "up", "down"]
        assert all(p == parsed[0] for p in parsed)  # the captions differ in their direction word only


def test_direction_fit_skip_gives_later_groups():
    fit = load_script("direction_fit")
    first, later = fit.clips(3), fit.clips(1, skip=2)
    assert [spec for spec, _ in later] == [spec for spec, _ in first[8:]]
    assert [caption for _, caption in later] == [caption for _, caption in first[8:]]


def test_stage_probe_changes_and_change_cue_run_on_a_tiny_model(tmp_path, capsys):
    from higen import HiGenPipeline

    probe = load_script("stage_probe")
    pipe = HiGenPipeline.from_pretrained(save_tiny_model(tmp_path / "tiny"))
    probe.probe_changes(pipe, 2, "train", [500, 999])
    out = capsys.readouterr().out
    assert "2 colour-changing train clips" in out and "turns" in out
    rows = [line.split() for line in out.splitlines() if line.strip().split()[:1] in (["500"], ["999"])]
    assert len(rows) == 2 and all(float(row[1]) > 0 for row in rows)  # a loss per noise level, the swaps as ratios
    probe.probe_change_cue(pipe, 2, "heldout", [0.0, 1.0])
    out = capsys.readouterr().out
    assert "appearance 0:" in out and "appearance 1:" in out and out.count("start colour") == 2


def test_change_fit_mixes_colour_changes_with_ordinary_clips():
    from higen.world.dataset import world_clip

    fit = load_script("change_fit")
    only = fit.clips(3)
    assert len(only) == 3 and all(spec.change == "colour" and spec.end_colour != spec.colour for spec, _ in only)
    mixed = fit.clips(2, plain=3)
    assert len(mixed) == 5
    assert mixed[0] == world_clip(0, 0, "train") and mixed[2] == world_clip(0, 1, "train") and mixed[4] == world_clip(0, 2, "train")
    assert [mixed[1], mixed[3]] == only[:2]


def test_wording_probe_pairs_each_clip_with_a_new_sentence_structure_the_judge_reads_alike(tmp_path):
    import re

    from higen import HiGenPipeline
    from higen.world.captions import parse_prompt

    wording = load_script("wording_probe")
    pairs = wording.prompt_pairs(len(wording.NEW_WORDINGS))
    for caption, new in pairs:
        world, ours = parse_prompt(caption), parse_prompt(new)
        assert new != caption and ours["direction"] not in (None, "still") and world["change"] in (None, "none")
        assert all(ours[k] == world[k] for k in ("colour", "shape", "direction"))
    assert not any(re.search(r"\ba [aeiou]", new) for _, new in wording.prompt_pairs(32))  # "an orange", "an upward-moving"
    report = wording.probe(HiGenPipeline.from_pretrained(save_tiny_model(tmp_path / "tiny")), 3, batch_size=2)
    assert [c["prompt"] for c in report["clips"]["new wording"]] == [new for _, new in wording.prompt_pairs(3)]
    assert report["summaries"]["world captions"]["clips"] == report["summaries"]["new wording"]["clips"] == 3
    assert set(report["same_reading"]) == {"colour", "shape", "direction", "background"}
    assert all(0.0 <= v <= 1.0 for v in report["same_reading"].values())
