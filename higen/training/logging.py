"""What a training run shows and records: a tqdm bar, ``log.jsonl`` and (optionally) TensorBoard.

Only rank 0 logs; other ranks get a logger whose methods do nothing. ``log.jsonl`` gets one JSON object
per log step, appended and flushed as a single write, so a crash never leaves half a line. On resume
the lines after the resumed step (logged by the crashed run after its last checkpoint) are dropped,
so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from higen.io.files import atomic_write_text


class TrainLogger:
    def __init__(self, output_dir: Path, *, enabled: bool, tensorboard: bool, progress: bool, start_step: int, max_steps: int):
        self.enabled = enabled
        self.path = output_dir / "log.jsonl"
        self._bar = None
        self._tb = None
        self._file = None
        if not enabled:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        truncate_log(self.path, start_step)
        self._file = open(self.path, "a", encoding="utf-8")
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=max_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)
        if tensorboard:
            self._tb = _summary_writer(output_dir / "tensorboard")
            if self._tb is None:
                self.message("TensorBoard is not installed (pip install tensorboard): logging to log.jsonl only")

    def log(self, step: int, metrics: dict) -> None:
        """One line of ``log.jsonl`` (+ TensorBoard scalars) for ``step``."""
        if not self.enabled:
            return
        self._file.write(json.dumps({"step": step, **metrics}) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"train/{key}", value, step)
            self._tb.flush()

    def progress(self, steps: int, loss: float | None, clips_per_s: float | None) -> None:
        if self._bar is None:
            return
        postfix = {}
        if loss is not None:
            postfix["loss"] = f"{loss:.4f}"
        if clips_per_s is not None:
            postfix["clips/s"] = f"{clips_per_s:.2f}"
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(steps)

    def message(self, text: str) -> None:
        """A line for the person watching (printed above the progress bar)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._file is not None:
            self._file.close()
        self._bar = self._tb = self._file = None


def truncate_log(path: Path, last_step: int) -> None:
    """Keep the lines of ``log.jsonl`` with ``step <= last_step`` (atomically); 0 empties it."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a torn line cannot happen with single flushed writes, but never fail on one
    atomic_write_text(path, "".join(k + "\n" for k in kept))


def read_log(path: Path) -> list[dict]:
    """The records of a ``log.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _summary_writer(folder: Path):
    """A TensorBoard writer when the optional ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except (ImportError, ModuleNotFoundError):
        return None
    return SummaryWriter(str(folder))


__all__ = ["TrainLogger", "truncate_log", "read_log"]
