"""Video files: round trips, every frame kept, exact sizes, atomic writes, clear errors."""

import json
import os

import numpy as np
import pytest

from higen.io.video import iter_frames, read_video, video_format, write_video


def moving_gradient(frames=6, height=18, width=24):
    """Smooth shading plus a flat square moving 2 px per frame (like rendered clips); frames 1 and 2 are equal."""
    y, x = np.mgrid[:height, :width]
    video = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        video[i, ..., 0] = 40 + 180 * x // max(width - 1, 1)
        video[i, ..., 1] = 60 + 120 * y // max(height - 1, 1)
        video[i, ..., 2] = 100 + 10 * i
        left = 2 * i
        video[i, 4:10, left : left + 6] = (230, 30, 40)
    if frames > 2:
        video[2] = video[1]  # an encoder that skips repeated frames would drop one
    return video


def flat_shapes(frames=5, height=18, width=24):
    """Few colours (a GIF palette holds them all): a background and two squares changing colour per frame."""
    video = np.empty((frames, height, width, 3), np.uint8)
    video[:] = (20, 70, 140)
    for i in range(frames):
        video[i, 2:8, 3 + i : 9 + i] = (250, 200 - 30 * i, 10)
        video[i, 10:16, 14:20] = (40 * i, 220, 90)
    return video


@pytest.mark.parametrize("size", [(18, 24), (17, 23)], ids=["even", "odd"])
def test_mp4_round_trip_keeps_every_frame_and_the_size(tmp_path, size):
    video = moving_gradient(6, *size)
    path = tmp_path / "clip.mp4"
    write_video(path, video, fps=8)
    frames, fps = read_video(path)
    assert frames.shape == video.shape and frames.dtype == np.uint8
    assert fps == 8.0
    # Lossy but close: under 2 % of the range on average (4:2:0 chroma costs most of it at a saturated edge).
    assert np.abs(frames.astype(int) - video).mean() < 5
    # Frame order is kept: each decoded frame is closest to its own source frame (1 and 2 are equal).
    distance = np.abs(frames[:, None].astype(int) - video[None]).mean(axis=(2, 3, 4))
    assert [int(distance[i].argmin()) for i in (0, 3, 4, 5)] == [0, 3, 4, 5]


def test_gif_round_trip(tmp_path):
    video = flat_shapes(5)
    path = tmp_path / "clip.gif"
    write_video(path, video, fps=10)
    frames, fps = read_video(path)
    assert frames.shape == video.shape
    assert fps == pytest.approx(10.0)  # 10 fps is a whole number of 1/100 s delays
    # Fewer than 256 colours in the whole clip: the shared palette holds each one exactly.
    assert np.array_equal(frames, video)
    many_colours = moving_gradient(5)
    write_video(path, many_colours, fps=10)
    assert np.abs(read_video(path)[0].astype(int) - many_colours).mean() < 8  # quantised to 256 colours


def test_png_folder_is_exact(tmp_path):
    video = np.random.default_rng(0).integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
    folder = tmp_path / "frames"
    write_video(folder, video, fps=12.5)
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:04d}.png" for i in range(4)] + ["video.json"]
    frames, fps = read_video(folder)
    assert np.array_equal(frames, video) and fps == 12.5
    assert all(np.array_equal(a, b) for a, b in zip(iter_frames(folder), video))
    # Writing again replaces the earlier frames (fewer frames now: no stale frame_0003.png).
    write_video(folder, video[:3], fps=12.5)
    assert read_video(folder)[0].shape[0] == 3


def test_png_folder_never_replaces_other_files(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not empty"):
        write_video(folder, moving_gradient(2), fps=8, format="png")
    assert [p.name for p in folder.iterdir()] == ["holiday.jpg"]


def test_format_override_and_inference(tmp_path):
    assert video_format(tmp_path / "a.MP4") == "mp4" and video_format(tmp_path / "a.gif") == "gif"
    assert video_format(tmp_path / "frames") == "png" and video_format(tmp_path / "a.mp4", "gif") == "gif"
    with pytest.raises(ValueError, match="suffix"):
        video_format(tmp_path / "a.avi")
    with pytest.raises(ValueError, match="unknown video format"):
        video_format(tmp_path / "a.mp4", "webm")
    path = tmp_path / "named.mp4"
    write_video(path, moving_gradient(3), fps=8, format="gif")
    assert path.read_bytes()[:6] == b"GIF89a"


def test_iter_frames_streams(tmp_path):
    video = moving_gradient(5)
    write_video(tmp_path / "c.mp4", video, fps=24)
    it = iter_frames(tmp_path / "c.mp4")
    first = next(it)
    assert first.shape == (18, 24, 3)
    assert 1 + sum(1 for _ in it) == 5


@pytest.mark.parametrize(
    "frames, message",
    [
        (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), "f, h, w, 3"),
        (np.zeros((2, 8, 8, 4), np.uint8), "f, h, w, 3"),
        (np.zeros((0, 8, 8, 3), np.uint8), "at least one frame"),
    ],
)
def test_bad_frames(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "x.mp4", frames, fps=8)
    assert list(tmp_path.iterdir()) == []


def test_bad_fps(tmp_path):
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "x.mp4", moving_gradient(2), fps=0)


def test_corrupt_and_missing_inputs(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(200))
    with pytest.raises(ValueError, match="corrupt.mp4"):
        read_video(corrupt)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    with pytest.raises(ValueError, match="no frame_"):
        read_video(empty_folder)


def test_truncated_mp4_fails_clearly(tmp_path):
    path = tmp_path / "t.mp4"
    write_video(path, moving_gradient(6), fps=8)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ValueError, match="t.mp4"):
        read_video(path)


def test_path_under_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(NotADirectoryError, match="notes.txt is not a folder"):
        write_video(tmp_path / "notes.txt" / "x.mp4", moving_gradient(2), fps=8)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_path(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="locked"):
            write_video(locked / "x.mp4", moving_gradient(2), fps=8)
    finally:
        locked.chmod(0o700)


def test_failed_write_leaves_no_temporary_files(tmp_path, monkeypatch):
    import higen.io.video as video_module

    def broken(path, frames, fps):
        path.write_bytes(b"half a video")
        raise OSError("encoder crashed")

    monkeypatch.setattr(video_module, "_write_mp4", broken)
    with pytest.raises(OSError, match="encoder crashed"):
        write_video(tmp_path / "x.mp4", moving_gradient(2), fps=8)
    assert list(tmp_path.iterdir()) == []

    import higen.io.image as image_module

    calls = []

    def broken_png(path, image):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        path.write_bytes(b"png")

    monkeypatch.setattr(image_module, "write_image", broken_png)
    with pytest.raises(OSError, match="disk full"):
        write_video(tmp_path / "frames", moving_gradient(3), fps=8)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced_whole(tmp_path):
    path = tmp_path / "clip.gif"
    write_video(path, moving_gradient(3), fps=8)
    write_video(path, moving_gradient(5), fps=8)
    assert read_video(path)[0].shape[0] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]


def test_png_folder_metadata(tmp_path):
    write_video(tmp_path / "f", moving_gradient(2), fps=8)
    assert json.loads((tmp_path / "f" / "video.json").read_text()) == {"fps": 8.0, "frames": 2}


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    import os

    from higen.io.files import atomic_path, atomic_write_text

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_path(tmp_path / "b.bin") as tmp:
            with open(tmp, "wb") as f:  # writing into the temporary file, not replacing it
                f.write(b"x")
    finally:
        os.umask(mask)
    for name in ("a.json", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]
