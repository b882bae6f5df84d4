"""Strict state-dict checking shared by every loader."""

from __future__ import annotations

from typing import Mapping

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
