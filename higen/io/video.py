"""Video files with PyAV (FFmpeg's libraries in-process; no ``ffmpeg`` binary needed).

Formats, chosen by the path's suffix or ``format``:

- ``mp4``: H.264 (libx264, CRF 17, nearly lossless to the eye). Even sizes use yuv420p, which every
  player decodes; odd sizes cannot be 4:2:0-subsampled, so they use yuv444p (High 4:4:4) and keep the
  exact size instead of padding or cropping.
- ``gif``: one palette of up to 256 colours for the whole clip (FFmpeg's palettegen + paletteuse).
  GIF stores frame delays in 1/100 s, so the frame rate is rounded to that (8 fps is read back as 8.33).
- ``png``: a folder of ``frame_0000.png``, ... (lossless) and a ``video.json`` recording the fps.

Every frame is written (the encoder is flushed; the reference's writer dropped a last frame). Files
are written to a temporary name beside the target and renamed; a PNG folder is built beside and renamed.
Frames are uint8 ``f h w 3`` (RGB) everywhere.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

FORMATS = ("mp4", "gif", "png")
FOLDER_META = "video.json"
_FRAME_NAME = "frame_{:04d}.png"


def video_format(path: str | os.PathLike, format: str | None = None) -> str:
    """``format`` if given, else from the suffix (``.mp4``, ``.gif``; no suffix or a folder means PNG frames)."""
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"unknown video format {format!r}; choose one of: {', '.join(FORMATS)}")
        return format
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("mp4", "gif"):
        return suffix
    if suffix == "" or path.is_dir():
        return "png"
    raise ValueError(f"cannot tell the video format of {path} from its suffix; use .mp4, .gif or a folder (PNG frames)")


# ------------------------------------------------------------------------------------------- write
def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, format: str | None = None) -> None:
    """Write uint8 ``f h w 3`` frames as MP4, GIF or a PNG folder, atomically (see the module docstring)."""
    path = Path(path)
    frames = _check_frames(frames)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    fmt = video_format(path, format)
    _check_parent(path)
    try:
        if fmt == "png":
            _write_png_folder(path, frames, fps)
        else:
            from higen.io.files import atomic_path

            with atomic_path(path) as tmp:
                (_write_mp4 if fmt == "mp4" else _write_gif)(tmp, frames, fps)
    except PermissionError as err:
        raise PermissionError(f"cannot write {path}: {err.strerror or err}") from None


def _check_parent(path: Path) -> None:
    existing = next(p for p in path.parents if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {existing} is not a folder")


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be uint8 (f, h, w, 3); got {frames.dtype} {frames.shape}")
    if frames.shape[0] < 1 or frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"frames must hold at least one frame of at least 1x1 pixels; got shape {frames.shape}")
    return np.ascontiguousarray(frames)


def _rate(fps: float) -> Fraction:
    # 1001 keeps NTSC rates (30000/1001) exact; plain numbers (8, 7.5, 24) come out exact anyway.
    return Fraction(fps).limit_denominator(1001)


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    import av

    f, h, w, _ = frames.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=_rate(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"
        stream.options = {"crf": "17", "preset": "medium"}
        _encode(container, stream, (av.VideoFrame.from_ndarray(frame, format="rgb24") for frame in frames), _rate(fps))


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    import av

    f, h, w, _ = frames.shape
    with av.open(str(path), mode="w", format="gif") as container:
        stream = container.add_stream("gif", rate=_rate(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "pal8"
        _encode(container, stream, _palettized(frames, _rate(fps)), _rate(fps))


def _encode(container, stream, frames, rate: Fraction) -> None:
    for i, frame in enumerate(frames):
        # One tick of 1/fps per frame: the muxer has no reason to drop or duplicate any.
        frame.pts, frame.time_base = i, 1 / rate
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))  # flush: the encoder holds back its last frames until told the end


def _palettized(frames: np.ndarray, rate: Fraction) -> list:
    """Frames mapped to one shared palette: split -> palettegen (whole clip) -> paletteuse."""
    import av
    from av.filter import Graph

    graph = Graph()
    source = graph.add_buffer(width=frames.shape[2], height=frames.shape[1], format="rgb24", time_base=1 / rate)
    split, palette = graph.add("split"), graph.add("palettegen", "stats_mode=full")
    use, sink = graph.add("paletteuse", "dither=sierra2_4a"), graph.add("buffersink")
    source.link_to(split)
    split.link_to(use, 0, 0)
    split.link_to(palette, 1, 0)
    palette.link_to(use, 0, 1)
    use.link_to(sink)
    graph.configure()
    for i, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts, frame.time_base = i, 1 / rate
        source.push(frame)
    source.push(None)  # palettegen emits the palette only at the end of the clip
    out = []
    while True:
        try:
            out.append(sink.pull())
        except av.error.EOFError:
            return out


def _write_png_folder(path: Path, frames: np.ndarray, fps: float) -> None:
    from higen.io.folders import atomic_directory
    from higen.io.image import write_image

    with atomic_directory(path, may_replace=_is_png_video) as tmp:
        for i, frame in enumerate(frames):
            write_image(tmp / _FRAME_NAME.format(i), frame)
        (tmp / FOLDER_META).write_text(json.dumps({"fps": float(fps), "frames": int(frames.shape[0])}) + "\n")


def _is_png_video(folder: Path) -> bool:
    """A folder this module wrote (only frame PNGs and the metadata), which a new video may replace."""
    return all(p.name == FOLDER_META or (p.name.startswith("frame_") and p.suffix == ".png") for p in folder.iterdir())


# -------------------------------------------------------------------------------------------- read
def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode a whole video: (uint8 ``f h w 3``, fps). For long files prefer :func:`iter_frames`."""
    frames = list(iter_frames(path))
    if not frames:
        raise ValueError(f"{path} holds no video frames")
    return np.stack(frames), video_fps(path)


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield uint8 ``h w 3`` frames one at a time (MP4/GIF/any FFmpeg video, or a PNG folder)."""
    path = Path(path)
    if path.is_dir():
        yield from _iter_png_folder(path)
        return
    import av

    with _open(path) as container:
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as err:
            raise ValueError(f"cannot decode {path} (corrupt or truncated?): {err}") from None


def video_fps(path: str | os.PathLike) -> float:
    """The frame rate recorded in the file (a PNG folder's ``video.json``)."""
    path = Path(path)
    if path.is_dir():
        fps = _folder_meta(path).get("fps")
    else:
        with _open(path) as container:
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not fps:
        raise ValueError(f"{path} does not record a frame rate")
    return float(fps)


def _open(path: Path):
    import av

    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path} as a video: {err}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream")
    return container


def _folder_meta(folder: Path) -> dict:
    meta = folder / FOLDER_META
    if not meta.is_file():
        return {}
    try:
        return json.loads(meta.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta} is not valid JSON: {err}") from None


def _iter_png_folder(folder: Path) -> Iterator[np.ndarray]:
    from higen.io.image import read_image

    paths = sorted(folder.glob("frame_*.png"))
    if not paths:
        raise ValueError(f"{folder} holds no frame_*.png images")
    for p in paths:
        yield read_image(p)


__all__ = ["write_video", "read_video", "iter_frames", "video_fps", "video_format", "FORMATS"]
