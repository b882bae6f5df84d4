"""Will a generation fit? A lower bound on what it allocates, against the memory the device has free.

Checked with the settings, before any work, so a huge size is one clear message instead of minutes of
allocation followed by a crash.
"""

from __future__ import annotations

import os

import torch


def available_memory(device) -> int | None:
    """Bytes free for new allocations on ``device``: CUDA's free memory, or the machine's available RAM
    (psutil, else /proc/meminfo, else sysconf); None where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def generation_memory(frames: int, height: int, width: int, decode_chunk_size: int, decoder_width: int, batch: int = 1) -> int:
    """A lower bound in bytes: the decoded clip in float32 twice (decoded, then clamped) and the decoder's
    first-level activations (``decoder_width`` channels at full resolution, two alive) for one chunk."""
    pixels = batch * height * width
    return 4 * pixels * (2 * 3 * frames + 2 * decoder_width * min(decode_chunk_size, frames))
