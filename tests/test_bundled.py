"""The bundled model: installing a trained folder into the package, and the commands that use it by default."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from higen.assets import BUNDLED_DIR
from higen.bundled import _main, install
from higen.pipeline.pipeline import HiGenPipeline
from higen.training.config import load_config

from support import save_tiny_model

BUNDLED = pytest.mark.skipif(not (BUNDLED_DIR / "model_index.json").is_file(), reason="no bundled model in this checkout")


def test_install_stores_fp16_and_runs_in_fp32(tmp_path):
    source = save_tiny_model(tmp_path / "trained")
    target = install(source, tmp_path / "bundled")
    for weights in ("unet/model.safetensors", "autoencoder/diffusion_pytorch_model.safetensors"):
        assert all(v.dtype == torch.float16 for v in load_file(str(target / weights)).values())
    original, installed = HiGenPipeline.from_pretrained(source), HiGenPipeline.from_pretrained(target)
    assert installed.unet.dtype == torch.float32 and installed.defaults == original.defaults
    a, b = original("a red circle", seed=0).video, installed("a red circle", seed=0).video
    # fp16 storage rounds the weights (relative 2^-11); on 8-bit frames that is a level or two here and there.
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0
    assert not list(tmp_path.glob(".bundled*"))


def test_install_replaces_generation_defaults(tmp_path, capsys):
    source = save_tiny_model(tmp_path / "trained")
    assert _main(["install", str(source), str(tmp_path / "x"), "sampler=dpm++"]) == 2  # a stray path is not key=value
    assert "key=value" in capsys.readouterr().err
    assert _main(["install", str(source), "no_such_setting=1"]) == 2
    assert "no_such_setting" in capsys.readouterr().err
    target = install(source, tmp_path / "bundled", defaults={"sampler": "dpm++", "temporal_steps": 7, "motion": 20})
    d = HiGenPipeline.from_pretrained(target).defaults
    assert (d.sampler, d.temporal_steps, d.motion) == ("dpm++", 7, 20)
    assert d.frames == HiGenPipeline.from_pretrained(source).defaults.frames


@BUNDLED
def test_python_api_loads_the_bundled_model_when_none_is_named():
    pipe = HiGenPipeline.from_pretrained()
    assert pipe.unet.dtype == torch.float32
    d = json.loads((BUNDLED_DIR / "pipeline.json").read_text())
    assert (pipe.defaults.frames, pipe.defaults.height, pipe.defaults.width) == (d["frames"], d["height"], d["width"])


@BUNDLED
def test_the_bundled_model_is_small_and_complete():
    size = sum(p.stat().st_size for p in BUNDLED_DIR.rglob("*") if p.is_file())
    assert size < 30 * 2**20
    index = json.loads((BUNDLED_DIR / "model_index.json").read_text())
    assert index["components"] == ["unet", "text_encoder", "autoencoder"]


@BUNDLED
def test_generate_uses_the_bundled_model_when_none_is_named(tmp_path):
    from higen.io.video import read_video
    from higen.cli.main import main

    out = tmp_path / "video.mp4"
    assert main(["generate", "a red circle moving left on a black background", "-o", str(out), "--steps", "2", "--seed", "1",
                 "--no-progress"]) == 0
    frames, _ = read_video(out)
    defaults = json.loads((BUNDLED_DIR / "pipeline.json").read_text())
    assert frames.shape == (defaults["frames"], defaults["height"], defaults["width"], 3)
    sidecar = json.loads(out.with_name("video.mp4.json").read_text())
    assert sidecar["model"] == str(BUNDLED_DIR) and sidecar["seed"] == 1


def test_the_four_stages_chain_and_the_script_installs_the_last():
    """configs/bundled/attributes_video.yaml continues from the model attributes_spatial.yaml writes when it
    finishes, attributes_cues.yaml from the video stage's and attributes_motion.yaml from the cue stage's, with
    the same UNet, text, autoencoder and generation defaults; scripts/train_bundled.sh runs all four (resuming)
    and installs the motion stage's model (docs/bundled_model.md)."""
    root = Path(__file__).resolve().parents[1]
    base = load_config(root / "configs/bundled/higen.yaml")
    spatial = load_config(root / "configs/bundled/attributes_spatial.yaml")
    video = load_config(root / "configs/bundled/attributes_video.yaml")
    cues = load_config(root / "configs/bundled/attributes_cues.yaml")
    motion = load_config(root / "configs/bundled/attributes_motion.yaml")
    assert spatial.model.unet.attribute_values and spatial.loss.attribute_weight > 0
    assert spatial.data.videos is None and spatial.cues.image_probability == 1.0  # text to one frame only
    for before, after in ((spatial, video), (video, cues), (cues, motion)):
        assert after.model.init == "folder" and Path(after.model.path) == Path(before.train.output_dir) / "model"
        assert after.model.unet == before.model.unet and after.generation == before.generation == base.generation
        assert after.model.text_encoder == before.model.text_encoder and after.model.autoencoder == before.model.autoencoder
        assert after.train.output_dir != before.train.output_dir  # the earlier stage's checkpoints stay
        assert after.data.videos and 0 < after.cues.image_probability < 1
        assert [r.pattern for r in after.optim.param_groups] == ["@spatial"] and after.optim.param_groups[0].lr_scale < 1
    # Image steps keep Min-SNR; the later stages' video steps take the plain loss (docs/bundled_model.md).
    assert video.loss.video_snr_gamma is None and video.loss.snr_gamma == cues.loss.snr_gamma > 0
    assert cues.loss.video_snr_gamma == motion.loss.video_snr_gamma == 0.0
    # Only the last stage moves the spatial prior (a widening of the loaded UNet, not in the release).
    assert motion.model.add_prior_motion and not any(c.model.add_prior_motion for c in (spatial, video, cues))
    script = (root / "scripts/train_bundled.sh").read_text()
    for config in ("attributes_spatial.yaml", "attributes_video.yaml", "attributes_cues.yaml", "attributes_motion.yaml"):
        assert f"configs/bundled/{config}" in script
    assert script.count('--resume >> runs/bundled_attr_') == 4  # a stopped stage continues where it stopped
    assert f"higen.bundled install {motion.train.output_dir}/model" in script
