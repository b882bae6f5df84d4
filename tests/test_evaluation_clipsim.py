"""CLIPSIM: the OpenCLIP towers' embeddings, the frame transform, the per-video and per-folder means, the CLI."""

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from higen.encoders import open_clip
from higen.encoders.image import CLIP_MEAN, CLIP_STD
from higen.evaluation.captions import read_captions
from higen.evaluation.clipsim import CLIPSimilarity, clip_preprocess, evaluate_clipsim
from higen.io.video import write_video
from higen.tiny import tiny_clip_tokenizer

from support import save_tiny_open_clip, tiny_open_clip_state_dict
from test_encoders import _layer_norm, _open_clip_block, open_clip_image_embedding


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    return save_tiny_open_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def scorer(clip_files):
    checkpoint, tokenizer, _ = clip_files
    return CLIPSimilarity.from_open_clip_checkpoint(checkpoint, tokenizer)


def open_clip_text_embedding(state, ids, heads):
    """OpenCLIP's encode_text: every causal block, ln_final, the features at the end token (the highest id), @ text_projection."""
    length = ids.shape[1]
    x = state["token_embedding.weight"][ids] + state["positional_embedding"][:length]
    mask = torch.full((length, length), float("-inf")).triu(1)
    for i in range(open_clip.count_blocks(state)):
        x = _open_clip_block(x, state, f"transformer.resblocks.{i}.", heads, mask)
    x = _layer_norm(x, state, "ln_final")
    return x[torch.arange(len(ids)), ids.argmax(dim=-1)] @ state["text_projection"]


def write_frames(folder, frames):
    write_video(folder, frames, fps=8, format="png")  # lossless, so the test knows the exact frames
    return folder


# ------------------------------------------------------------------------------------ the transform
def test_preprocess_centre_crops_a_frame_whose_short_side_is_the_image_size():
    frame = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    expected = (torch.from_numpy(frame[:, 8:40]).permute(2, 0, 1) / 255 - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    torch.testing.assert_close(clip_preprocess(frame, 32), expected)


def test_preprocess_resizes_the_short_side_bicubic_with_antialiasing():
    """PIL's bicubic (what OpenCLIP's torchvision transform runs on PIL images) ~ torch's antialiased bicubic, up to uint8 rounding."""
    frame = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    pixels = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    resized = F.interpolate(pixels, size=(32, 40), mode="bicubic", antialias=True, align_corners=False).clamp(0, 255)[0, :, :, 4:36]
    expected = (resized / 255 - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    levels = ((clip_preprocess(frame, 32) - expected) * torch.tensor(CLIP_STD).view(3, 1, 1) * 255).abs()
    assert levels.mean() < 0.3 and levels.max() < 3  # PIL computes in fixed point and rounds to uint8
    with pytest.raises(ValueError, match="uint8"):
        clip_preprocess(frame.astype(np.float32), 32)


# --------------------------------------------------------------------------------------- the score
def test_clipsim_is_the_mean_cosine_of_openclips_embeddings(scorer, clip_files):
    _, _, state = clip_files
    frames = np.random.default_rng(2).integers(0, 256, (3, 40, 32, 3), dtype=np.uint8)
    caption = "a red circle"
    ids = scorer.text.tokenize([caption])
    text = F.normalize(open_clip_text_embedding(state, ids, heads=2), dim=-1)[0]
    pixels = torch.stack([clip_preprocess(f, 32) for f in frames])
    images = F.normalize(open_clip_image_embedding(open_clip.visual_tower(state), pixels, heads=1), dim=-1)
    expected = (images @ text).double().detach()
    np.testing.assert_allclose(scorer.per_frame(frames, caption, batch_size=2), expected.numpy(), atol=1e-5)
    assert scorer.clipsim(frames, caption) == pytest.approx(float(expected.mean()), abs=1e-5)
    assert ids[0].argmax() == len(scorer.text.tokenizer([caption])["input_ids"][0]) - 1  # the end token, before the padding


def test_checkpoint_architecture_and_name_come_from_the_tensors(tmp_path):
    """A ViT-B-32-shaped file (1 block per tower to stay small): 768-wide vision with 12 heads, 512-wide text with 8."""
    state = tiny_open_clip_state_dict(width=512, layers=1, embed_dim=64, vision_width=768, vision_layers=1, image_size=64, patch_size=32)
    torch.save(state, tmp_path / "b32.bin")
    tiny_clip_tokenizer().save_pretrained(str(tmp_path / "tok"))
    clip = CLIPSimilarity.from_open_clip_checkpoint(tmp_path / "b32.bin", tmp_path / "tok", quick_gelu=True)
    assert clip.name == "ViT-B-32-quickgelu"
    vision, text = clip.image.model.config, clip.text.model.config
    assert (vision.num_attention_heads, vision.patch_size, vision.image_size, vision.hidden_act) == (12, 32, 64, "quick_gelu")
    assert (text.num_attention_heads, text.projection_dim, text.hidden_act) == (8, 64, "quick_gelu")
    assert len(clip.checkpoint["checkpoint_sha256"]) == 64


def test_folder_report_and_captions(scorer, tmp_path):
    rng = np.random.default_rng(4)
    videos = {"video1": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), "video2": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)}
    for name, frames in videos.items():
        write_frames(tmp_path / "fake" / name, frames)
    captions_file = tmp_path / "captions.csv"
    with captions_file.open("w", newline="") as f:
        csv.writer(f).writerows([["video_id", "caption"], ["video1", "a cat"], ["video2", "a dog runs"], ["video3", "unused"]])
    report = evaluate_clipsim(tmp_path / "fake", captions_file, scorer)
    assert report["n"] == 2 and report["model"] == "ViT-64w-8"
    assert report["videos"]["video2"] == {"caption": "a dog runs", "frames": 3, "clipsim": pytest.approx(scorer.clipsim(videos["video2"], "a dog runs"))}
    assert report["clipsim"] == pytest.approx((report["videos"]["video1"]["clipsim"] + report["videos"]["video2"]["clipsim"]) / 2)
    with pytest.raises(ValueError, match="1 videos of .* have no caption.*video2"):
        evaluate_clipsim(tmp_path / "fake", {"video1": "a cat"}, scorer)


def test_captions_file_errors(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("caption\nfirst\nsecond\n")
    assert read_captions(path) == {"00000": "first", "00001": "second"}  # numbered rows without a video column
    path.write_text("video,text\na,b\n")
    with pytest.raises(ValueError, match="no 'caption' column"):
        read_captions(path)
    path.write_text("video,caption\na,one\na,two\n")
    with pytest.raises(ValueError, match="row 3: video 'a' has a caption already"):
        read_captions(path)
    path.write_text("video,caption\n../x,one\n")
    with pytest.raises(ValueError, match="cannot name a video file"):
        read_captions(path)


def test_cli_clipsim(scorer, clip_files, tmp_path, capsys):
    from higen.cli.main import main

    checkpoint, tokenizer, _ = clip_files
    frames = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    write_frames(tmp_path / "fake" / "clip0", frames)
    (tmp_path / "captions.csv").write_text("video,caption\nclip0,a small boat\n")
    args = ["evaluate-videos", "--clipsim", str(tmp_path / "fake"), "--captions", str(tmp_path / "captions.csv"),
            "--clip-checkpoint", str(checkpoint), "--tokenizer", str(tokenizer), "--device", "cpu", "-o", str(tmp_path / "r.json"), "--no-progress"]
    assert main(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())["clipsim"][0]
    assert report["clipsim"] == pytest.approx(scorer.clipsim(frames, "a small boat"), abs=1e-6)
    assert "CLIPSIM" in capsys.readouterr().out
    assert main(args[:3] + ["--device", "cpu"]) == 2  # no --captions: one line, no traceback
    assert "--clipsim needs --captions" in capsys.readouterr().err
