"""Does a model move the object the way the prompt says? (docs/bundled_model.md, "Judge scores")

Generates one clip per moving world clip of a split and tallies the judge's direction against the prompt's:
along it, opposite, perpendicular, judged still, or no object found, with measured and true speeds. ``--prior ground-truth``
gives the temporal stage the clip's own middle frame as the spatial prior, which isolates the temporal stage.

    python scripts/direction_probe.py --split train --n 16 --prior ground-truth
    python scripts/direction_probe.py --split heldout --n 20 --motion 42
"""

from __future__ import annotations

import argparse
import collections

import torch

from higen import HiGenPipeline
from higen.world.dataset import world_clip
from higen.world.judge import measure
from higen.world.render import render
from higen.world.spec import OPPOSITE_DIRECTION


def outcome(asked: str, measured: str) -> str:
    if measured is None:
        return "absent"
    if measured == asked:
        return "along"
    if measured == "still":
        return "still"
    return "opposite" if OPPOSITE_DIRECTION[asked] == measured else "perpendicular"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--split", default="heldout", choices=("train", "heldout", "all"))
    p.add_argument("--n", type=int, default=16, help="moving clips to probe")
    p.add_argument("--motion", type=float, help="motion control (default: the model's)")
    p.add_argument("--steps", type=int, help="sampling steps per stage (default: the model's)")
    p.add_argument("--prior", choices=("model", "ground-truth"), default="model")
    args = p.parse_args()
    if args.n < 1:
        p.error("--n must be at least 1")

    pipe = HiGenPipeline.from_pretrained(args.model)  # None: the bundled model
    d = pipe.defaults
    tally: collections.Counter = collections.Counter()
    index = 0
    for done in range(args.n):
        while True:
            spec, prompt = world_clip(0, index, args.split)
            index += 1
            if spec.direction != "still":
                break
        truth = render(spec, d.frames, d.height, d.width)
        keyframe = truth[len(truth) // 2] if args.prior == "ground-truth" else None
        with torch.inference_mode():
            video = pipe(prompt, keyframe=keyframe, motion=args.motion, spatial_steps=args.steps,
                         temporal_steps=args.steps, seed=done).video[0]
        m, t = measure(video), measure(truth)
        result = outcome(spec.direction, m.direction)
        tally[result] += 1
        print(f"{prompt!r}: asked {spec.direction}, measured {m.direction} ({result}); "
              f"speed {m.speed or 0.0:.3f} sides/s, the clip's {t.speed:.3f}")
    print(", ".join(f"{k} {tally[k]}/{args.n}" for k in ("along", "opposite", "perpendicular", "still", "absent")))


if __name__ == "__main__":
    main()
