"""The latent cache: per-sample tensors computed once (latents, text features, cues) and read back for training.

Layout of a cache folder::

    cache.json                  format, settings fingerprint, sample count, shard list, per-sample field shapes
    shard-000000.safetensors    `shard_size` rows of every field (e.g. latents n c f h w, text n L d);
    shard-000001.safetensors    the rows' captions and source indices in the file's metadata
    ...

``build_cache`` writes everything into a temporary folder beside the target and renames it into place at
the end, so a cache folder is either complete or absent. ``open_cache`` refuses a cache whose settings
(the encoders' identity, frames, fps, size, ...) differ from what the caller expects, naming each
difference: training on latents of another autoencoder or clip length would silently be wrong.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from higen.data.batch import Batch, collate
from higen.data.dataset import LoadDataset, as_list
from higen.data.sources import Sample, Source
from higen.io.files import atomic_path, atomic_write_text

CACHE_FORMAT = "higen-latent-cache"
CACHE_INDEX = "cache.json"
_OPEN_SHARDS = 16  # shard files kept open per process


def build_cache(out_dir: str | Path, data: Any, encode_fn: Callable[[Batch], Mapping[str, torch.Tensor]],
                settings: Mapping[str, Any], shard_size: int = 1024, *, kind: str = "video", batch_size: int = 8,
                num_workers: int = 0, seed: int = 0, overwrite: bool = False, progress: bool = True) -> Path:
    """Encode every loadable sample of ``data`` once and store what ``encode_fn`` returns.

    ``data``: a ``TrainingData`` (its ``kind`` stream's source and seed are used) or a source. Samples
    are visited in source order, ``batch_size`` at a time, each with its epoch-0 random choices (one
    start frame per clip, frozen in the cache); unloadable ones are skipped and counted in cache.json.
    ``encode_fn(batch) -> {name: tensor b ...}``; ``latents``, ``text``, ``motion`` and ``appearance`` come
    back as those ``Batch`` fields, any other name in ``Batch.extra``. ``settings``: the JSON-able
    fingerprint ``open_cache`` compares (see ``higen.data.build.cache_fingerprint``). Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    source, seed = (data.source(kind), data.seed) if callable(getattr(data, "source", None)) else (data, seed)
    settings = _json_roundtrip(settings, "settings")
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be at least 1; got {shard_size}, {batch_size}")
    if out_dir.exists() and not overwrite and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another folder or overwrite it")
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        writer = _ShardWriter(tmp, shard_size)
        skipped: Counter[str] = Counter()
        for batch, failed in tqdm(_batches(source, kind, seed, batch_size, num_workers), disable=not progress,
                                  total=-(-len(source) // batch_size), desc="encoding", unit="batch"):
            skipped.update(failed)
            if batch is not None:
                writer.add(_checked(encode_fn(batch), len(batch)), batch.captions, batch.indices)
        info = writer.finish() | {"kind": kind, "seed": seed, "settings": settings, "skipped": dict(skipped)}
        if info["count"] == 0:
            raise ValueError(f"no sample of {len(source)} could be loaded (skipped: {dict(skipped)})")
        atomic_write_text(tmp / CACHE_INDEX, json.dumps(info, indent=1))
        _replace_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def open_cache(folder: str | Path, expected_settings: Mapping[str, Any]) -> CacheSource:
    """A ``CacheSource`` over ``folder``; ``ValueError`` listing every setting that differs from ``expected_settings``."""
    folder = Path(folder)
    index = folder / CACHE_INDEX
    if not index.is_file():
        raise FileNotFoundError(f"{folder} is not a latent cache (no {CACHE_INDEX}); build one with higen train-cache")
    info = json.loads(index.read_text())
    if info.get("format") != CACHE_FORMAT or info.get("version") != 1:
        raise ValueError(f"{index} is not a version-1 {CACHE_FORMAT} index")
    differences = settings_differences(info["settings"], _json_roundtrip(expected_settings, "expected settings"))
    if differences:
        raise ValueError(f"the latent cache {folder} was built with other settings ({'; '.join(differences)}); "
                         f"rebuild it or train with matching settings")
    missing = [name for name in info["shards"] if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"the latent cache {folder} lacks {len(missing)} shard file(s): {', '.join(missing[:5])}")
    return CacheSource(folder, info)


def settings_differences(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """``"key: cache X, expected Y"`` for every key whose values differ (or that only one side has)."""
    absent = "(absent)"
    return [
        f"{key}: cache {found.get(key, absent)!r}, expected {expected.get(key, absent)!r}"
        for key in sorted(set(found) | set(expected))
        if found.get(key, absent) != expected.get(key, absent)
    ]


class CacheSource:
    """The rows of a latent cache as a source: sample i is row ``i % shard_size`` of shard ``i // shard_size``."""

    def __init__(self, folder: Path, info: Mapping[str, Any]) -> None:
        self.folder, self.info = folder, info
        self.fields = list(info["fields"])
        self._open: OrderedDict[int, tuple[Any, list[str]]] = OrderedDict()

    @property
    def settings(self) -> dict:
        return dict(self.info["settings"])

    def __len__(self) -> int:
        return int(self.info["count"])

    def describe(self, index: int) -> str:
        shard, row = divmod(index, self.info["shard_size"])
        return f"{self.folder / self.info['shards'][shard]} row {row}"

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        shard, row = divmod(index, self.info["shard_size"])
        handle, captions = self._shard(shard)
        return Sample(captions[row], tensors={name: handle.get_slice(name)[row] for name in self.fields})

    def _shard(self, shard: int) -> tuple[Any, list[str]]:
        if shard not in self._open:
            if len(self._open) >= _OPEN_SHARDS:
                self._open.popitem(last=False)
            handle = safe_open(str(self.folder / self.info["shards"][shard]), framework="pt")
            self._open[shard] = (handle, json.loads(handle.metadata()["captions"]))
        self._open.move_to_end(shard)
        return self._open[shard]

    def __getstate__(self) -> dict:
        # Open shard handles cannot be pickled (spawned loader workers); each process reopens its own.
        return {"folder": self.folder, "info": self.info, "fields": self.fields, "_open": OrderedDict()}


# ------------------------------------------------------------------------------------ writing


def _batches(source: Source, kind: str, seed: int, batch_size: int, num_workers: int) -> Iterator[tuple[Batch | None, list[str]]]:
    """(batch of the loadable samples or None, skip reasons) per ``batch_size`` source indices, in order."""
    chunks = [[(0, i, i) for i in range(start, min(start + batch_size, len(source)))] for start in range(0, len(source), batch_size)]
    loader = DataLoader(LoadDataset(source, kind, seed), batch_sampler=chunks, num_workers=num_workers, collate_fn=as_list,
                        generator=torch.Generator().manual_seed(seed % 2**63))
    for loaded in loader:
        good = [item for item in loaded if item.sample is not None]
        batch = collate([item.sample for item in good], [item.index for item in good]) if good else None
        yield batch, [item.reason for item in loaded if item.sample is None]


def _checked(tensors: Mapping[str, torch.Tensor], rows: int) -> dict[str, torch.Tensor]:
    if not tensors or "latents" not in tensors:
        raise ValueError(f"encode_fn must return a dict with at least 'latents'; got keys {sorted(tensors or {})}")
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor) or value.ndim < 1 or value.shape[0] != rows:
            raise ValueError(f"encode_fn: {name!r} must be a tensor with one row per sample ({rows}); got {getattr(value, 'shape', type(value))}")
    return {name: value.detach().cpu().contiguous() for name, value in tensors.items()}


class _ShardWriter:
    """Collects rows and writes each full shard (safetensors, captions and indices in its metadata)."""

    def __init__(self, folder: Path, shard_size: int) -> None:
        self.folder, self.shard_size = folder, shard_size
        self.fields: dict[str, dict] = {}
        self.rows: dict[str, list[torch.Tensor]] = {}
        self.captions: list[str] = []
        self.indices: list[int] = []
        self.shards: list[str] = []
        self.count = 0

    def add(self, tensors: dict[str, torch.Tensor], captions: list[str], indices: list[int]) -> None:
        if not self.fields:
            self.fields = {name: {"shape": list(t.shape[1:]), "dtype": str(t.dtype).removeprefix("torch.")} for name, t in tensors.items()}
        found = {name: {"shape": list(t.shape[1:]), "dtype": str(t.dtype).removeprefix("torch.")} for name, t in tensors.items()}
        if found != self.fields:
            raise ValueError(f"encode_fn returned {found}, but earlier batches {self.fields}: every batch must match")
        for name, value in tensors.items():
            self.rows.setdefault(name, []).append(value)
        self.captions += captions
        self.indices += indices
        while len(self.captions) >= self.shard_size:
            self._write(self.shard_size)

    def finish(self) -> dict:
        if self.captions:
            self._write(len(self.captions))
        return {"format": CACHE_FORMAT, "version": 1, "count": self.count, "shard_size": self.shard_size,
                "shards": self.shards, "fields": self.fields}

    def _write(self, rows: int) -> None:
        stacked = {name: torch.cat(parts) for name, parts in self.rows.items()}
        self.rows = {name: [value[rows:].clone()] for name, value in stacked.items()}  # clone: free the written rows
        name = f"shard-{len(self.shards):06d}.safetensors"
        metadata = {"captions": json.dumps(self.captions[:rows]), "indices": json.dumps(self.indices[:rows])}
        with atomic_path(self.folder / name) as tmp:
            save_file({key: value[:rows].contiguous() for key, value in stacked.items()}, str(tmp), metadata=metadata)
        self.captions, self.indices = self.captions[rows:], self.indices[rows:]
        self.shards.append(name)
        self.count += rows


def _replace_folder(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target``; an old ``target`` is moved aside first and removed after."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _json_roundtrip(value: Mapping[str, Any], what: str) -> dict:
    """``value`` as it reads back from JSON (tuples become lists), so a fresh dict compares equal to a stored one."""
    try:
        return json.loads(json.dumps(dict(value), sort_keys=True))
    except TypeError as err:
        raise ValueError(f"cache {what} must be JSON-able (strings, numbers, lists, dicts): {err}") from None
