"""Checkpoint files: reading a state dict safely, and strict state-dict checking shared by every loader."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch


class CheckpointError(ValueError):
    """A checkpoint file or state dict that cannot be used; the message names the problem."""


def check_state_dict(
    expected: Mapping[str, tuple[int, ...]],
    state: Mapping[str, torch.Tensor],
    source: str = "the checkpoint",
    hint: str = "",
) -> None:
    """Raise :class:`CheckpointError` listing missing, unexpected and wrong-shape keys, if any."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
    if not (missing or unexpected or wrong):
        return
    lines = [f"{source} does not match the model:"]
    for title, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            lines.append(f"  {len(keys)} {title} keys: " + ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else ""))
    if wrong:
        lines.append(f"  {len(wrong)} keys with the wrong shape:")
        lines += [f"    {k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k])}" for k in wrong[:20]]
    if hint:
        lines.append(f"  ({hint})")
    raise CheckpointError("\n".join(lines))


def load_checkpoint_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch pickle loaded with ``weights_only=True``.

    A ``{'state_dict': ...}`` wrapper and a ``module.`` prefix (DDP) are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except CheckpointError:
        raise
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"cannot read {path} as a checkpoint (truncated, or not a checkpoint?): {err}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)
