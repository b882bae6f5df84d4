"""Training checkpoints: full state for an exact resume, written atomically.

Layout of ``output_dir/checkpoints/``::

    step_0000100/
        model.safetensors       the UNet's full state dict
        ema.safetensors         the EMA of the trainable weights (fp32), when EMA is on
        optimizer.safetensors   AdamW state per parameter name: "<name>::exp_avg", "::exp_avg_sq", "::step"
        trainer.json            step, LR schedule, optimiser hyper-parameters, EMA counter, gradient
                                scaler, RNG states and data position of every rank, skip counts, the
                                full config and the UNet config
    latest                      the name of the newest complete checkpoint (one line)

A checkpoint is built in a hidden temporary folder and renamed into place when every file is written;
``latest`` is replaced atomically afterwards. A crash at any point leaves the previous checkpoint and
pointer intact; temporary folders left by a crash are removed at the next start.

With FSDP the sharded tensors (DTensors) are gathered into full tensors (every rank takes part, in
the same order) and written by rank 0; loading distributes full tensors back onto the shards.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from higen.io.files import atomic_write_text, temporary_folder, umask

FORMAT = "higen-train-checkpoint"
VERSION = 1
LATEST = "latest"
_NAME = re.compile(r"^step_(\d{7,})$")
_TMP_PREFIX = ".tmp-"
_SEP = "::"


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


# -------------------------------------------------------------------------------- finding


def is_complete(folder: Path) -> bool:
    """A finished checkpoint: its JSON (written last, before the rename) and its weights exist."""
    return (folder / "trainer.json").is_file() and (folder / "model.safetensors").is_file()


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` by step, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and is_complete(child):
            found.append((int(match.group(1)), child))
    return sorted(found)


def find_latest(root: Path) -> Path | None:
    """The checkpoint ``latest`` names if it is complete, else the newest complete one (None: none)."""
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if named.is_dir() and is_complete(named):
            return named
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def clean_partial(root: Path) -> list[Path]:
    """Remove temporary folders left by a crash in the middle of writing a checkpoint."""
    removed = []
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(_TMP_PREFIX) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def resolve_resume(resume: str | None, root: Path) -> Path | None:
    """``train.resume``: None (fresh start), ``auto`` (the latest in ``root``, if any) or a checkpoint folder
    (see :func:`locate_checkpoint`)."""
    if resume is None:
        return None
    if resume == "auto":
        return find_latest(root)
    return locate_checkpoint(resume, "train.resume")


def locate_checkpoint(path: str | Path, what: str | None = None) -> Path:
    """A complete checkpoint folder as it is; a run folder or a folder of checkpoints (e.g. another run's
    ``checkpoints/``): its latest one. ``what`` names the setting in error messages."""
    path = Path(path)
    prefix = f"{what}: " if what else ""
    if not path.exists():
        raise FileNotFoundError(f"{prefix}no such checkpoint: {path}")
    if path.is_dir() and not is_complete(path):
        inner = find_latest(path / "checkpoints") or find_latest(path)
        if inner is None:
            raise ValueError(f"{prefix}{path} is neither a complete checkpoint nor a run folder with one")
        path = inner
    return path


# -------------------------------------------------------------------------------- writing


def save_checkpoint(
    root: Path,
    step: int,
    tensors: dict[str, dict[str, torch.Tensor]],
    meta: dict,
    keep_last: int,
    fault: Callable[[], None] | None = None,
) -> Path:
    """Write ``root/step_XXXXXXX`` (``tensors``: file stem -> state dict; ``meta``: trainer.json), point
    ``latest`` at it and delete all but the newest ``keep_last``. ``fault`` is called half-way (tests)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = temporary_folder(root, prefix=f"{_TMP_PREFIX}{final.name}-")
    try:
        for i, (stem, state) in enumerate(tensors.items()):
            weights = tmp / f"{stem}.safetensors"
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(weights))
            os.chmod(weights, 0o666 & ~umask())  # safetensors writes 0600; the run's other files follow the umask
            if i == 0 and fault is not None:
                fault()
        (tmp / "trainer.json").write_text(json.dumps({"format": FORMAT, "version": VERSION, **meta}, indent=1) + "\n")
        _replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(root / LATEST, final.name + "\n")
    for _, old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` onto ``dst``, replacing an existing ``dst`` (a re-run of the same step)."""
    if dst.exists():
        aside = dst.with_name(f"{_TMP_PREFIX}{dst.name}-old")
        os.replace(dst, aside)
        os.replace(src, dst)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(src, dst)


class LazyTensors(Mapping):
    """The tensors of a safetensors file, read one at a time when asked for (memory-mapped).

    Every rank of a run reads the checkpoint; reading the optimiser state or the EMA whole would put a
    full copy in every process's memory (24 GB each for the released model's AdamW state).
    """

    def __init__(self, path: Path):
        self._file = safe_open(str(path), framework="pt")
        self._keys = list(self._file.keys())
        self._known = set(self._keys)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._known:
            raise KeyError(key)
        return self._file.get_tensor(key)

    def __contains__(self, key: object) -> bool:  # without reading the tensor
        return key in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def load_checkpoint(folder: Path) -> tuple[dict[str, Mapping[str, torch.Tensor]], dict]:
    """(file stem -> its tensors, read lazily; trainer.json) of a checkpoint folder."""
    meta_path = folder / "trainer.json"
    if not is_complete(folder):
        raise ValueError(f"{folder} is not a complete higen training checkpoint (no trainer.json / model.safetensors)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not a higen training checkpoint")
    tensors = {p.stem: LazyTensors(p) for p in sorted(folder.glob("*.safetensors"))}
    return tensors, meta


# ---------------------------------------------------------------------- full <-> sharded tensors


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP shard) gathered to the full tensor on every rank; other tensors as they are."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def distribute_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A full tensor shaped like ``like``: sharded the same way if ``like`` is a DTensor."""
    if hasattr(like, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(like.device_mesh.device_type), like.device_mesh, like.placements)
    return full.to(like.device)


def full_state(state: dict[str, torch.Tensor], keep: bool = True) -> dict[str, torch.Tensor]:
    """Gather every tensor of a (possibly sharded) state dict to the CPU. Collective under FSDP: every
    rank takes part, one tensor at a time; only ranks with ``keep`` (rank 0) hold the result, so the
    host memory of the other ranks does not fill with full copies."""
    out = {}
    for name, value in state.items():
        full = full_tensor(value).detach()
        if keep:
            out[name] = full.cpu()
    return out


def model_state(model: nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """The full UNet state dict (unwrapping DDP; gathering FSDP shards). Collective under FSDP."""
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return full_state(module.state_dict(), keep)


def optimizer_state(optimizer: torch.optim.Optimizer, names: dict[nn.Parameter, str], keep: bool = True) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """AdamW state flattened by parameter name (``"<name>::exp_avg"``) and the groups' hyper-parameters.

    Names, not positions, key the state, so a checkpoint fails loudly (instead of loading moments
    into the wrong tensors) when the set of trainable parameters changes. Collective under FSDP
    (see :func:`full_state` for ``keep``).
    """
    tensors: dict[str, torch.Tensor] = {}
    groups = []
    for group in optimizer.param_groups:
        hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
        groups.append({**hyper, "params": [names[p] for p in group["params"]]})
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor):
                    full = full_tensor(value).detach()
                    if keep:
                        tensors[f"{names[p]}{_SEP}{key}"] = full.cpu()
    return tensors, groups


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, names: dict[nn.Parameter, str], tensors: Mapping[str, torch.Tensor], groups: list[dict]
) -> None:
    """Inverse of :func:`optimizer_state` into an optimiser over the same named parameters."""
    current = [[names[p] for p in g["params"]] for g in optimizer.param_groups]
    saved = [g["params"] for g in groups]
    if current != saved:
        raise ValueError(
            "the checkpoint's optimiser covers other parameters than this run trains "
            f"({sum(map(len, saved))} in {len(saved)} groups vs {sum(map(len, current))} in {len(current)}): "
            "optim.param_groups (freeze / patterns) must stay the same to resume"
        )
    fields: dict[str, list[str]] = {}
    for key in tensors:
        name, _, field = key.rpartition(_SEP)
        fields.setdefault(name, []).append(field)
    state: dict[int, dict] = {}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, p in enumerate(params):
        entry = {}
        for field in fields.get(names[p], []):
            value = tensors[f"{names[p]}{_SEP}{field}"]
            # Adam's scalar step counter stays on the CPU (as torch keeps it); moments follow the shard.
            entry[field] = value if value.dim() == 0 else distribute_like(value, p)
        if entry:
            state[index] = entry
    param_groups = []
    start = 0
    for g in groups:
        hyper = {k: (tuple(v) if k == "betas" else v) for k, v in g.items() if k != "params"}
        param_groups.append({**hyper, "params": list(range(start, start + len(g["params"])))})
        start += len(g["params"])
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


# ---------------------------------------------------------------------------------------- RNG


def rng_state(device: torch.device) -> dict:
    """Python, numpy and torch (CPU and this rank's CUDA device) RNG states, JSON-able."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": _jsonable(random.getstate()),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
    }
    if device.type == "cuda":
        state["cuda"] = base64.b64encode(torch.cuda.get_rng_state(device).numpy().tobytes()).decode()
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(_bytes_tensor(state["torch"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(_bytes_tensor(state["cuda"]), device)


def _bytes_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


__all__ = [
    "checkpoint_name", "is_complete", "list_checkpoints", "find_latest", "clean_partial", "resolve_resume", "locate_checkpoint",
    "save_checkpoint", "load_checkpoint", "full_tensor", "distribute_like", "full_state", "model_state",
    "optimizer_state", "load_optimizer_state", "rng_state", "set_rng_state",
]
