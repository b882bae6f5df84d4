"""Bad and unusual inputs end in one clear line (exit 2) and write nothing: non-finite settings and weights,
corrupt model files, outputs that would be overwritten, huge sizes, unknown devices and formats (issue 24)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from higen.cli.main import main
from higen.cli.web import WebGenerator
from higen.pipeline.pipeline import NonFiniteError

from support import save_tiny_model, tiny_pipeline


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture
def copy_of(model, tmp_path):
    """A fresh copy of the tiny model folder, to damage."""
    return lambda: shutil.copytree(model, tmp_path / "damaged")


def generate(model, *args):
    return main(["generate", "--model", str(model), "--no-progress", *map(str, args)])


def one_error_line(capsys, command: str = "generate") -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"higen {command}: error:") and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------------------ 1. NaN and infinity
@pytest.mark.parametrize("flag, value", [("--motion", "nan"), ("--guidance", "nan"), ("--motion", "inf"), ("--fps", "nan")])
def test_non_finite_flags_are_refused(model, tmp_path, capsys, flag, value):
    assert generate(model, "a red circle", flag, value, "-o", tmp_path / "x.mp4") == 2
    assert f"{flag} must be a finite number" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setting", ["guidance", "motion", "appearance"])
def test_non_finite_web_settings_are_refused(tmp_path, setting):
    generator = WebGenerator(tiny_pipeline(0), tmp_path)
    with pytest.raises(ValueError, match="must be a finite number"):
        generator.generate("a red circle", **{setting: float("inf")})
    assert list(tmp_path.iterdir()) == []


def test_weights_that_overflow_fail_loudly_instead_of_a_black_video():
    pipe = tiny_pipeline(0)
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.mul_(1e30)  # finite weights whose activations overflow float32
    with pytest.raises(NonFiniteError, match="NaN or infinite values in the spatial prior"):
        pipe("a red circle", seed=0)


def _scramble_tensor_data(path, seed: int = 0) -> None:
    """Random bytes over a safetensors file's tensor data, its header kept (a file damaged on disk)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start:] = np.random.default_rng(seed).integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def test_random_bytes_in_the_weights_are_refused(copy_of, tmp_path, capsys):
    damaged = copy_of()
    _scramble_tensor_data(damaged / "unet" / "model.safetensors")
    assert generate(damaged, "a red circle", "-o", tmp_path / "x.mp4", "--seed", 1) == 2
    err = one_error_line(capsys)
    assert "model.safetensors is corrupt" in err and "hold NaN or infinite values" in err
    assert not (tmp_path / "x.mp4").exists()


# ---------------------------------------------------------------------------------- 3. corrupt files
@pytest.mark.parametrize("size", [0, 1000])
def test_truncated_unet_weights_in_generate_and_info(copy_of, tmp_path, capsys, size):
    damaged = copy_of()
    weights = damaged / "unet" / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(size)
    assert generate(damaged, "a cat", "-o", tmp_path / "x.mp4") == 2
    err = one_error_line(capsys)
    assert str(weights) in err and ("empty (0 bytes)" in err if size == 0 else "truncated, or not a checkpoint" in err)
    assert main(["info", str(damaged)]) == 2
    assert str(weights) in one_error_line(capsys, "info")
    assert not (tmp_path / "x.mp4").exists()


def test_truncated_autoencoder_weights(copy_of, tmp_path, capsys):
    damaged = copy_of()
    weights = next((damaged / "autoencoder").glob("*.safetensors"))
    with open(weights, "r+b") as f:
        f.truncate(500)
    assert generate(damaged, "a cat", "-o", tmp_path / "x.mp4") == 2
    assert f"cannot load {damaged / 'autoencoder'}" in one_error_line(capsys)


def test_broken_pipeline_json_is_named(copy_of, tmp_path, capsys):
    damaged = copy_of()
    (damaged / "pipeline.json").write_text("{broken")
    assert generate(damaged, "a cat", "-o", tmp_path / "x.mp4") == 2
    assert f"{damaged / 'pipeline.json'} is not valid JSON" in one_error_line(capsys)
    (damaged / "pipeline.json").write_text(json.dumps({"frames": -4}))
    assert generate(damaged, "a cat", "-o", tmp_path / "x.mp4") == 2
    assert f"{damaged / 'pipeline.json'}: frames must be at least 1" in one_error_line(capsys)


@pytest.mark.parametrize("name, content", [("garbage.safetensors", b"garbage\n"), ("text.pth", b"hello, not a checkpoint\n")])
def test_convert_vgen_on_a_foreign_file(tmp_path, capsys, name, content):
    src = tmp_path / name
    src.write_bytes(content)
    assert main(["convert-vgen", str(src), str(tmp_path / "out")]) == 2
    assert f"cannot read {src} as a checkpoint (truncated, or not a checkpoint?)" in one_error_line(capsys, "convert-vgen")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------- 2. never overwrite
def test_default_names_never_collide(model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for prompt in ("赤い丸", "青い四角", "赤い丸", "赤い丸"):
        assert generate(model, prompt, "--seed", 7, "--frames", 2) == 0
    names = sorted(p.name for p in (tmp_path / "outputs").glob("*.mp4"))
    assert names == ["赤い丸_7.mp4", "赤い丸_7_2.mp4", "赤い丸_7_3.mp4", "青い四角_7.mp4"]
    assert json.loads((tmp_path / "outputs" / "赤い丸_7_3.mp4.json").read_text())["output"] == str(Path("outputs") / "赤い丸_7_3.mp4")


def test_an_existing_output_is_refused_unless_overwrite(model, tmp_path, capsys):
    out = tmp_path / "existing.mp4"
    out.write_bytes(b"the user's video")
    assert generate(model, "a cat", "-o", out, "--frames", 2) == 2
    assert f"{out} exists; add --overwrite to replace it" in one_error_line(capsys)
    assert out.read_bytes() == b"the user's video"
    assert generate(model, "a cat", "-o", out, "--frames", 2, "--overwrite") == 0
    assert out.read_bytes()[4:8] == b"ftyp"


def test_prompts_file_outputs_get_a_counter(model, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red ball|3\n")
    out = tmp_path / "videos"
    for _ in range(2):
        assert generate(model, "--prompts-file", prompts, "-o", out, "--frames", 2) == 0
    assert sorted(p.name for p in out.glob("*.mp4")) == ["000_a_red_ball.mp4", "000_a_red_ball_2.mp4"]
    assert generate(model, "--prompts-file", prompts, "-o", out, "--frames", 2, "--overwrite") == 0
    assert len(list(out.glob("*.mp4"))) == 2


def test_web_outputs_never_collide(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(time, "strftime", lambda *_: "20240101-000000")  # two servers started in the same second
    first, second = WebGenerator(tiny_pipeline(0), tmp_path), WebGenerator(tiny_pipeline(0), tmp_path)
    a, _, _ = first.generate("a cat", seed=1, frames=2, steps=1)
    b, _, _ = second.generate("a cat", seed=1, frames=2, steps=1)
    assert a != b and a.is_file() and b.is_file()
