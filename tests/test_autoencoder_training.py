"""Training a small latent autoencoder (``higen train-autoencoder``) on the procedural world."""

import json

import pytest
import torch

from higen.cli.main import main
from higen.encoders.autoencoder import VideoAutoencoder
from higen.training.autoencoder import heldout_frames, load_autoencoder_config, take_frames

TINY = ["model.block_out_channels=[32,32]", "data.height=16", "data.width=16", "data.frames=4", "data.num_workers=0",
        "train.batch_size=2", "train.frames_per_clip=2", "train.eval_clips=4", "train.log_every=2", "train.warmup_steps=1"]


def test_take_frames_picks_distinct_frames_of_each_clip():
    video = torch.arange(3 * 5, dtype=torch.float32).reshape(3, 1, 5, 1, 1).expand(3, 3, 5, 2, 2)
    frames = take_frames(video, 4, torch.Generator().manual_seed(0))
    assert frames.shape == (12, 3, 2, 2)
    values = frames[:, 0, 0, 0].reshape(3, 4)
    for clip, row in enumerate(values):
        assert len(set(row.tolist())) == 4  # without replacement
        assert all(clip * 5 <= v < clip * 5 + 5 for v in row.tolist())  # from its own clip


def test_train_autoencoder_cli_saves_a_loadable_autoencoder_with_unit_scale_latents(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-autoencoder", *TINY, "train.max_steps=6", f"train.output_dir={out}"]) == 0
    assert "held-out PSNR" in capsys.readouterr().out
    ae = VideoAutoencoder.from_pretrained(out / "autoencoder")
    report = json.loads((out / "autoencoder_report.json").read_text())
    assert ae.downscale_factor == 2 and ae.scaling_factor == pytest.approx(report["scaling_factor"])
    # The scale is chosen so that held-out latents have unit standard deviation.
    cfg = load_autoencoder_config(None, TINY)
    frames = heldout_frames(cfg)[:, :, None]  # (b f) 3 1 H W
    latents = ae.encode(frames)
    assert latents.std().item() == pytest.approx(1.0, rel=1e-3)
    assert [h["step"] for h in report["history"]] == [2, 4, 6]
    # An existing output is refused rather than overwritten.
    assert main(["train-autoencoder", *TINY, "train.max_steps=1", f"train.output_dir={out}"]) == 2


def test_bad_config_key_is_refused(capsys):
    assert main(["train-autoencoder", "train.max_stepz=3"]) == 2
    assert "max_stepz" in capsys.readouterr().err


def test_contrast_weights_favour_what_differs_from_the_row_background():
    from higen.training.loss import contrast_weights

    frames = torch.linspace(-1, 1, 8)[None, None, :, None].repeat(2, 3, 1, 8)  # a vertical gradient background
    frames[:, :, 2:4, 2:4] = 1.0  # a small bright object
    plain = contrast_weights(frames, 0.0)
    assert torch.equal(plain, torch.ones(2, 1, 8, 8))
    weights = contrast_weights(frames, 3.0)
    assert weights.shape == (2, 1, 8, 8)
    torch.testing.assert_close(weights.mean(dim=(2, 3)), torch.ones(2, 1))
    # the gradient is background (each row's median): every background position weighs the same
    background = torch.ones(8, 8, dtype=torch.bool)
    background[2:4, 2:4] = False
    torch.testing.assert_close(weights[0, 0][background], weights[0, 0, 0, 0].expand(60))
    # the object pixel farthest from its row's background gets 1 + strength times a background pixel's weight
    torch.testing.assert_close(weights[0, 0, 2:4, 2:4].max() / weights[0, 0, 0, 0], torch.tensor(4.0))