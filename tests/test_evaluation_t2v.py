"""higen evaluate-t2v: one video per caption (sharded, resumable, deterministic per caption), then the measures."""

import json

import numpy as np
import pytest

from higen.cli.main import main
from higen.evaluation.t2v import parse_shard
from higen.io.video import read_video, write_video

from support import save_random_fid_inception, save_tiny_model, save_tiny_open_clip

CAPTIONS = {"video7010": "a red circle moves right", "video7011": "a blue square", "video7012": "two dots, far apart"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t2v")
    model = save_tiny_model(folder / "model")
    checkpoint, tokenizer, _ = save_tiny_open_clip(folder)
    prompts = folder / "captions.csv"
    prompts.write_text("video_id,caption\n" + "".join(f'{k},"{v}"\n' for k, v in CAPTIONS.items()))
    real = folder / "real"
    for i in range(2):
        write_video(real / f"r{i}.mp4", np.full((4, 32, 32, 3), 40 * i, np.uint8), fps=8)
    return model, prompts, real, ["--clip-checkpoint", str(checkpoint), "--tokenizer", str(tokenizer)]


def run_t2v(setup, out, *extra):
    model, prompts, real, clip = setup
    return main(["evaluate-t2v", "--prompts", str(prompts), "--model", str(model), "-o", str(out), "--real-videos", str(real),
                 "--device", "cpu", "--no-progress", *clip, *extra])


def test_shards_then_measure_then_resume(setup, tmp_path, capsys):
    out, videos = tmp_path / "eval", tmp_path / "eval" / "videos"
    assert run_t2v(setup, out, "--shard", "0/2") == 0
    assert sorted(p.name for p in videos.glob("*.mp4")) == ["video7010.mp4", "video7012.mp4"]  # captions 0 and 2
    assert not (out / "report.json").exists() and "2 of 3 videos are in" in capsys.readouterr().out
    assert run_t2v(setup, out, "--shard", "1/2") == 0
    assert [json.loads((videos / f"{n}.mp4.json").read_text())["seed"] for n in CAPTIONS] == [0, 1, 2]  # seed + k, whoever made it
    assert json.loads((videos / "video7011.mp4.json").read_text())["prompt"] == CAPTIONS["video7011"]

    assert run_t2v(setup, out) == 0  # nothing left to generate: measures only
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 3 and report["seed"] == 0 and report["settings"]["frames"] == 4
    assert report["clipsim"]["n"] == 3 and report["clipsim"]["model"] == "ViT-64w-8"
    assert set(report["clipsim"]["videos"]) == {f"{n}.mp4" for n in CAPTIONS}
    assert report["flicker"]["n"] == 3
    assert "at least 9 frames" in report["fvd"]["skipped"]  # the tiny model makes 4-frame videos
    assert "--fid-weights" in report["fid"]["skipped"]
    html = (out / "summary.html").read_text()
    assert 'src="videos/video7012.mp4"' in html and "two dots, far apart" in html and "CLIPSIM" in html

    # Resume: a lost video is generated again, the same as before (its caption's seed), and nothing else is.
    before = {n: (videos / f"{n}.mp4").stat().st_mtime_ns for n in CAPTIONS}
    frames, _ = read_video(videos / "video7011.mp4")
    (videos / "video7011.mp4").unlink()
    assert run_t2v(setup, out) == 0
    np.testing.assert_array_equal(read_video(videos / "video7011.mp4")[0], frames)
    assert all((videos / f"{n}.mp4").stat().st_mtime_ns == before[n] for n in ("video7010", "video7012"))

    (videos / "video7011.mp4").unlink()
    assert run_t2v(setup, out, "--steps", "2") == 2  # the folder's other videos were made with 3 steps
    assert "spatial_steps, temporal_steps differ" in capsys.readouterr().err


def test_bad_shards_and_inputs(setup, tmp_path, capsys):
    assert parse_shard("3/4") == (3, 4)
    for text in ("4/4", "1", "a/2", "-1/2"):
        with pytest.raises(ValueError, match="I/N"):
            parse_shard(text)
    assert run_t2v(setup, tmp_path / "o", "--real-videos", str(tmp_path / "missing")) == 2
    assert "video folder not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert run_t2v(setup, tmp_path / "o", "--fid-weights", str(tmp_path / "missing.pth")) == 2  # before generating anything
    assert "download pt_inception-2015-12-05-6726825d.pth from https://" in capsys.readouterr().err
    assert not (tmp_path / "o" / "videos").exists()


def test_frame_fid_with_the_weights_file(setup, tmp_path, monkeypatch):
    """With --fid-weights, the report holds the frame FID over as many frames of each video as were generated."""
    from higen.evaluation import inception

    weights, digest = save_random_fid_inception(tmp_path / "inception.pth")
    monkeypatch.setattr(inception, "WEIGHTS_SHA256", digest)  # accept the random file as the published one
    assert run_t2v(setup, tmp_path / "eval", "--fid-weights", str(weights), "--fid-stride", "2") == 0
    fid = json.loads((tmp_path / "eval" / "report.json").read_text())["fid"]
    assert fid["frames_per_video"] == 2 and fid["stride"] == 2  # frames 0 and 2 of the 4-frame videos
    assert (fid["real"]["videos"], fid["real"]["frames"], fid["fake"]["videos"], fid["fake"]["frames"]) == (2, 4, 3, 6)
    assert fid["fid"] > 0 and fid["inception_weights_sha256"] == digest
    assert "Frame FID" in (tmp_path / "eval" / "summary.html").read_text()


@pytest.mark.slow
def test_fvd_when_the_videos_are_long_enough(setup, tmp_path):
    """With 9-frame videos, real videos and the I3D weights installed, the report holds the FVD (all 9 frames)."""
    model, prompts, _, clip = setup
    real = tmp_path / "real"
    for i in range(3):
        write_video(real / f"r{i}.mp4", np.random.default_rng(i).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8), fps=8)
    assert main(["evaluate-t2v", "--prompts", str(prompts), "--model", str(model), "-o", str(tmp_path / "eval"), "--real-videos", str(real),
                 "--frames", "9", "--device", "cpu", "--no-progress"]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["fvd"]["frames"] == 9 and report["fvd"]["real"]["n"] == 3 and report["fvd"]["fake"]["n"] == 3
    assert report["fvd"]["fvd"] > 0
    assert "--clip-checkpoint" in report["clipsim"]["skipped"]
