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


# ---------------------------------------------------------------------------------------- 5. huge sizes
def test_a_huge_size_is_refused_before_any_work(model, tmp_path, capsys):
    assert generate(model, "a cat", "--height", 100000, "--width", 100000, "-o", tmp_path / "x.mp4") == 2
    err = one_error_line(capsys)
    assert "a 100000x100000 video of 4 frames needs at least" in err and "GiB is free on cpu" in err


def test_a_huge_size_on_the_web_page_is_a_clear_error(tmp_path):
    generator = WebGenerator(tiny_pipeline(0), tmp_path)
    with pytest.raises(ValueError, match="needs at least .* GiB of memory"):
        generator.generate("a cat", height=100000, width=100000)


def test_available_memory_is_known_on_this_machine():
    from higen.pipeline.memory import available_memory

    assert available_memory("cpu") > 0


# ---------------------------------------------------------------------------------------- 6. the rest
@pytest.mark.parametrize("args, message", [
    (["--device", "tpu7"], "--device tpu7: not a device name; use cpu, cuda, cuda:N or mps"),
    (["--device", "mps"], "--device mps was asked for but this machine has no Apple GPU (MPS)"),
    (["-o", "{tmp}/out.avi"], ".avi videos are not supported; use .mp4, .gif, or a folder with --format png"),
    (["-o", "{tmp}/out.gif", "--format", "mp4"], "does not match --format mp4"),
    (["--seed", str(10**23)], f"--seed must be a whole number from 0 to 2**64 - 1, got {10**23}"),
    (["--fps", "nan"], "--fps must be a finite number, got nan"),
    (["-o", "/proc/higen-test/x.mp4"], "cannot write to /proc/higen-test"),
])
def test_bad_flags_fail_before_the_model_is_loaded(model, tmp_path, capsys, monkeypatch, args, message):
    import torch.backends.mps

    import higen.cli.generate as generate_module

    if "/proc/" in args[-1] and not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(generate_module, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    assert generate(model, "a cat", *[a.format(tmp=tmp_path) for a in args]) == 2
    assert message in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_empty_prompt_is_refused_by_the_cli_and_the_web_page_alike(model, tmp_path, capsys):
    assert generate(model, "  ", "-o", tmp_path / "x.mp4") == 2
    assert "the prompt is empty" in one_error_line(capsys)
    with pytest.raises(ValueError, match="the prompt is empty"):
        WebGenerator(tiny_pipeline(0), tmp_path).generate("")
    assert list(tmp_path.iterdir()) == []


def test_non_utf8_prompts_file_is_named(model, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("a café\n".encode("latin-1"))
    assert generate(model, "--prompts-file", prompts, "-o", tmp_path / "videos") == 2
    assert f"{prompts} is not UTF-8 text" in one_error_line(capsys)


def test_seed_out_of_range_in_the_web_page_and_the_api(tmp_path):
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to 2\\*\\*64 - 1"):
        WebGenerator(tiny_pipeline(0), tmp_path).generate("a cat", seed=10**23)
    with pytest.raises(ValueError, match="seed must be a whole number"):
        tiny_pipeline(0)("a cat", seed=2**64)


def test_checkpoint_weights_follow_the_umask(tmp_path):
    from higen.io.files import umask
    from higen.training.checkpoint import save_checkpoint

    folder = save_checkpoint(tmp_path, 1, {"unet": {"w": torch.zeros(2)}}, {"step": 1}, keep_last=2)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes == {"unet.safetensors": 0o666 & ~umask(), "trainer.json": 0o666 & ~umask()}


def test_a_write_killed_midway_leaves_a_visible_partial_that_the_next_write_removes(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "video.mp4"
    code = ("import os, signal, sys; from higen.io.files import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half a video')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", code, str(target)]).returncode == -9
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 1 and left[0].startswith("video.partial-") and left[0].endswith(".mp4")  # not hidden, named for its video
    from higen.io.files import atomic_write_bytes

    atomic_write_bytes(target, b"a video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]
