"""The training data pipeline: frame choice, decoding, manifests, shards, skips, rank slicing, resume, cache.

Test clips are written here with PyAV: frame i of clip k is a flat colour with red = 10 i and
green = 20 k, so a decoded frame tells which source frame and clip it came from (the codec's error on
flat colours is a few levels, far below the 10-level spacing).
"""

from __future__ import annotations

import json
import math
import sys
import tarfile
import types
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from higen.data import (
    Batch,
    ClipSampling,
    SkipSample,
    TrainingData,
    build_cache,
    cache_fingerprint,
    choose_frames,
    decode_clip,
    epoch_permutation,
    expand_shards,
    fit_frames,
    open_cache,
    read_manifest,
    read_shards,
)
from higen.data.dataset import sample_rng
from higen.data.config import DataSection
from higen.training.config import load_config

H, W, FPS, N_FRAMES, N_CLIPS = 32, 48, 24, 24, 10


# ---------------------------------------------------------------------------------- helpers


def write_clip(path: Path, clip: int = 0, frames: int = N_FRAMES, fps: int = FPS, codec: str = "libx264", gop: int | None = None) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        for i in range(frames):
            frame = np.empty((H, W, 3), np.uint8)
            frame[..., 0], frame[..., 1], frame[..., 2] = (10 * i) % 250, 20 * clip, 128
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_png(path: Path, clip: int) -> Path:
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
        image = np.full((H, W, 3), 20 * clip, np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_ids(pixels: torch.Tensor) -> list[int]:
    """Source frame index of every frame of one decoded uint8 clip ``3 f H W`` (red = 10 i)."""
    return [round(float(v) / 10) for v in pixels[0].float().mean(dim=(1, 2))]


def clip_id(pixels: torch.Tensor) -> int:
    """Clip number of a batch item in [-1, 1] (green = 20 k)."""
    return round(float((pixels[1].mean() + 1) * 127.5) / 20)


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def data_cfg(videos: str | None, **kw) -> DataSection:
    base = dict(source="manifest", videos=videos, frames=4, fps=8.0, height=16, width=24)
    return DataSection(**(base | kw))


def take(data: TrainingData, n: int, kind: str = "video") -> list[Batch]:
    return [data.next_batch(kind) for _ in range(n)]


def same_batches(a: list[Batch], b: list[Batch]) -> bool:
    return all(x.indices == y.indices and x.captions == y.captions and torch.equal(x.pixels, y.pixels) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """clips/: c0..c9.mp4 (24 frames, 24 fps), good.jsonl listing them, images/ p0..p3.png + images.jsonl."""
    folder = tmp_path_factory.mktemp("clips")
    for k in range(N_CLIPS):
        write_clip(folder / f"c{k}.mp4", clip=k)
    jsonl(folder / "good.jsonl", [{"path": f"c{k}.mp4", "caption": f"clip {k}"} for k in range(N_CLIPS)])
    (folder / "images").mkdir()
    for k in range(4):
        write_png(folder / "images" / f"p{k}.png", k)
    jsonl(folder / "images.jsonl", [{"path": f"images/p{k}.png", "caption": f"image {k}"} for k in range(4)])
    return folder


@pytest.fixture(scope="module")
def broken(clips) -> Path:
    """broken.jsonl: the 10 good clips plus one file per skip reason."""
    folder = clips / "broken"
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video")
    data = (clips / "c0.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])  # mp4 index (moov) written last: nothing opens
    webm = write_clip(folder / "full.webm", codec="libvpx").read_bytes()
    (folder / "cut.webm").write_bytes(webm[: len(webm) // 2])  # header says 24 frames, ~5 decode
    mkv = bytearray(write_clip(folder / "full.mkv", codec="ffv1").read_bytes())
    mkv[len(mkv) // 2 : len(mkv) // 2 + 200] = bytes(range(200))  # damaged lossless frames fail to decode
    (folder / "damaged.mkv").write_bytes(bytes(mkv))
    write_clip(folder / "short.mp4", frames=3)
    with av.open(str(folder / "audio.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    bad = ["empty.mp4", "text.mp4", "cut.mp4", "cut.webm", "damaged.mkv", "short.mp4", "audio.mp4", "gone.mp4"]
    (folder / "gone.mp4").write_bytes(data)  # listed, then deleted after start-up: "missing" at run time
    rows = [{"path": f"../c{k}.mp4", "caption": f"clip {k}"} for k in range(N_CLIPS)] + [{"path": p, "caption": p} for p in bad]
    jsonl(folder / "broken.jsonl", rows)
    return folder


# ------------------------------------------------------------------------------ frame choice


def test_choose_frames_takes_source_frames_nearest_to_target_times():
    spec = ClipSampling(frames=5, height=8, width=8, fps=10.0, random_start=False)
    # 24 fps -> 10 fps: target time j / 10 s is source frame 2.4 j; nearest: 0, 2, 5, 7, 10
    assert choose_frames(48, spec.step(24), spec, np.random.default_rng(0)) == [0, 2, 5, 7, 10]
    assert choose_frames(48, spec.step(30), spec, np.random.default_rng(0)) == [0, 3, 6, 9, 12]


def test_choose_frames_random_start_covers_the_valid_range_and_is_keyed_by_the_generator():
    spec = ClipSampling(frames=4, height=8, width=8, fps=8.0)
    starts = set()
    for seed in range(200):
        positions = choose_frames(24, 3.0, spec, np.random.default_rng(seed))
        assert positions == [positions[0] + 3 * j for j in range(4)]
        assert positions == choose_frames(24, 3.0, spec, np.random.default_rng(seed))
        starts.add(positions[0])
    assert starts == set(range(24 - 9))  # the last frame (start + 9) must stay <= 23


def test_choose_frames_too_short_rule():
    spec = ClipSampling(frames=12, height=8, width=8, fps=4.0)
    # 24 frames cannot hold 12 frames 6 apart: spread over the whole video, start 0 whatever the draw
    expected = [math.floor(j * 23 / 11 + 0.5) for j in range(12)]
    for seed in range(5):
        assert choose_frames(24, 6.0, spec, np.random.default_rng(seed)) == expected
    # down to taking every frame; fewer frames than needed: skipped, or padded with the last frame
    assert choose_frames(12, 6.0, spec, np.random.default_rng(0)) == list(range(12))
    with pytest.raises(SkipSample) as err:
        choose_frames(11, 6.0, spec, np.random.default_rng(0))
    assert err.value.reason == "too_short"
    pad = ClipSampling(frames=6, height=8, width=8, min_frames_policy="pad")
    assert choose_frames(4, 3.0, pad, np.random.default_rng(0)) == [0, 1, 2, 3, 3, 3]


# ---------------------------------------------------------------------------------- decoding


def test_fps_resampling_decodes_the_chosen_source_frames(clips):
    spec = ClipSampling(frames=4, height=16, width=24, fps=8.0)  # 24 -> 8 fps: every third frame
    for seed in range(4):
        clip = decode_clip(clips / "c3.mp4", spec, np.random.default_rng(seed))
        assert clip.shape == (3, 4, 16, 24) and clip.dtype == torch.uint8
        assert frame_ids(clip) == choose_frames(N_FRAMES, 3.0, spec, np.random.default_rng(seed))


def test_frame_stride_and_non_integer_fps_ratio(clips):
    stride = ClipSampling(frames=4, height=16, width=24, frame_stride=5, random_start=False)
    assert frame_ids(decode_clip(clips / "c0.mp4", stride, np.random.default_rng(0))) == [0, 5, 10, 15]
    ratio = ClipSampling(frames=5, height=16, width=24, fps=10.0, random_start=False)
    assert frame_ids(decode_clip(clips / "c0.mp4", ratio, np.random.default_rng(0))) == [0, 2, 5, 7, 10]


def test_seeking_into_a_long_video_gives_the_same_frames_as_reading_from_the_start(tmp_path):
    path = write_clip(tmp_path / "long.mp4", frames=96, gop=8)  # keyframes every 8 frames
    spec = ClipSampling(frames=4, height=16, width=24, fps=8.0)
    starts = set()
    for seed in range(6):
        positions = choose_frames(96, 3.0, spec, np.random.default_rng(seed))
        starts.add(positions[0])
        assert frame_ids(decode_clip(path, spec, np.random.default_rng(seed))) == [(10 * p % 250) // 10 for p in positions]
    assert max(starts) > 16  # at least one draw really seeks past two keyframes


def test_fit_frames_scales_the_shorter_side_and_crops_the_centre():
    ramp = torch.arange(48, dtype=torch.float32) * 5  # value 5 x at column x
    frames = ramp.expand(2, 32, 48)[..., None].expand(2, 32, 48, 3).to(torch.uint8)
    out = fit_frames(frames, 16, 16)  # scale 1/2 -> 16 x 24, keep columns 4..19
    assert out.shape == (3, 2, 16, 16) and out.dtype == torch.uint8
    # a normalised symmetric filter keeps a linear ramp: output column j samples input x = 2 (j + 4) + 0.5
    expected = torch.tensor([5 * (2 * (j + 4) + 0.5) for j in range(16)])
    assert torch.allclose(out[0, 0].float(), expected.expand(16, 16), atol=1)
    assert fit_frames(frames, 64, 64).shape == (3, 2, 64, 64)  # smaller sources are scaled up


def test_images_are_one_frame_clips(clips):
    image = decode_clip(clips / "images" / "p2.png", ClipSampling(frames=1, height=16, width=16), np.random.default_rng(0))
    assert image.shape == (3, 1, 16, 16) and int(image[1].float().mean().round()) == 40


@pytest.mark.parametrize(("name", "reason"), [
    ("empty.mp4", "zero_length"), ("text.mp4", "unreadable"), ("cut.mp4", "unreadable"), ("cut.webm", "truncated"),
    ("damaged.mkv", "corrupt"), ("short.mp4", "too_short"), ("audio.mp4", "no_video_stream"), ("nowhere.mp4", "missing"),
])
def test_unusable_files_raise_skip_with_their_reason(broken, name, reason):
    spec = ClipSampling(frames=8, height=16, width=24, fps=8.0)
    with pytest.raises(SkipSample) as err:
        decode_clip(broken / name, spec, np.random.default_rng(0))
    assert err.value.reason == reason


# --------------------------------------------------------------------------------- manifests


def test_manifest_formats_give_the_same_rows(clips, tmp_path):
    rows = [(f"c{k}.mp4", f"clip {k}, with a comma") for k in range(3)]
    (tmp_path / "m.csv").write_text("id,path,caption\n" + "".join(f'{i},{p},"{c}"\n' for i, (p, c) in enumerate(rows)))
    (tmp_path / "m.tsv").write_text("path\tcaption\n" + "".join(f"{p}\t{c}\n" for p, c in rows))
    jsonl(tmp_path / "m.jsonl", [{"path": p, "caption": c, "extra": 1} for p, c in rows])
    (tmp_path / "m.txt").write_text("".join(f"{p}|||{c}\n" for p, c in rows) + "\n")
    spec = ClipSampling(frames=1, height=8, width=8)
    for name in ("m.csv", "m.tsv", "m.jsonl", "m.txt"):
        source = read_manifest(tmp_path / name, spec, root=clips)
        assert [(Path(source.describe(i)).name, source.captions[i]) for i in range(len(source))] == rows
        assert all(Path(source.describe(i)).is_file() for i in range(len(source)))


def test_manifest_paths_are_relative_to_the_manifest_folder_by_default(clips):
    source = read_manifest(clips / "good.jsonl", ClipSampling(frames=1, height=8, width=8))
    assert Path(source.describe(4)) == clips / "c4.mp4"


def test_manifest_errors_are_clear(clips, tmp_path):
    spec = ClipSampling(frames=1, height=8, width=8)
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv", spec)
    (tmp_path / "cols.csv").write_text("video,text\nc0.mp4,a\n")
    with pytest.raises(ValueError, match=r"no column 'path' \(columns: video, text\)"):
        read_manifest(tmp_path / "cols.csv", spec, root=clips)
    assert len(read_manifest(tmp_path / "cols.csv", spec, root=clips, path_column="video", caption_column="text")) == 1
    jsonl(tmp_path / "cols.jsonl", [{"path": "c0.mp4", "text": "a"}])
    with pytest.raises(ValueError, match=r"no column 'caption' \(columns: path, text\)"):
        read_manifest(tmp_path / "cols.jsonl", spec, root=clips)
    (tmp_path / "empty.csv").write_text("path,caption\n")
    with pytest.raises(ValueError, match="no rows"):
        read_manifest(tmp_path / "empty.csv", spec)
    (tmp_path / "bad.txt").write_text("c0.mp4 a caption without separator\n")
    with pytest.raises(ValueError, match="line 1 is not 'path|||caption'"):
        read_manifest(tmp_path / "bad.txt", spec, root=clips)
    with pytest.raises(ValueError, match="unknown manifest format"):
        read_manifest(clips / "c0.mp4", spec)


def test_manifest_rows_with_missing_files_are_counted_and_listed(clips, tmp_path):
    rows = [{"path": f"c{k}.mp4", "caption": ""} for k in range(3)] + [{"path": f"lost{k}.mp4", "caption": ""} for k in range(7)]
    jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(FileNotFoundError) as err:
        read_manifest(tmp_path / "m.jsonl", ClipSampling(frames=1, height=8, width=8), root=clips)
    message = str(err.value)
    assert "7 of 10 files do not exist" in message and "lost0.mp4, lost1.mp4" in message and "lost6.mp4" not in message
    assert len(read_manifest(tmp_path / "m.jsonl", ClipSampling(frames=1, height=8, width=8), root=clips, check_files=False)) == 10


def test_training_data_reports_start_up_errors(clips, tmp_path):
    with pytest.raises(FileNotFoundError):
        TrainingData(data_cfg(str(tmp_path / "none.jsonl")), seed=0, rank=0, world_size=1, batch_size=1, image_batch_size=1, num_workers=0)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TrainingData(data_cfg(str(clips / "good.jsonl")), seed=0, rank=0, world_size=4, batch_size=3, image_batch_size=1, num_workers=0)


# -------------------------------------------------------------------------------------- shards


def make_shards(clips: Path, folder: Path, per_shard: int = 4) -> str:
    """Tar shards of the good clips, in manifest order; captions alternate between .txt and .json."""
    folder.mkdir()
    for number, first in enumerate(range(0, N_CLIPS, per_shard)):
        with tarfile.open(folder / f"train-{number:06d}.tar", "w") as tar:
            for k in range(first, min(first + per_shard, N_CLIPS)):
                tar.add(clips / f"c{k}.mp4", arcname=f"s/{k:04d}.mp4")
                caption = folder / "caption"
                caption.write_text(f"clip {k}" if k % 2 else json.dumps({"caption": f"clip {k}", "other": 1}))
                tar.add(caption, arcname=f"s/{k:04d}.{'txt' if k % 2 else 'json'}")
    return str(folder / "train-{000000..000002}.tar")


def test_shards_give_the_same_samples_as_the_manifest(clips, tmp_path):
    pattern = make_shards(clips, tmp_path / "shards")
    kw = dict(seed=3, rank=0, world_size=1, batch_size=3, image_batch_size=1, num_workers=0)
    with TrainingData(data_cfg(str(clips / "good.jsonl")), **kw) as files, TrainingData(data_cfg(pattern, source="webdataset"), **kw) as tars:
        assert same_batches(take(files, 5), take(tars, 5))


def test_shard_patterns_globs_and_lists(clips, tmp_path):
    pattern = make_shards(clips, tmp_path / "shards")
    spec = ClipSampling(frames=1, height=8, width=8)
    names = [p.name for p in expand_shards(pattern)]
    assert names == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert [p.name for p in expand_shards("train-*.tar", root=tmp_path / "shards")] == names
    assert [p.name for p in expand_shards("train-000002.tar::train-00000{0,1}.tar", root=tmp_path / "shards")] == names[2:] + names[:2]
    assert [p.name for p in expand_shards(["train-000001.tar"], root=tmp_path / "shards")] == names[1:2]
    with pytest.raises(FileNotFoundError, match="match nothing"):
        expand_shards("train-{000000..000003}.tar", root=tmp_path / "shards")
    source = read_shards(pattern, spec)
    assert len(source) == N_CLIPS and source.captions[5] == "clip 5" and source.describe(5).endswith("train-000001.tar:s/0005")


def test_shard_streams_pick_their_media(clips, tmp_path):
    with tarfile.open(tmp_path / "mixed.tar", "w") as tar:
        for k in range(3):
            tar.add(clips / f"c{k}.mp4", arcname=f"{k}.mp4")
            tar.add(clips / "images" / f"p{k}.png", arcname=f"{k}.png")
            caption = tmp_path / "caption.txt"
            caption.write_text(f"sample {k}")
            tar.add(caption, arcname=f"{k}.txt")
    cfg = data_cfg(str(tmp_path / "mixed.tar"), source="webdataset", images=str(tmp_path / "mixed.tar"))
    with TrainingData(cfg, seed=0, rank=0, world_size=1, batch_size=3, image_batch_size=3, num_workers=0) as data:
        video, image = data.next_batch("video"), data.next_batch("image")
    assert video.pixels.shape == (3, 3, 4, 16, 24) and image.pixels.shape == (3, 3, 1, 16, 24)
    # the PNGs are flat grey 20 k; the clips' first frames have red 10 i != green
    assert all(torch.equal(p[0], p[1]) and clip_id(p) == i for p, i in zip(image.pixels, image.indices, strict=True))
    assert video.captions == [f"sample {i}" for i in video.indices]


def test_shard_errors(clips, tmp_path):
    with tarfile.open(tmp_path / "incomplete.tar", "w") as tar:
        tar.add(clips / "c0.mp4", arcname="a.mp4")  # no caption
    with pytest.raises(ValueError, match="1 sample.* lack a video/image member or a caption.*: a"):
        read_shards(str(tmp_path / "incomplete.tar"), ClipSampling(frames=1, height=8, width=8))
    with tarfile.open(tmp_path / "packed.tar.gz", "w:gz") as tar:
        tar.add(clips / "c0.mp4", arcname="a.mp4")
    with pytest.raises(ValueError, match="not an uncompressed tar"):
        read_shards(str(tmp_path / "packed.tar.gz"), ClipSampling(frames=1, height=8, width=8))


# ------------------------------------------------------------------------- order, skips, resume


def test_each_epoch_is_a_fresh_permutation_of_every_sample(clips):
    with TrainingData(data_cfg(str(clips / "good.jsonl")), seed=5, rank=0, world_size=1, batch_size=5, image_batch_size=1, num_workers=0) as data:
        epochs = [sum((b.indices for b in take(data, 2)), []) for _ in range(3)]
    assert all(sorted(e) == list(range(N_CLIPS)) for e in epochs)
    assert epochs[0] == list(epoch_permutation(5, "video", 0, N_CLIPS)) and epochs[0] != epochs[1]


def test_two_ranks_with_batch_2_see_what_one_rank_with_batch_4_sees(clips):
    cfg = data_cfg(str(clips / "good.jsonl"))
    one = TrainingData(cfg, seed=7, rank=0, world_size=1, batch_size=4, image_batch_size=1, num_workers=0)
    two = [TrainingData(cfg, seed=7, rank=r, world_size=2, batch_size=2, image_batch_size=1, num_workers=0) for r in (0, 1)]
    for _ in range(5):  # 2 global steps per epoch (the last 2 of 10 samples are dropped): crosses 2 epochs
        whole, parts = one.next_batch("video"), [d.next_batch("video") for d in two]
        assert whole.indices == parts[0].indices + parts[1].indices
        assert torch.equal(whole.pixels, torch.cat([p.pixels for p in parts]))
        assert [clip_id(p) for p in whole.pixels] == whole.indices
    for data in (one, *two):
        data.close()


def test_unusable_files_are_skipped_counted_and_replaced(broken, caplog):
    (broken / "gone.mp4").unlink(missing_ok=True)
    cfg = data_cfg(str(broken / "broken.jsonl"), frames=8, check_files=False)
    with TrainingData(cfg, seed=0, rank=0, world_size=1, batch_size=2, image_batch_size=1, num_workers=0) as data:
        batches = take(data, 6)  # the 6th batch finishes epoch 0 (18 entries) and starts epoch 1
        skipped = data.skipped()
    # epoch 0: the 10 good clips, each bad entry replaced by the next one
    assert sorted(sum((b.indices for b in batches[:5]), [])) == list(range(N_CLIPS))
    assert all(b.pixels.shape == (2, 3, 8, 16, 24) for b in batches)
    reasons = {"zero_length", "unreadable", "truncated", "corrupt", "too_short", "no_video_stream", "missing"}
    assert skipped["streams"]["video"]["previous_epoch"] == {r: 2 if r == "unreadable" else 1 for r in reasons}
    assert Counter(skipped["total"]) == Counter(skipped["streams"]["video"]["previous_epoch"]) + Counter(skipped["epoch"])
    assert any("video data, epoch 0 done (rank 0): skipped 8 of 18 entries" in r.getMessage() for r in caplog.records)


def test_a_stream_where_nothing_loads_stops_with_a_clear_error(broken, tmp_path):
    jsonl(tmp_path / "bad.jsonl", [{"path": str(broken / "text.mp4"), "caption": ""}] * 4)
    with TrainingData(data_cfg(str(tmp_path / "bad.jsonl")), seed=0, rank=0, world_size=1, batch_size=2, image_batch_size=1, num_workers=0) as data:
        with pytest.raises(ValueError, match="no video sample of epoch 0 could be loaded: all 4 entries were skipped"):
            data.next_batch("video")


def test_failures_are_counted_per_epoch_not_across_epochs(broken, tmp_path):
    # 2 good clips and 5 bad entries: every epoch yields the 2 good ones, although runs of bad entries at
    # the end of one epoch and the start of the next add up to more than an epoch (7 entries).
    bad = ["empty.mp4", "text.mp4", "cut.mp4", "short.mp4", "audio.mp4"]
    rows = [{"path": f"../c{k}.mp4", "caption": f"clip {k}"} for k in range(2)] + [{"path": p, "caption": p} for p in bad]
    cfg = data_cfg(str(jsonl(broken / "two_good.jsonl", rows)), check_files=False)
    with TrainingData(cfg, seed=0, rank=0, world_size=1, batch_size=1, image_batch_size=1, num_workers=0) as data:
        batches = take(data, 60)  # 30 epochs; with seed 0 the old count in a row failed in epoch 21
    assert sorted(sum((b.indices for b in batches), [])) == [0] * 30 + [1] * 30


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_state_dict_gives_identical_next_batches(broken, clips, workers):
    (broken / "gone.mp4").unlink(missing_ok=True)
    cfg = data_cfg(str(broken / "broken.jsonl"), frames=8, check_files=False, images=str(clips / "images.jsonl"))
    kw = dict(seed=11, rank=0, world_size=1, batch_size=3, image_batch_size=2, num_workers=workers)
    plan = ["video", "image", "video", "video", "image", "video", "video", "video", "image", "video"]  # crosses epochs
    with TrainingData(cfg, **kw) as data:
        reference = [data.next_batch(kind) for kind in plan]
        final_skips = data.skipped()
    with TrainingData(cfg, **kw) as data:
        head = [data.next_batch(kind) for kind in plan[:4]]
        state = json.loads(json.dumps(data.state_dict()))
    with TrainingData(cfg, **kw) as data:
        data.load_state_dict([state])
        tail = [data.next_batch(kind) for kind in plan[4:]]
        assert data.skipped() == final_skips
    assert same_batches(reference, head + tail)
    assert reference[1].pixels.shape == (2, 3, 1, 16, 24)


def test_resume_refuses_a_different_world(clips):
    cfg = data_cfg(str(clips / "good.jsonl"))
    with TrainingData(cfg, seed=0, rank=0, world_size=1, batch_size=2, image_batch_size=1, num_workers=0) as data:
        state = data.state_dict()
    with TrainingData(cfg, seed=0, rank=0, world_size=2, batch_size=2, image_batch_size=1, num_workers=0) as other:
        with pytest.raises(ValueError, match="world_size 1, now 2"):
            other.load_state_dict(state)
    with TrainingData(cfg, seed=0, rank=0, world_size=1, batch_size=3, image_batch_size=1, num_workers=0) as other:
        with pytest.raises(ValueError, match="batch_size 2, now 3"):
            other.load_state_dict(state)


def test_loading_does_not_touch_the_global_torch_rng(clips):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with TrainingData(data_cfg(str(clips / "good.jsonl")), seed=0, rank=0, world_size=1, batch_size=2, image_batch_size=1, num_workers=0) as data:
        data.next_batch("video")
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------------- world


class StandInWorld:
    """The ``WorldDataset`` interface: item i is clip i, red = 10 x frame + 100 x start time, green = 20 x (i % 10)."""

    def __init__(self, length: int, frames: int, height: int, width: int, seed: int, split: str, start: float = 0.0) -> None:
        self.length, self.frames, self.height, self.width, self.start = length, frames, height, width, start

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        video = np.zeros((self.frames, self.height, self.width, 3), np.uint8)
        video[..., 0] = (10 * np.arange(self.frames) + round(100 * self.start))[:, None, None]
        video[..., 1] = 20 * (i % 10)
        return {"video": video, "caption": f"world {i}", "spec": {}}


@pytest.fixture
def stand_in_world(monkeypatch):
    module = types.ModuleType("higen.world.dataset")
    module.WorldDataset = StandInWorld
    monkeypatch.setitem(sys.modules, "higen.world.dataset", module)


def test_world_source_gives_pixels_or_stand_in_latents(stand_in_world):
    cfg = DataSection(source="world", length=12, frames=4, height=16, width=24)
    with TrainingData(cfg, seed=0, rank=0, world_size=1, batch_size=3, image_batch_size=2, num_workers=0) as data:
        video, image = data.next_batch("video"), data.next_batch("image")
    assert video.pixels.shape == (3, 3, 4, 16, 24) and image.pixels.shape == (2, 3, 1, 16, 24)
    assert video.captions == [f"world {i}" for i in video.indices]
    assert [clip_id(p) for p in video.pixels] == [i % 10 for i in video.indices]
    # Clips start at clip time 0; an image is the middle frame of a clip (time 2/4 here): the spatial prior's frame.
    torch.testing.assert_close(video.pixels[:, 0, :, 0, 0], (10 * torch.arange(4.0) / 127.5 - 1).expand(3, 4))
    torch.testing.assert_close(image.pixels[:, 0, 0, 0, 0], torch.full((2,), 50 / 127.5 - 1))
    latent = DataSection(source="world", length=12, frames=4, height=16, width=24, latent=True)
    with TrainingData(latent, seed=0, rank=0, world_size=1, batch_size=3, image_batch_size=2, num_workers=0) as data:
        batch = data.next_batch("video")
    assert batch.pixels is None and batch.latents.shape == (3, 4, 4, 2, 3)
    assert torch.allclose(batch.latents[:, 3], batch.latents[:, :3].mean(dim=1))


def test_the_real_world_dataset_loads():
    pytest.importorskip("higen.world.dataset")
    cfg = DataSection(source="world", length=4, frames=2, height=16, width=16)
    with TrainingData(cfg, seed=0, rank=0, world_size=1, batch_size=2, image_batch_size=2, num_workers=0) as data:
        batch = data.next_batch("video")
    assert batch.pixels.shape == (2, 3, 2, 16, 16) and batch.pixels.min() >= -1 and batch.pixels.max() <= 1


# ---------------------------------------------------------------------------------- cache


ENCODERS = {"autoencoder": "tiny-ae@1", "text_encoder": "tiny-text@1"}


def encode(batch: Batch) -> dict[str, torch.Tensor]:
    """A stand-in for the trainer's encoders: deterministic functions of the batch."""
    b, _, f, _, _ = batch.pixels.shape
    return {
        "latents": batch.pixels[:, :, :, ::4, ::4].to(torch.float16),
        "text": torch.tensor([float(len(c)) for c in batch.captions]).view(b, 1, 1).expand(b, 2, 3).clone(),
        "motion": batch.pixels.mean(dim=(1, 3, 4))[:, 1:],
        "appearance": torch.eye(f).expand(b, f, f).clone(),
        "prior": batch.pixels[:, :, f // 2],
    }


def test_cache_round_trip(broken, tmp_path):
    (broken / "gone.mp4").unlink(missing_ok=True)
    cfg = data_cfg(str(broken / "broken.jsonl"), frames=8, check_files=False)
    settings = cache_fingerprint(cfg, "video", ENCODERS)
    with TrainingData(cfg, seed=4, rank=0, world_size=1, batch_size=2, image_batch_size=1, num_workers=0) as data:
        folder = build_cache(tmp_path / "cache", data, encode, settings, shard_size=3, batch_size=4, progress=False)
        source = data.source("video")
    info = json.loads((folder / "cache.json").read_text())
    assert info["count"] == N_CLIPS and len(info["shards"]) == 4 and sum(info["skipped"].values()) == 8
    assert not list(tmp_path.glob(".cache*"))  # no temporary folder left
    cache = open_cache(folder, settings)
    for row, index in enumerate(range(N_CLIPS)):  # the good clips come first in the manifest, in order
        clip = source.load(index, sample_rng(4, "video", 0, index)).pixels[None]
        expected = encode(Batch(pixels=clip.float() / 127.5 - 1, latents=None, captions=[f"clip {index}"]))
        stored = cache.load(row, np.random.default_rng()).tensors
        assert stored.keys() == expected.keys()
        assert all(torch.allclose(stored[k].float(), expected[k][0].float(), atol=1e-6) for k in expected)

    cached = DataSection(source="cache", videos=str(folder), frames=8, fps=8.0, height=16, width=24)
    with TrainingData(cached, seed=1, rank=0, world_size=1, batch_size=4, image_batch_size=1, num_workers=0, cache_settings=ENCODERS) as data:
        batch = data.next_batch("video")
    assert batch.pixels is None and batch.latents.shape == (4, 3, 8, 4, 6) and batch.latents.dtype == torch.float16
    assert batch.text.shape == (4, 2, 3) and batch.motion.shape == (4, 7) and batch.appearance.shape == (4, 8, 8)
    assert batch.extra["prior"].shape == (4, 3, 16, 24)
    assert batch.captions == [f"clip {i}" for i in batch.indices]
    assert [round(float(t[0, 0])) for t in batch.text] == [len(c) for c in batch.captions]


def test_cache_refuses_other_settings(clips, tmp_path):
    cfg = data_cfg(str(clips / "good.jsonl"))
    source = read_manifest(clips / "good.jsonl", ClipSampling.from_config(cfg))
    folder = build_cache(tmp_path / "cache", source, encode, cache_fingerprint(cfg, "video", ENCODERS), shard_size=4, progress=False)
    other = cache_fingerprint(data_cfg(None, frames=8), "video", ENCODERS | {"autoencoder": "sd21", "embedder": "clip"})
    with pytest.raises(ValueError) as err:
        open_cache(folder, other)
    message = str(err.value)
    assert "autoencoder: cache 'tiny-ae@1', expected 'sd21'" in message and "frames: cache 4, expected 8" in message
    assert "embedder: cache '(absent)', expected 'clip'" in message and "text_encoder" not in message
    cached = DataSection(source="cache", videos=str(folder), frames=8, fps=8.0, height=16, width=24)
    with pytest.raises(ValueError, match="frames: cache 4, expected 8"):
        TrainingData(cached, seed=0, rank=0, world_size=1, batch_size=1, image_batch_size=1, num_workers=0, cache_settings=ENCODERS)
    with pytest.raises(ValueError, match="needs the encoders' identity"):
        TrainingData(cached, seed=0, rank=0, world_size=1, batch_size=1, image_batch_size=1, num_workers=0)
    with pytest.raises(FileNotFoundError, match="not a latent cache"):
        open_cache(tmp_path, other)
    with pytest.raises(FileExistsError):
        build_cache(folder, source, encode, {}, progress=False)


def test_a_failed_cache_build_leaves_nothing(clips, tmp_path):
    source = read_manifest(clips / "good.jsonl", ClipSampling(frames=4, height=16, width=24))
    calls = []

    def failing(batch: Batch) -> dict[str, torch.Tensor]:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("encoder crashed")
        return {"latents": batch.pixels}

    with pytest.raises(RuntimeError, match="encoder crashed"):
        build_cache(tmp_path / "cache", source, failing, {}, shard_size=2, batch_size=2, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="at least 'latents'"):
        build_cache(tmp_path / "cache", source, lambda b: {"text": b.pixels}, {}, progress=False)


# ---------------------------------------------------------------------------------- config


def test_data_config_choices_and_checks():
    cfg = load_config(None, ["data.source=world", "data.min_frames_policy=pad", "data.frame_stride=2"])
    assert cfg.data.source == "world" and cfg.data.min_frames_policy == "pad" and cfg.data.frame_stride == 2
    for override, message in [("data.source=synthetic", "data.source must be one of"), ("data.min_frames_policy=drop", "skip, pad"),
                              ("data.frame_stride=0", "frame_stride must be at least 1"), ("data.fps=0", "fps must be positive")]:
        with pytest.raises(ValueError, match=message):
            load_config(None, ["data.videos=m.csv", override])
