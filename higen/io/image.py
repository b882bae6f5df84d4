"""Reading single images with PyAV (no Pillow or OpenCV needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file (PNG, JPEG, ...) to uint8 ``h w 3``; ``ValueError`` if it is not one."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration, UnicodeDecodeError) as err:
        raise ValueError(f"cannot decode {path} as an image: {err}") from None


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write uint8 ``h w 3`` as a PNG, atomically."""
    import av

    from higen.io.files import atomic_path

    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"an image must be uint8 (h, w, 3); got {image.dtype} {image.shape}")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="image2") as container:
            stream = container.add_stream("png")
            stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "rgb24"
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
