"""`higen convert-vgen` and `higen info` on the official tiny fixture."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES
from higen.cli.main import main
from higen.models.unet import HiGenUNet

TINY = FIXTURES / "vgen_higen_tiny"


def test_convert_fixture_checkpoint_then_forward_matches_reference(tmp_path, vgen_tiny, capsys):
    _, state, io = vgen_tiny
    src = tmp_path / "higen_tiny.pth"
    torch.save({"state_dict": state, "step": 725000}, src)  # the release's wrapper layout
    dst = tmp_path / "converted"
    assert main(["convert-vgen", str(src), str(dst), "--vgen-config", str(TINY / "config.json")]) == 0
    assert "converted" in capsys.readouterr().out
    unet = HiGenUNet.from_pretrained(dst / "unet")
    with torch.no_grad():
        out = unet(io["x"], io["t"], io["y"], spatial_prior=io["spat_prior"], motion=io["motion_cond"], appearance=io["appearance_cond"])
    torch.testing.assert_close(out, io["out_video"], atol=1e-5, rtol=0)
    index = json.loads((dst / "model_index.json").read_text())
    assert index["components"] == ["unet"]
    # A UNet-only folder is refused by the pipeline with a message saying what to add.
    from higen.pipeline.pipeline import HiGenPipeline

    with pytest.raises(ValueError, match="--open-clip and --sd-checkpoint"):
        HiGenPipeline.from_pretrained(dst)
    assert main(["info", str(dst)]) == 0
    text = capsys.readouterr().out
    total = sum(v.numel() for v in load_file(str(TINY / "state_dict.safetensors")).values())
    assert f"{total:,} parameters" in text


def test_convert_stores_fp16(tmp_path):
    dst = tmp_path / "fp16"
    assert main(["convert-vgen", str(TINY / "state_dict.safetensors"), str(dst), "--vgen-config", str(TINY / "config.json"), "--dtype", "fp16"]) == 0
    weights = load_file(str(dst / "unet" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in weights.values())


def test_convert_with_the_wrong_config_lists_the_mismatch_and_writes_nothing(tmp_path, capsys):
    kwargs = json.loads((TINY / "config.json").read_text())["vgen_kwargs"]
    kwargs["dim_mult"] = [1, 2, 2]
    cfg = tmp_path / "wrong.json"
    cfg.write_text(json.dumps(kwargs))
    dst = tmp_path / "out"
    assert main(["convert-vgen", str(TINY / "state_dict.safetensors"), str(dst), "--vgen-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unexpected keys" in err and "wrong shape" in err
    assert not dst.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a checkpoint", None])
def test_convert_bad_files(tmp_path, capsys, content):
    src = tmp_path / "bad.pth"
    if content is not None:
        src.write_bytes(content)
    assert main(["convert-vgen", str(src), str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_user_errors_print_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "higen", "convert-vgen", str(tmp_path / "missing.pth"), str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "checkpoint not found" in proc.stderr
