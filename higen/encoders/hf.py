"""Small helpers around transformers' ``from_pretrained`` / ``save_pretrained`` shared by the encoders."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from higen.io.checkpoint import CheckpointError


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No "Loading weights" / "Writing model shards" bars: they would clutter the CLI's own progress."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def check_loading_info(info, directory: Path) -> None:
    """Make transformers' lenient loading strict: any missing, unexpected or mismatched key is an error."""
    problems = {k: info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)}
    if problems:
        listed = "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, sorted(v)[:10]))}" for k, v in problems.items())
        raise CheckpointError(f"{directory} does not match its config.json ({listed})")
