"""WebDataset tar shards, read at random with an in-memory index of member offsets.

A shard is a plain (uncompressed) tar whose members are grouped into samples by key: the member
name up to the first dot of its file name (``clips/0001.mp4`` and ``clips/0001.txt`` are sample
``clips/0001``). A sample holds one video (``.mp4 .webm .avi .mov .mkv``) or image (``.jpg .jpeg .png
.webp``) and a caption (``.txt``, or ``.json`` with a ``caption`` field). At start-up every shard's
headers are read once (stdlib ``tarfile``; members' data are skipped, captions read) into arrays of
(shard, offset, size); a sample is then one ``seek`` + ``read``. That makes shards as random-access as
files on disk, so the loader's epoch permutations, rank slices and exact resume work unchanged.
"""

from __future__ import annotations

import glob
import json
import os
import tarfile
from pathlib import Path
from typing import Sequence

import numpy as np
from braceexpand import braceexpand

from higen.data.decode import ClipSampling, SkipSample, decode_clip
from higen.data.sources import Sample, StringTable

VIDEO_SUFFIXES = ("mp4", "webm", "avi", "mov", "mkv")
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
_SHOWN = 5


def expand_shards(patterns: str | Sequence[str], root: str | Path | None = None) -> list[Path]:
    """Shard paths from brace patterns (``train-{000000..000099}.tar``), globs (``shards/*.tar``), lists
    of either, or several patterns joined with ``::``; relative paths against ``root`` (else the current folder)."""
    items = patterns.split("::") if isinstance(patterns, str) else list(patterns)
    shards: list[Path] = []
    missing: list[str] = []
    for pattern in items:
        for expanded in braceexpand(pattern.strip()):
            full = os.path.join(str(root), expanded) if root is not None else expanded
            if glob.has_magic(full):
                matches = sorted(glob.glob(full))
                missing.extend([] if matches else [full])
                shards.extend(Path(m) for m in matches)
            elif os.path.isfile(full):
                shards.append(Path(full))
            else:
                missing.append(full)
    if missing:
        shown = ", ".join(missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        raise FileNotFoundError(f"{len(missing)} shard file(s) or pattern(s) match nothing: {shown}")
    if not shards:
        raise ValueError(f"no shards in {patterns!r}")
    return shards


def read_shards(patterns: str | Sequence[str], spec: ClipSampling, *, root: str | Path | None = None) -> ShardSource:
    """Index the shards of ``patterns`` into a ``ShardSource``; images are preferred over videos when
    ``spec.frames == 1`` (the image stream), videos otherwise."""
    shards = expand_shards(patterns, root)
    prefer = IMAGE_SUFFIXES + VIDEO_SUFFIXES if spec.frames == 1 else VIDEO_SUFFIXES + IMAGE_SUFFIXES
    rows = [(number, *sample) for number, shard in enumerate(shards) for sample in _index_shard(shard, prefer)]
    if not rows:
        raise ValueError(f"the shards of {patterns!r} hold no samples")
    return ShardSource([str(s) for s in shards], rows, spec)


class ShardSource:
    """Samples of indexed tar shards, in shard order then member order; ``rows``: (shard number, key,
    data offset, size, caption) per sample."""

    def __init__(self, shards: list[str], rows: list[tuple[int, str, int, int, str]], spec: ClipSampling) -> None:
        self.shards, self.spec = shards, spec
        shard, keys, offset, size, captions = zip(*rows, strict=True)
        self.shard = np.asarray(shard, dtype=np.int32)
        self.offset, self.size = np.asarray(offset, dtype=np.int64), np.asarray(size, dtype=np.int64)
        self.keys, self.captions = StringTable(keys), StringTable(captions)

    def __len__(self) -> int:
        return len(self.shard)

    def describe(self, index: int) -> str:
        return f"{self.shards[self.shard[index]]}:{self.keys[index]}"

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        try:
            with open(self.shards[self.shard[index]], "rb") as file:
                file.seek(int(self.offset[index]))
                data = file.read(int(self.size[index]))
        except FileNotFoundError:
            raise SkipSample("missing", "the shard is gone") from None
        if len(data) < self.size[index]:
            raise SkipSample("truncated", "the shard ends inside the member")
        return Sample(self.captions[index], pixels=decode_clip(data, self.spec, rng))


def _index_shard(shard: Path, prefer: tuple[str, ...]) -> list[tuple[str, int, int, str]]:
    """(key, data offset, size, caption) of every sample of one shard, in member order."""
    groups: dict[str, dict[str, tarfile.TarInfo]] = {}
    captions: dict[str, str] = {}
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                key, suffix = _split_name(member.name)
                if not member.isfile() or not suffix:
                    continue
                groups.setdefault(key, {})[suffix] = member
                if suffix in ("txt", "json") and (suffix == "txt" or key not in captions):
                    captions[key] = _caption(tar, member, suffix)
    except tarfile.ReadError as err:
        raise ValueError(f"{shard} is not an uncompressed tar ({err}); random access needs plain .tar shards") from None
    samples, incomplete = [], []
    for key, members in groups.items():
        media = next((members[s] for s in prefer if s in members), None)
        if media is None or captions.get(key) is None:
            incomplete.append(key)
        else:
            samples.append((key, media.offset_data, media.size, captions[key]))
    if incomplete:
        shown = ", ".join(incomplete[:_SHOWN]) + (", ..." if len(incomplete) > _SHOWN else "")
        raise ValueError(
            f"{shard}: {len(incomplete)} sample(s) lack a video/image member or a caption (.txt, or .json with a "
            f"'caption' field): {shown}"
        )
    return samples


def _split_name(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key is everything before the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix.lower()


def _caption(tar: tarfile.TarFile, member: tarfile.TarInfo, suffix: str) -> str | None:
    text = tar.extractfile(member).read().decode("utf-8")
    if suffix == "txt":
        return text.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    caption = value.get("caption") if isinstance(value, dict) else None
    return str(caption).strip() if caption is not None else None
