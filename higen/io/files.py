"""Atomic file writing: a reader never sees a half-written file, and a failed write leaves nothing."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic on POSIX. It is
    named ``<stem>.partial-<pid><suffix>`` (visible, the writer's process id in it): on any exception it is
    removed and ``path`` is untouched; if the process is killed it stays, and the next write to ``path``
    removes it once its process is gone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp_path = path.with_name(f"{path.stem}.partial-{os.getpid()}{path.suffix}")
    tmp_path.unlink(missing_ok=True)  # left by a killed process that had our pid
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp_path
        if tmp_path.exists():  # some writers (safetensors) recreate the file private (0600): give it open()'s permissions
            os.chmod(tmp_path, 0o666 & ~umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_partials(path: Path) -> None:
    """Remove the temporary files of writes to ``path`` whose process no longer runs (killed mid-write)."""
    for partial in path.parent.glob(f"{glob.escape(path.stem)}.partial-*{glob.escape(path.suffix)}"):
        pid = partial.name[len(path.stem) + len(".partial-"):len(partial.name) - len(path.suffix)]
        if pid.isdigit() and not _running(int(pid)):
            partial.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def umask() -> int:
    """The process's file-creation mask (``tempfile`` ignores it: its files and folders are private)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_folder(parent: str | os.PathLike, prefix: str, suffix: str = "") -> Path:
    """A new empty folder in ``parent`` (for building a folder that is renamed into place), with the
    permissions ``mkdir`` would give rather than ``mkdtemp``'s private 0700."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(folder, 0o777 & ~umask())
    return folder


def read_json(path: str | os.PathLike):
    """The JSON in ``path``; a missing, non-UTF-8 or malformed file is an error naming it."""
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
