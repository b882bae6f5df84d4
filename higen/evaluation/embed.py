"""Embedding a stream of items with a feature network in batches (I3D for FVD, the Inception for FID)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn


@contextmanager
def no_tf32():
    """cuDNN's default TF32 convolutions (Ampere GPUs and later) would move the features by about 1e-3."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


@torch.no_grad()
@no_tf32()
def embed_batches(items: Iterable, prepare: Callable[[object, torch.device], torch.Tensor], model: nn.Module,
                  batch_size: int, what: str) -> np.ndarray:
    """``(N, features)`` float32 outputs of ``model`` on ``prepare(item, device)`` of every item, stacked
    ``batch_size`` at a time; ``what`` names the items in errors."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1; got {batch_size}")
    device = next(model.parameters()).device
    out, batch = [], []
    for item in items:
        batch.append(prepare(item, device))
        if len(batch) == batch_size:
            out.append(model(torch.stack(batch)).float().cpu())
            batch = []
    if batch:
        out.append(model(torch.stack(batch)).float().cpu())
    if not out:
        raise ValueError(f"no {what} to embed")
    return torch.cat(out).numpy()
