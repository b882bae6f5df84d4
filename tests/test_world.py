"""The procedural world: vocabulary, held-out split, rendering, captions and their parser, dataset and export."""

import csv
import dataclasses
import itertools
import json

import numpy as np
import pytest
from einops import reduce

from higen.cli.main import main
from higen.io.video import read_video
from higen.world.captions import make_caption, parse_prompt, spec_attributes
from higen.world.colour import delta_e, srgb_to_lab
from higen.world.dataset import WorldDataset, export, world_clip
from higen.world.render import render, unit_area
from higen.world.spec import (
    BACKGROUNDS, CHANGE_RAMP, CLIP_SECONDS, COLOURS, DIRECTIONS, EXCLUDED_BACKGROUNDS, GROWTH, HELD_OUT, SHAPES,
    ClipSpec, is_held_out, sample_spec,
)


def _spec(**kw) -> ClipSpec:
    base = dict(shape="square", colour="red", background="black", direction="still", speed=0.0, change="none", size=0.12, start=(0.0, 0.0))
    return ClipSpec(**{**base, **kw})


def _object_mask(video: np.ndarray, background_rgb) -> np.ndarray:
    """Pixels that differ from a plain background: ``f h w``."""
    return np.abs(video.astype(int) - np.array(background_rgb)).sum(-1) > 0


# ------------------------------------------------------------------------------ vocabulary and splits
def test_vocabulary_sizes_and_palette_separation():
    assert len(SHAPES) >= 5 and len(COLOURS) >= 6 and len(BACKGROUNDS) >= 4
    assert set(DIRECTIONS) == {"left", "right", "up", "down", "still"}
    lab = {name: srgb_to_lab(rgb) for name, rgb in COLOURS.items()}
    # Named colours are far apart (tens of Delta E; 2.3 is just noticeable), so a blurred colour keeps its name.
    assert min(delta_e(lab[a], lab[b]) for a, b in itertools.combinations(COLOURS, 2)) > 40
    for colour in COLOURS:
        for name, (top, bottom) in BACKGROUNDS.items():
            if name in EXCLUDED_BACKGROUNDS.get(colour, ()):
                continue
            assert min(delta_e(lab[colour], srgb_to_lab(top)), delta_e(lab[colour], srgb_to_lab(bottom))) > 40, (colour, name)


def test_held_out_set_keeps_every_word_and_pair_in_training():
    triples = list(itertools.product(COLOURS, SHAPES, DIRECTIONS))
    train = [t for t in triples if t not in HELD_OUT]
    assert 0.1 < len(HELD_OUT) / len(triples) < 0.2
    for i, j in itertools.combinations(range(3), 2):
        # every pair of values of two attributes still appears in some training triple
        assert {(t[i], t[j]) for t in train} == {(t[i], t[j]) for t in triples}


def test_sample_spec_respects_splits_and_frame():
    rng = np.random.default_rng(0)
    train = [sample_spec(rng, "train") for _ in range(400)]
    heldout = [sample_spec(rng, "heldout") for _ in range(200)]
    assert not any(is_held_out(s) for s in train)
    assert all(is_held_out(s) for s in heldout)
    assert len({(s.colour, s.shape, s.direction) for s in heldout}) > len(HELD_OUT) // 2
    for s in train + heldout:
        assert s.fits_in_frame()
        assert s.background not in EXCLUDED_BACKGROUNDS.get(s.colour, frozenset()) | EXCLUDED_BACKGROUNDS.get(s.end_colour, frozenset())
    with pytest.raises(ValueError, match="split"):
        sample_spec(rng, "test")


def test_clip_spec_validation_and_round_trip():
    spec = sample_spec(np.random.default_rng(3), "all")
    assert ClipSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="shape"):
        _spec(shape="hexagon")
    with pytest.raises(ValueError, match="still"):
        _spec(direction="left", speed=0.0)
    with pytest.raises(ValueError, match="end_colour"):
        _spec(change="colour")


# ------------------------------------------------------------------------------ rendering
def test_render_is_deterministic_and_shaped():
    spec = sample_spec(np.random.default_rng(1), "train")
    video = render(spec, 5, 48, 80)
    assert video.shape == (5, 48, 80, 3) and video.dtype == np.uint8
    assert np.array_equal(video, render(spec, 5, 48, 80))


def test_same_spec_looks_the_same_at_every_size():
    rng = np.random.default_rng(2)
    for _ in range(5):
        spec = sample_spec(rng, "all")
        # 8 x 8 samples per pixel at 64 px are exactly the points of 4 x 4 per pixel at 128 px, so the 2 x 2 block
        # means of the large picture equal the small one up to rounding to integers (at most 1 level).
        small = render(spec, 4, 64, 64, supersample=8).astype(np.float64)
        large = reduce(render(spec, 4, 128, 128, supersample=4).astype(np.float64), "f (h a) (w b) c -> f h w c", "mean", a=2, b=2)
        assert np.abs(small - large).max() <= 1.0
        # and the default anti-aliasing is close to that
        assert np.abs(render(spec, 4, 64, 64).astype(np.float64) - small).mean() < 0.5


def test_object_area_colour_and_edges():
    size, side = 0.12, 64
    for shape in SHAPES:
        video = render(_spec(shape=shape, size=size), 1, side, side)
        # Coverage is the fraction of the way from the background to the object colour (red channel here).
        alpha = (video[0, :, :, 0].astype(float) - 15) / (215 - 15)
        assert alpha.sum() == pytest.approx(unit_area(shape) * (size * side) ** 2, rel=0.03)
        assert ((alpha > 0.05) & (alpha < 0.95)).any(), "edges are anti-aliased"
        assert (video[0] == COLOURS["red"]).all(-1).any(), "the interior has the exact colour"


def test_motion_matches_speed_and_stays_in_frame():
    spec = _spec(direction="right", speed=0.2, start=(-0.2, 0.1))
    frames, side = 16, 64
    video = render(spec, frames, side, side)
    alpha = (video[..., 0].astype(float) - 15) / (215 - 15)  # coverage: red object over black
    xs = (alpha * (np.arange(side) + 0.5)).sum(axis=(1, 2)) / alpha.sum(axis=(1, 2))
    # Frame i shows clip time i / frames: the object moves speed * CLIP_SECONDS / frames sides per frame.
    # 4 x 4 supersampling places a straight edge to within 1/8 pixel, so a centroid is within 1/8 and a
    # difference of two within 1/4.
    step = 0.2 * CLIP_SECONDS / frames * side
    assert np.diff(xs) == pytest.approx(np.full(frames - 1, step), abs=0.25)
    assert xs[-1] - xs[0] == pytest.approx((frames - 1) * step, abs=0.25)
    for s in (sample_spec(np.random.default_rng(k), "all") for k in range(40)):
        if s.background == "gradient":
            continue
        border = _object_mask(render(s, 8, side, side), BACKGROUNDS[s.background][0])
        assert not (border[:, 0].any() or border[:, -1].any() or border[:, :, 0].any() or border[:, :, -1].any())


def test_appearance_changes():
    frames = 16
    u = np.arange(frames) / frames
    steady_start, steady_end = u <= CHANGE_RAMP[0], u >= CHANGE_RAMP[1]
    # A colour change starts and ends on the named colours and never passes near the gray background.
    video = render(_spec(colour="orange", background="gray", change="colour", end_colour="blue"), frames, 64, 64)
    centre = video[:, 32, 32].astype(float)
    assert (centre[steady_start] == COLOURS["orange"]).all() and (centre[steady_end] == COLOURS["blue"]).all()
    assert np.linalg.norm(centre - 128, axis=-1).min() > 80
    # Growing: the area grows by GROWTH^2 between the steady ends.
    mask = _object_mask(render(_spec(shape="circle", change="grow", size=0.1), frames, 64, 64), BACKGROUNDS["black"][0])
    areas = mask.sum(axis=(1, 2))
    assert areas[-1] / areas[0] == pytest.approx(GROWTH**2, rel=0.08)
    assert np.all(np.diff(areas) >= 0)


# ------------------------------------------------------------------------------ captions
def test_captions_state_what_the_clip_is():
    rng = np.random.default_rng(5)
    said = {k: 0 for k in ("background", "speed", "change")}
    captions = set()
    n = 600
    for _ in range(n):
        spec = sample_spec(rng, "all")
        caption = make_caption(spec, rng)
        captions.add(caption)
        parsed, truth = parse_prompt(caption), spec_attributes(spec)
        for key in ("colour", "shape", "direction"):
            assert parsed[key] == truth[key], caption  # always said
        for key, value in parsed.items():
            assert value is None or value == truth[key], (key, caption)
        for key in said:
            said[key] += parsed[key] is not None
    assert len(captions) > 0.95 * n
    assert 0.5 * n < said["background"] < 0.95 * n  # often but not always
    assert 0.2 * n < said["speed"] < 0.9 * n
    assert 0.2 * n < said["change"] < 0.9 * n


def test_captions_are_deterministic_and_varied_in_structure():
    spec = _spec(direction="left", speed=0.08, change="colour", end_colour="yellow", background="white")
    assert make_caption(spec, np.random.default_rng(9)) == make_caption(spec, np.random.default_rng(9))
    captions = {make_caption(spec, np.random.default_rng(k)) for k in range(200)}
    starts = {c.split()[0] for c in captions}  # "a", "an", "on", "over", "against", "in" ...
    assert len(starts) >= 4
    assert sum(" that " in c for c in captions) > 0 and sum(" is " in c for c in captions) > 0


@pytest.mark.parametrize("text, expected", [
    ("a red circle moving left on a black background", dict(colour="red", shape="circle", direction="left", background="black")),
    ("a crimson ball slides to the left over black", dict(colour="red", shape="circle", direction="left", background="black")),
    ("on a white backdrop, a small green square drifts slowly upward",
     dict(colour="green", shape="square", direction="up", background="white", size="small", speed="slow")),
    ("a blue star that turns yellow while standing still", dict(colour="blue", shape="star", direction="still", change="colour", end_colour="yellow")),
    ("A yellow Diamond falling quickly in front of a navy-blue background.", dict(colour="yellow", shape="diamond", direction="down", speed="fast", background="navy")),
    ("a big violet plus sign that grows, stationary, over a shaded backdrop",
     dict(colour="purple", shape="cross", direction="still", size="large", change="grow", background="gradient")),
    ("an emerald rhombus getting smaller as it rises on grey", dict(colour="green", shape="diamond", direction="up", change="shrink", background="gray")),
])
def test_parse_prompt_reads_paraphrases(text, expected):
    parsed = parse_prompt(text)
    assert {k: v for k, v in parsed.items() if v is not None} == expected


def test_parse_prompt_unknown_and_contradictory_are_none():
    assert all(v is None for v in parse_prompt("a cat sleeping on a sofa").values())
    parsed = parse_prompt("a red and blue ball moving left and right")
    assert parsed["colour"] is None and parsed["direction"] is None and parsed["shape"] == "circle"


# ------------------------------------------------------------------------------ dataset and export
def test_world_dataset_is_deterministic_per_index():
    a, b = WorldDataset(20, 4, 32, 32, seed=1), WorldDataset(20, 4, 32, 32, seed=1)
    item = a[7]
    assert set(item) >= {"video", "caption", "spec"} and item["video"].shape == (4, 32, 32, 3)
    assert np.array_equal(item["video"], b[7]["video"]) and item["caption"] == b[7]["caption"]
    assert a[-1]["caption"] == a[19]["caption"]
    assert WorldDataset(20, 4, 32, 32, seed=2)[7]["caption"] != item["caption"] or WorldDataset(20, 4, 32, 32, seed=2)[7]["spec"] != item["spec"]
    assert all(is_held_out(ClipSpec.from_dict(WorldDataset(10, 2, 16, 16, split="heldout")[i]["spec"])) for i in range(10))
    with pytest.raises(IndexError):
        a[20]
    with pytest.raises(ValueError, match="split"):
        WorldDataset(5, split="val")
    # start: a later part of the same clip; frame 2 of 4 is clip time 0.5, the first frame from start 0.5
    assert np.array_equal(WorldDataset(20, 1, 32, 32, seed=1, start=0.5)[7]["video"][0], item["video"][2])
    with pytest.raises(ValueError, match="start"):
        WorldDataset(20, 1, 32, 32, start=1.0)[0]


def test_export_writes_videos_and_manifest(tmp_path):
    manifest = export(tmp_path / "w", 3, frames=6, height=32, width=48, seed=4)
    rows = list(csv.DictReader(manifest.open()))
    assert [r["path"] for r in rows] == ["000000.mp4", "000001.mp4", "000002.mp4"]
    for i, row in enumerate(rows):
        spec, caption = world_clip(4, i, "train")
        assert row["caption"] == caption
        frames, fps = read_video(tmp_path / "w" / row["path"])
        assert frames.shape == (6, 32, 48, 3) and fps == pytest.approx(6 / CLIP_SECONDS)
        assert np.abs(frames.astype(int) - render(spec, 6, 32, 48)).mean() < 4  # H.264 is nearly lossless here
    specs = [json.loads(line) for line in (tmp_path / "w" / "specs.jsonl").read_text().splitlines()]
    assert ClipSpec.from_dict(specs[1]["spec"]) == world_clip(4, 1, "train")[0]
    with pytest.raises(FileExistsError):
        export(tmp_path / "w", 3, frames=6, height=32, width=48)


def test_world_cli(tmp_path, capsys):
    assert main(["world", "export", str(tmp_path / "out"), "--n", "2", "--frames", "4", "--size", "32", "--split", "heldout", "--no-progress"]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open()))
    assert len(rows) == 2 and rows[0]["caption"] == world_clip(0, 0, "heldout")[1]
    capsys.readouterr()
    assert main(["world", "export", str(tmp_path / "out"), "--n", "2", "--no-progress"]) == 2
    assert "manifest.csv exists" in capsys.readouterr().err
    assert main(["world", "captions", "--n", "0"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err
    assert main(["world", "captions", "--n", "2", "--seed", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == [world_clip(3, i, "train")[1] for i in range(2)]


def test_change_strength_scales_the_change():
    half = dataclasses.replace(_spec(change="grow", size=0.1), change_strength=0.5)
    assert half.extent(np.array([1.0]))[0] == pytest.approx(0.1 * GROWTH**0.5)
    assert half.max_extent() == pytest.approx(0.1 * GROWTH**0.5)
