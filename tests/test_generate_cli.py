"""`higen generate`, `higen info` and `higen convert-vgen` (with encoders) on tiny random models."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import FIXTURES
from higen.cli.main import main
from higen.io.image import read_image, write_image
from higen.io.video import read_video
from higen.tiny import TINY_AUTOENCODER, tiny_autoencoder, tiny_clip_tokenizer

from support import save_tiny_model, tiny_open_clip_state_dict
from test_encoders import ldm_from_diffusers

TINY_VGEN = FIXTURES / "vgen_higen_tiny"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


def generate(model, *args):
    return main(["generate", "--model", str(model), "--no-progress", *map(str, args)])


def test_generate_mp4_with_sidecar(model, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert generate(model, "a red ball moves left", "-o", out, "--seed", 3, "--frames", 5, "--height", 16, "--width", 24) == 0
    assert "wrote" in capsys.readouterr().out
    frames, fps = read_video(out)
    assert frames.shape == (5, 16, 24, 3) and fps == 8.0
    sidecar = json.loads((tmp_path / "out.mp4.json").read_text())
    expected = {"prompt": "a red ball moves left", "seed": 3, "frames": 5, "height": 16, "width": 24, "negative_prompt": "",
                "sampler": "ddim", "spatial_steps": 3, "temporal_steps": 3, "spatial_guidance": 12.0, "temporal_guidance": 12.0,
                "motion": 500.0, "appearance": 1.0, "fps": 8.0, "format": "mp4", "model": str(model), "output": str(out)}
    assert {k: sidecar[k] for k in expected} == expected
    assert {"offset_noise", "decode_chunk_size", "device", "dtype", "seconds", "keyframe"} <= set(sidecar)


def test_same_seed_same_video_through_the_cli(model, tmp_path):
    for name in ("a", "b"):
        assert generate(model, "a cat", "-o", tmp_path / name, "--format", "png", "--seed", 5) == 0
    assert np.array_equal(read_video(tmp_path / "a")[0], read_video(tmp_path / "b")[0])


@pytest.mark.parametrize("target, extra, kind", [("out.gif", [], "gif"), ("frames", ["--format", "png"], "png"), ("clip", ["--format", "mp4"], "mp4")])
def test_formats(model, tmp_path, target, extra, kind):
    out = tmp_path / target
    assert generate(model, "a cat", "-o", out, "--frames", 3, "--seed", 1, *extra) == 0
    frames, _ = read_video(out)
    assert frames.shape == (3, 32, 32, 3)
    assert out.is_dir() == (kind == "png")
    magic = {"gif": (0, b"GIF89a"), "mp4": (4, b"ftyp")}  # the written bytes follow --format, not the name
    if kind in magic:
        start, signature = magic[kind]
        assert out.read_bytes()[start : start + len(signature)] == signature
    sidecar = out.with_name(out.name + ".json") if out.suffix else out.with_suffix(".json")
    assert json.loads(sidecar.read_text())["format"] == kind


def test_prompts_file(model, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# one video per line\na red ball|3\n\na blue square\n")
    out = tmp_path / "videos"
    assert generate(model, "--prompts-file", prompts, "-o", out, "--seed", 10, "--frames", 2) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000_a_red_ball.mp4", "000_a_red_ball.mp4.json", "001_a_blue_square.mp4", "001_a_blue_square.mp4.json"]
    seeds = [json.loads((out / n).read_text())["seed"] for n in names if n.endswith(".json")]
    assert seeds == [3, 11]  # explicit seed kept; --seed + line index for the others
    assert read_video(out / "001_a_blue_square.mp4")[0].shape[0] == 2


def test_keyframe_and_save_keyframe(model, tmp_path):
    key = tmp_path / "key.png"
    write_image(key, np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    with_key, without = tmp_path / "with", tmp_path / "without"
    assert generate(model, "a cat", "-o", with_key, "--format", "png", "--seed", 2, "--keyframe", key, "--save-keyframe") == 0
    assert generate(model, "a cat", "-o", without, "--format", "png", "--seed", 2) == 0
    assert not np.array_equal(read_video(with_key)[0], read_video(without)[0])
    assert json.loads((tmp_path / "with.json").read_text())["keyframe"] == str(key)
    assert read_image(tmp_path / "with_keyframe.png").shape == (32, 32, 3)


def test_progress_bar_runs(model, tmp_path, capsys):
    assert main(["generate", "--model", str(model), "a cat", "-o", str(tmp_path / "p.gif"), "--frames", "2"]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "0"], "frames must be at least 1"),
        (["--height", "30"], "height 30 must be a positive multiple of 4"),
        (["--sampler", "euler"], "unknown sampler 'euler'"),
        (["--steps", "-2"], "--steps must be at least 1"),
        (["--fps", "0"], "--fps must be positive"),
        (["--motion", "nan"], "--motion must be a finite number"),
        (["--appearance", "inf"], "--appearance must be a finite number"),
        (["--guidance", "nan"], "--guidance must be a finite number"),
        (["--temporal-guidance", "inf"], "--temporal-guidance must be a finite number"),
    ],
)
def test_user_errors_exit_2_without_output(model, tmp_path, capsys, args, message):
    out = tmp_path / "out.mp4"
    assert generate(model, "a cat", "-o", out, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("higen generate: error:") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_missing_model_unwritable_output_and_bad_prompts_file(model, tmp_path, capsys):
    assert generate(tmp_path / "nowhere", "a cat", "-o", tmp_path / "x.mp4") == 2
    assert "no model_index.json" in capsys.readouterr().err
    (tmp_path / "file.txt").write_text("not a folder")
    assert generate(model, "a cat", "-o", tmp_path / "file.txt" / "x.mp4") == 2
    assert "cannot write" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("a cat|three\n")
    assert generate(model, "--prompts-file", bad, "-o", tmp_path / "videos") == 2
    assert "seed 'three' is not an integer" in capsys.readouterr().err
    assert generate(model, "--prompts-file", tmp_path / "missing.txt") == 2
    assert "prompts file not found" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "file.txt"]


def test_errors_print_no_traceback(model, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "higen", "generate", "a cat", "--model", str(model), "--frames", "0", "-o", str(tmp_path / "x.mp4")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert "frames must be at least 1" in proc.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_info(model, capsys):
    from higen.pipeline.pipeline import HiGenPipeline

    assert main(["info", str(model)]) == 0
    text = capsys.readouterr().out
    pipe = HiGenPipeline.from_pretrained(model)
    for name, module in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder), ("autoencoder", pipe.autoencoder)):
        assert f"{name:13s} {sum(p.numel() for p in module.parameters()):>15,} parameters" in text
    assert "generation.frames = 4" in text


def test_convert_vgen_with_encoders_makes_a_usable_model(tmp_path, capsys, monkeypatch):
    # The tiny OpenCLIP file: text width 64 = the fixture UNet's text width (VGen y_dim).
    open_clip_file = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(tiny_open_clip_state_dict(seed=0, width=64), open_clip_file)
    tokenizer = tmp_path / "tokenizer"
    tiny_clip_tokenizer().save_pretrained(str(tokenizer))
    # The tiny SD checkpoint in LDM's layout; the CLI reads SD 2.1's config, so point that at the tiny one.
    ae = tiny_autoencoder(seed=1)
    ldm = ldm_from_diffusers(ae.vae.state_dict(), levels=len(TINY_AUTOENCODER["block_out_channels"]))
    sd_file = tmp_path / "v2-1_512-ema-pruned.ckpt"
    torch.save({"state_dict": {f"first_stage_model.{k}": v for k, v in ldm.items()}}, sd_file)
    import higen.encoders.autoencoder as autoencoder_module

    monkeypatch.setattr(autoencoder_module, "SD21_AUTOENCODER_CONFIG", {**autoencoder_module.SD21_AUTOENCODER_CONFIG, **TINY_AUTOENCODER})

    dst = tmp_path / "converted"
    assert main([
        "convert-vgen", str(TINY_VGEN / "state_dict.safetensors"), str(dst), "--vgen-config", str(TINY_VGEN / "config.json"),
        "--open-clip", str(open_clip_file), "--tokenizer", str(tokenizer), "--sd-checkpoint", str(sd_file),
    ]) == 0
    assert "UNet + text encoder + autoencoder" in capsys.readouterr().out
    assert json.loads((dst / "model_index.json").read_text())["components"] == ["unet", "text_encoder", "autoencoder"]
    out = tmp_path / "video.gif"
    # The fixture UNet downsamples 8x and the tiny autoencoder 2x: sizes are multiples of 16.
    assert generate(dst, "a red ball", "-o", out, "--frames", 2, "--height", 16, "--width", 32, "--steps", 2, "--seed", 0) == 0
    assert read_video(out)[0].shape == (2, 16, 32, 3)


def test_convert_with_a_bad_open_clip_file_writes_nothing(tmp_path, capsys):
    state = tiny_open_clip_state_dict(width=64)
    del state["ln_final.weight"]
    bad = tmp_path / "open_clip.bin"
    torch.save(state, bad)
    tokenizer = tmp_path / "tokenizer"
    tiny_clip_tokenizer().save_pretrained(str(tokenizer))
    dst = tmp_path / "out"
    args = ["convert-vgen", str(TINY_VGEN / "state_dict.safetensors"), str(dst), "--vgen-config", str(TINY_VGEN / "config.json")]
    assert main([*args, "--open-clip", str(bad), "--tokenizer", str(tokenizer)]) == 2
    assert "missing keys: ln_final.weight" in capsys.readouterr().err
    assert not dst.exists()
