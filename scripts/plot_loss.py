"""Plot training loss curves from ``higen train`` logs (``OUTPUT_DIR/log.jsonl``) into a PNG.

    python scripts/plot_loss.py runs/bundled_higen/log.jsonl:HiGen runs/bundled_plain/log.jsonl:plain \
        -o docs/images/bundled_loss.png

Each log is ``PATH[:LABEL]``. A logged loss is the mean over the steps since the previous log line,
still noisy (random timesteps), so a running mean over ``--window`` log points is drawn over the raw points. Needs matplotlib
(``pip install matplotlib``); it is not part of the package's install.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def loss_curve(path: Path, kind: str | None) -> tuple[list[int], list[float]]:
    from higen.training.logging import read_log

    rows = [r for r in read_log(path) if "loss" in r and (not kind or r.get("kind") in (None, kind))]
    if not rows:
        raise SystemExit(f"error: no loss entries in {path}")
    return [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]


def running_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", help="PATH[:LABEL] of a log.jsonl")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    parser.add_argument("--window", type=int, default=10, help="running-mean window in log points")
    parser.add_argument("--kind", default=None, help="only entries of this step kind (video or image)")
    parser.add_argument("--title", default="training loss as logged (the run's weighted v-loss + attribute loss)")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("error: this script needs matplotlib (pip install matplotlib)")

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for spec in args.logs:
        path, _, label = spec.partition(":")
        steps, losses = loss_curve(Path(path), args.kind)
        line, = ax.plot(steps, running_mean(losses, args.window), label=label or path, linewidth=1.6)
        ax.plot(steps, losses, color=line.get_color(), alpha=0.2, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(args.title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
