"""Checkpoint files: reading a state dict safely, and strict state-dict checking shared by every loader."""

from __future__ import annotations

import math
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


def load_checkpoint_file(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch pickle loaded with ``weights_only=True``.

    A ``{'state_dict': ...}`` wrapper and a ``module.`` prefix (DDP) are removed. A file that cannot be
    read, or whose weights hold NaN or infinity (random bytes in its tensor data), is a :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device=str(device))
        else:
            state = torch.load(str(path), map_location=device, weights_only=True, mmap=_is_zip(path))
    except Exception as err:  # noqa: BLE001 - a foreign file makes the readers raise anything (SafetensorError, KeyError ...)
        raise CheckpointError(f"cannot read {path} as a checkpoint (truncated, or not a checkpoint?): {_first_line(err)}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} is corrupt: {len(bad)} tensor(s) hold NaN or infinite values ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''})")
    return dict(state)


def _first_line(err: BaseException) -> str:
    """``Type: first line of the message``: enough to tell what failed, on one line."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def parameter_count(path: str | Path) -> int:
    """The number of values in a ``.safetensors`` file, read from its header alone."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    except Exception as err:  # noqa: BLE001 - SafetensorError and OSError on a truncated or foreign file
        raise CheckpointError(f"cannot read {path} as a checkpoint (truncated, or not a checkpoint?): {_first_line(err)}") from None


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)
