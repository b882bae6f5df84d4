"""Atomic folder writing: the folder counterpart of :mod:`higen.io.files`.

Two cases need it: a folder that is one object (a video as PNG frames) must appear whole or not at all,
and a library ``save_pretrained`` (transformers, diffusers) that writes several files in place must not
leave half-written files behind when it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from higen.io.files import temporary_folder


def _temporary_folder_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, so the final rename stays on one file system and is atomic.
    return temporary_folder(path.parent, prefix=f".{path.name}.", suffix=".tmp")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, may_replace: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it is renamed to ``path``.

    ``path`` may be missing or an empty folder. An existing non-empty folder is replaced only when
    ``may_replace(path)`` says so (e.g. it holds nothing but an earlier output of the same kind);
    otherwise :class:`FileExistsError` is raised before anything is written. On any exception the
    temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (may_replace and may_replace(path)):
        raise FileExistsError(f"{path} exists and is not empty")
    tmp = _temporary_folder_beside(path)
    try:
        yield tmp
        _swap_into_place(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _swap_into_place(new: Path, path: Path) -> None:
    if not path.exists():
        os.replace(new, path)
        return
    # A folder cannot be renamed over a non-empty one: move the old one aside first, then drop it.
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old / path.name)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old / path.name, path)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success move everything written there into ``directory``.

    For ``save_pretrained`` methods of other libraries, which write several files in place: each file
    arrives by an atomic rename, so a reader never sees a half-written file, and a failed save leaves
    ``directory`` as it was. Files already in ``directory`` with other names are kept.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a folder")
    tmp = _temporary_folder_beside(directory)
    try:
        yield tmp
        directory.mkdir(parents=True, exist_ok=True)
        _move_contents(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _move_contents(src: Path, dst: Path) -> None:
    for item in sorted(src.iterdir()):
        target = dst / item.name
        if item.is_dir() and target.is_dir():
            _move_contents(item, target)
        else:
            os.replace(item, target)
