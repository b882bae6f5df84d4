"""Generate several prompts and tile the videos into one GIF (the model card's sample).

    python scripts/sample_grid.py -o docs/images/bundled_samples.gif --columns 3 --seed 0 \
        "a red circle moving left on a black background" "a small blue square standing still on a white background"

Without ``--model`` the bundled model is used; every other setting is the model's default unless given.
Videos are upscaled by ``--scale`` (nearest neighbour) and separated by a 2-pixel gap; the prompts,
in grid order (rows first), and the settings are printed.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def tile(videos: np.ndarray, columns: int, gap: int = 2, scale: int = 1) -> np.ndarray:
    """``n f h w 3`` uint8 -> ``f H W 3``: ``columns`` per row, ``gap`` grey pixels between cells."""
    if scale > 1:
        videos = videos.repeat(scale, axis=2).repeat(scale, axis=3)
    n, f, h, w, _ = videos.shape
    rows = -(-n // columns)
    out = np.full((f, rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 128, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        out[:, r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = videos[i]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", nargs="+")
    parser.add_argument("-o", "--output", required=True, help=".gif or .mp4")
    parser.add_argument("--model", default=None)
    parser.add_argument("--columns", type=int, default=3)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--sampler")
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--motion", type=float)
    parser.add_argument("--appearance", type=float)
    args = parser.parse_args(argv)

    from higen.cli.common import load_pipeline
    from higen.io.video import write_video

    pipe, model = load_pipeline(args.model, "cpu", "fp32")
    out = pipe(args.prompts, seed=args.seed, spatial_steps=args.steps, temporal_steps=args.steps, sampler=args.sampler,
               spatial_guidance=args.guidance, temporal_guidance=args.guidance, motion=args.motion, appearance=args.appearance)
    grid = tile(out.video, args.columns, scale=args.scale)
    write_video(args.output, grid, fps=pipe.defaults.fps, format=args.output.rsplit(".", 1)[-1].lower())
    print(json.dumps(dict(model=str(model), prompts=args.prompts, **{k: v for k, v in out.settings.items() if k != "negative_prompt"}), indent=1))


if __name__ == "__main__":
    main()
