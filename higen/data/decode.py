"""Decoding one training clip with PyAV: which source frames to take, then resize and centre crop.

Frame choice (``choose_frames``) is a pure function of the source frame count, the sampling step and
one random draw, so it is tested without video files. ``decode_clip`` reads only what it needs: it
seeks to the keyframe before the first chosen frame and stops after the last one, so a long video
costs about as much as a short one. Anything that cannot give a clip raises ``SkipSample`` with one
of ``SKIP_REASONS``; the loader counts it and moves on (docs/data.md, "Skipped samples").
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from higen.data.config import DataSection

SKIP_REASONS = ("missing", "zero_length", "unreadable", "no_video_stream", "corrupt", "truncated", "too_short")
MIN_FRAMES_POLICIES = ("skip", "pad")


class SkipSample(Exception):
    """A sample that cannot be used; ``reason`` is one of ``SKIP_REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ClipSampling:
    """What one training sample looks like: ``frames`` frames of ``height x width``, sampled at ``fps``
    frames per second of source time or every ``frame_stride``-th source frame (when set)."""

    frames: int
    height: int
    width: int
    fps: float | None = 8.0
    frame_stride: int | None = None
    random_start: bool = True
    min_frames_policy: str = "skip"  # skip | pad (repeat the last frame)

    @classmethod
    def from_config(cls, cfg: DataSection, frames: int | None = None) -> ClipSampling:
        """The spec of ``cfg``; ``frames=1`` gives the image stream's spec."""
        return cls(frames=cfg.frames if frames is None else frames, height=cfg.height, width=cfg.width, fps=cfg.fps,
                   frame_stride=cfg.frame_stride, random_start=cfg.random_start, min_frames_policy=cfg.min_frames_policy)

    def step(self, source_fps: Fraction | float | None) -> float:
        """Source frames between two chosen frames (before the too-short rule)."""
        if self.frame_stride is not None:
            return float(self.frame_stride)
        if not source_fps or self.fps is None:
            raise SkipSample("unreadable", "the video stream has no frame rate")
        return float(source_fps) / self.fps


def choose_frames(count: int, step: float, spec: ClipSampling, rng: np.random.Generator) -> list[int]:
    """Ascending source frame indices (0-based, may repeat) for one clip from a video of ``count`` frames.

    Frame j is the source frame nearest to ``start + j * step``. The too-short rule: when the clip at
    ``step`` would run past the end, the step shrinks so that the clip spans the whole video, down to
    taking every source frame; a video with fewer than ``spec.frames`` frames is skipped as
    ``too_short`` (or, with ``min_frames_policy="pad"``, all its frames are taken and the last is
    repeated). ``start`` is a whole frame drawn uniformly from the valid range (0 without random_start).
    """
    frames = spec.frames
    if count < 1:
        raise SkipSample("zero_length", "the video has no frames")
    if (frames - 1) * step > count - 1:
        if count < frames:
            if spec.min_frames_policy == "pad":
                return list(range(count)) + [count - 1] * (frames - count)
            raise SkipSample("too_short", f"{count} frames, {frames} needed")
        step = (count - 1) / (frames - 1)
    slack = count - 1 - (frames - 1) * step
    last_start = max(0, math.floor(slack + 1e-6))  # 1e-6: (n-1)/(f-1)*(f-1) may land a hair below n-1
    start = int(rng.integers(0, last_start + 1)) if spec.random_start else 0
    return [min(count - 1, math.floor(start + j * step + 0.5)) for j in range(frames)]


def fit_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ``f h w 3`` -> uint8 ``3 f height width``: scale so the frame covers the target (the shorter
    side fits, antialiased bilinear), then crop the centre."""
    _, h, w, _ = frames.shape
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    x = rearrange(frames, "f h w c -> f c h w").float()
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    x = x[:, :, top : top + height, left : left + width]
    return rearrange(x.round().clamp(0, 255).to(torch.uint8), "f c h w -> c f h w")


# ------------------------------------------------------------------------------------ decoding


class _StreamEnded(Exception):
    """The stream held fewer frames than its header promised; ``frames_seen`` is the true count."""

    def __init__(self, frames_seen: int) -> None:
        super().__init__(f"the stream ends after {frames_seen} frames")
        self.frames_seen = frames_seen


class _SeekMissed(Exception):
    """Seeking landed after the first wanted frame (or frames carry no timestamps): read from the start."""


def decode_clip(media: str | Path | bytes, spec: ClipSampling, rng: np.random.Generator) -> torch.Tensor:
    """Decode one clip from a file path or the bytes of a file: uint8 ``3 f H W`` (``f = spec.frames``).

    Images (PNG, JPEG, WebP) are one-frame videos, so ``spec.frames = 1`` reads them too. The result is
    uint8 because it crosses from loader workers to the trainer 4x cheaper than float; the loader turns
    it into ``[-1, 1]`` (``higen.encoders.autoencoder.to_unit_range``). Raises ``SkipSample`` for every
    kind of unusable file.
    """
    _check_present(media)
    try:
        return _decode(media, spec, rng, frame_count=None)
    except _StreamEnded as ended:
        # The header promised more frames than decode (a cut-off download): choose again from the real count.
        try:
            return _decode(media, spec, rng, frame_count=ended.frames_seen)
        except SkipSample as skip:
            if skip.reason == "too_short":
                raise SkipSample("truncated", f"only {ended.frames_seen} frames decode, fewer than the header says") from None
            raise
        except _StreamEnded:
            raise SkipSample("corrupt", "the frame count changes between two reads") from None


def _check_present(media: str | Path | bytes) -> None:
    if isinstance(media, (bytes, bytearray, memoryview)):
        size = len(media)
    elif not Path(media).is_file():
        raise SkipSample("missing", "the file does not exist")
    else:
        size = Path(media).stat().st_size
    if size == 0:
        raise SkipSample("zero_length", "the file is empty")


def _decode(media: str | Path | bytes, spec: ClipSampling, rng: np.random.Generator, frame_count: int | None) -> torch.Tensor:
    container = _open(media)
    with container:
        if not container.streams.video:
            raise SkipSample("no_video_stream", "the file has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        try:
            count = frame_count if frame_count is not None else _frame_count(container, stream, rate)
            positions = choose_frames(count, spec.step(rate), spec, rng)
            try:
                frames = _read_frames(container, stream, rate, positions, spec, seek=positions[0] > 0 and bool(rate))
            except _SeekMissed:
                container.seek(0)
                frames = _read_frames(container, stream, rate, positions, spec, seek=False)
        except (av.error.FFmpegError, UnicodeDecodeError) as err:
            raise SkipSample("corrupt", str(err)) from None
    return torch.cat(frames, dim=1)


def _open(media: str | Path | bytes) -> av.container.InputContainer:
    try:
        source = io.BytesIO(media) if isinstance(media, (bytes, bytearray, memoryview)) else str(media)
        return av.open(source, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as err:
        raise SkipSample("unreadable", str(err)) from None


def _frame_count(container: av.container.InputContainer, stream: av.video.stream.VideoStream, rate: Fraction | None) -> int:
    """Frames in the stream: the header's count, else duration x rate, else counted packets (images, raw streams)."""
    if stream.frames:
        return stream.frames
    if rate and stream.duration and stream.time_base:
        return round(float(stream.duration * stream.time_base * rate))
    if rate and container.duration:
        return round(container.duration / av.time_base * float(rate))
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _read_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream, rate: Fraction | None,
                 positions: list[int], spec: ClipSampling, seek: bool) -> list[torch.Tensor]:
    """Decode up to the last wanted frame; each wanted position takes the decoded frame nearest in time.

    A frame's position is its timestamp x the average rate (exact for constant-rate video, nearest in
    time for variable-rate video). Returns ``3 1 H W`` uint8 pieces, one per position.
    """
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if seek:
        container.seek(int((origin + positions[0] / float(rate)) / stream.time_base), stream=stream, backward=True)
    chosen: list[torch.Tensor] = []
    previous: tuple[float, av.VideoFrame] | None = None
    cache: dict[float, torch.Tensor] = {}  # frame position -> fitted frame (repeated positions reuse it)
    for count, frame in enumerate(container.decode(stream)):
        if frame.time is None and seek:
            raise _SeekMissed
        index = (frame.time - origin) * float(rate) if frame.time is not None and rate else float(count)
        if seek and previous is None and index > positions[0] + 0.5:
            raise _SeekMissed
        while len(chosen) < len(positions) and index >= positions[len(chosen)]:
            wanted = positions[len(chosen)]
            near = previous if previous is not None and wanted - previous[0] < index - wanted else (index, frame)
            chosen.append(_fitted(near, spec, cache))
        if len(chosen) == len(positions):
            return chosen
        previous = (index, frame)
    if previous is None:
        raise SkipSample("corrupt", "no frame could be decoded")
    while len(chosen) < len(positions) and positions[len(chosen)] <= previous[0] + 0.5:
        chosen.append(_fitted(previous, spec, cache))
    if len(chosen) < len(positions):
        raise _StreamEnded(math.floor(previous[0] + 0.5) + 1)
    return chosen


def _fitted(decoded: tuple[float, av.VideoFrame], spec: ClipSampling, cache: dict[float, torch.Tensor]) -> torch.Tensor:
    # Fit each frame as soon as it is chosen, so a 4K source never holds more than one full frame.
    index, frame = decoded
    if index not in cache:
        cache[index] = fit_frames(torch.from_numpy(frame.to_ndarray(format="rgb24"))[None], spec.height, spec.width)
    return cache[index]
