"""Manifests: which files to train on and their captions.

Three formats, chosen by the file's suffix:
- ``.csv`` / ``.tsv``: a header row; the path and caption columns are named by ``data.path_column`` and
  ``data.caption_column`` (other columns are ignored);
- ``.jsonl``: one JSON object per line with the same two keys;
- ``.txt``: VGen's lists, one ``path|||caption`` per line.
Relative paths are read against ``root`` (``data.root``) when given, else against the manifest's folder.
Every problem is found here, at start-up, as one error: a missing manifest, a column that does not
exist (the message lists the ones that do), a malformed line, no rows, rows whose files are missing.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterator

from higen.data.decode import ClipSampling
from higen.data.sources import ManifestSource, StringTable

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt")
_SHOWN = 5  # missing files named in the error; the rest are counted


def read_manifest(path: str | Path, spec: ClipSampling, *, root: str | Path | None = None, path_column: str = "path",
                  caption_column: str = "caption", check_files: bool = True) -> ManifestSource:
    """Read a manifest into a ``ManifestSource`` (its rows in file order)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise ValueError(f"{path}: unknown manifest format {suffix!r}; use .csv, .tsv, .jsonl or a VGen .txt list (path|||caption)")
    rows = list(_rows(path, suffix, path_column, caption_column))
    if not rows:
        raise ValueError(f"{path}: the manifest has no rows")
    base = os.path.abspath(root if root is not None else path.parent)
    if check_files:
        _check_files(path, base, [p for p, _ in rows])
    return ManifestSource(StringTable(p for p, _ in rows), StringTable(c for _, c in rows), base, spec)


def _rows(path: Path, suffix: str, path_column: str, caption_column: str) -> Iterator[tuple[str, str]]:
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, "\t" if suffix == ".tsv" else ",", path_column, caption_column)
    if suffix == ".jsonl":
        return _jsonl_rows(path, path_column, caption_column)
    return _vgen_rows(path)


def _csv_rows(path: Path, delimiter: str, path_column: str, caption_column: str) -> Iterator[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file, delimiter=delimiter)
        _require_columns(path, list(reader.fieldnames or []), path_column, caption_column)
        for line, row in enumerate(reader, start=2):
            if not row[path_column]:
                raise ValueError(f"{path}: row {line} has an empty {path_column!r}")
            yield row[path_column], row[caption_column] or ""


def _jsonl_rows(path: Path, path_column: str, caption_column: str) -> Iterator[tuple[str, str]]:
    with path.open(encoding="utf-8") as file:
        for line, text in enumerate(file, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {line} is not valid JSON: {err}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {line} is not a JSON object")
            _require_columns(path, list(row), path_column, caption_column, line)
            if not isinstance(row[path_column], str) or not row[path_column]:
                raise ValueError(f"{path}: line {line}: {path_column!r} must be a non-empty string")
            yield row[path_column], str(row[caption_column] or "")


def _vgen_rows(path: Path) -> Iterator[tuple[str, str]]:
    with path.open(encoding="utf-8") as file:
        for line, text in enumerate(file, start=1):
            text = text.strip()
            if not text:
                continue
            media, sep, caption = text.partition("|||")
            if not sep or not media:
                raise ValueError(f"{path}: line {line} is not 'path|||caption' (VGen list format): {text[:80]!r}")
            yield media.strip(), caption.strip()


def _require_columns(path: Path, columns: list[str], path_column: str, caption_column: str, line: int | None = None) -> None:
    where = f"{path}" if line is None else f"{path}: line {line}"
    for column, key in ((path_column, "data.path_column"), (caption_column, "data.caption_column")):
        if column not in columns:
            raise ValueError(f"{where} has no column {column!r} (columns: {', '.join(columns) or 'none'}); set {key}")


def _check_files(manifest: Path, base: str, paths: list[str]) -> None:
    missing = [p for p in paths if not os.path.isfile(os.path.join(base, p))]
    if missing:
        shown = ", ".join(missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        raise FileNotFoundError(
            f"{manifest}: {len(missing)} of {len(paths)} files do not exist (relative paths are read against {base}; "
            f"set data.root to change that): {shown}"
        )
