"""``higen web``: the generator behind the page (no gradio needed) and the page itself (when gradio is installed)."""

import json
import sys

import numpy as np
import pytest

from higen.cli.main import main
from higen.cli.web import WebGenerator
from higen.io.video import read_video

from support import tiny_pipeline


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    return WebGenerator(tiny_pipeline(0), tmp_path_factory.mktemp("web"), model_path="tiny")


def test_generate_writes_video_keyframe_and_sidecar(generator):
    calls = []
    video, key, settings = generator.generate("a red circle", seed=3, frames=4, steps=2, motion=7.0, appearance=0.5,
                                              progress=lambda frac, desc: calls.append((desc, frac)))
    frames, _ = read_video(video)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (settings["height"], settings["width"])
    assert key.is_file()
    sidecar = json.loads(video.with_name(video.name + ".json").read_text())
    assert sidecar["seed"] == 3 and sidecar["prompt"] == "a red circle" and sidecar["motion"] == 7.0 and sidecar["appearance"] == 0.5
    assert {desc for desc, _ in calls} >= {"spatial", "temporal"}
    assert all(0.0 <= frac <= 1.0 for _, frac in calls)


def test_same_seed_same_video_and_random_seed_recorded(generator):
    a, _, _ = generator.generate("a blue square", seed=5, frames=3, steps=2)
    b, _, _ = generator.generate("a blue square", seed=5, frames=3, steps=2)
    assert a != b  # never overwrites an earlier result
    assert np.array_equal(read_video(a)[0], read_video(b)[0])
    _, _, settings = generator.generate("a blue square", seed=-1, frames=3, steps=2)
    assert 0 <= settings["seed"] < 2**31


def test_bad_input_is_a_value_error(generator):
    with pytest.raises(ValueError, match="prompt"):
        generator.generate("   ")
    with pytest.raises(ValueError, match="frames must be at least 1"):
        generator.generate("a circle", frames=0)
    with pytest.raises(ValueError, match="motion must be a finite number"):
        generator.generate("a circle", motion=float("nan"))
    with pytest.raises(ValueError, match="frames must be a whole number"):
        generator.generate("a circle", frames=2.5)


def test_controls_are_the_model_defaults(generator):
    c = generator.controls()
    d = generator.pipe.defaults
    assert (c["frames"], c["motion"], c["appearance"], c["sampler"]) == (d.frames, d.motion, d.appearance, d.sampler)


def test_page_builds_and_generates(generator):
    pytest.importorskip("gradio")
    from higen.cli.web import build_app

    app = build_app(generator)
    assert app.fns, "the page has no event handler"
    fn = next(iter(app.fns.values())).fn
    video, key, settings = fn("a green circle", "", 1, 3, None, None, 2, 3.0, "ddim", 5.0, 0.0, None, progress=lambda *a, **k: None)
    assert read_video(video)[0].shape[0] == 3 and settings["seed"] == 1


def test_cli_without_gradio_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert main(["web"]) == 2
    assert "pip install 'higen[web]'" in capsys.readouterr().err
