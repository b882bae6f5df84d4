"""Where is the direction of motion decided, and does the direction word steer it? (docs/bundled_model.md)

Held-out world clips that move (left, right, up or down, no appearance change) are encoded, noised to level t,
and the model's one-step clean prediction (from v) is decoded and its direction judged, once with the
caption's direction word and once with the opposite word. Prints, per t, how many of 24 predictions show the
clip's true direction, the opposite one, or no motion.

    python benchmarks/direction_probe.py                     # the bundled model, t = 300, 500, 700, 900
    python benchmarks/direction_probe.py --model runs/bundled_attr_video/model --t 800 950 990
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from higen.cues import Cues
from higen.diffusion.schedule import NoiseSchedule, predicted_x0, q_sample
from higen.encoders.autoencoder import to_unit_range
from higen.pipeline.pipeline import HiGenPipeline
from higen.world.dataset import world_clip
from higen.world.judge import measure
from higen.world.render import render

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def heldout_clips(n: int, keep) -> list:
    """The specs of the first ``n`` held-out world clips for which ``keep(spec)`` is true."""
    specs, index = [], 0
    while len(specs) < n:
        spec, _ = world_clip(0, index, "heldout")
        index += 1
        if keep(spec):
            specs.append(spec)
    return specs


def moving_clips(n: int) -> list:
    """The first ``n`` held-out clips that move and do not change appearance."""
    return heldout_clips(n, lambda spec: spec.direction in OPPOSITE and spec.change == "none")


def prompt(spec, direction: str) -> str:
    return f"a {spec.colour} {spec.shape} moving {direction} on a {spec.background} background"


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    p.add_argument("--t", type=int, nargs="+", default=[300, 500, 700, 900], help="noise levels")
    p.add_argument("--n", type=int, default=24, help="clips")
    args = p.parse_args()

    pipe = HiGenPipeline.from_pretrained(args.model)
    specs = moving_clips(args.n)
    true = [s.direction for s in specs]
    video = to_unit_range(torch.from_numpy(np.stack([render(s, 16, 64, 64) for s in specs])).permute(0, 4, 1, 2, 3))
    z = pipe.autoencoder.encode(video, sample=False)
    cues = Cues.from_clip(z)
    alphas = NoiseSchedule().alphas_cumprod().float()
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))

    def directions(latents):
        return [measure(v).direction for v in pipe.decode(latents)]

    print(json.dumps({"clean": sum(a == b for a, b in zip(directions(z), true))}), flush=True)
    texts = {"true word": pipe.encode_prompts([prompt(s, s.direction) for s in specs]),
             "opposite word": pipe.encode_prompts([prompt(s, OPPOSITE[s.direction]) for s in specs])}
    for level in args.t:
        t = torch.full((len(specs),), level)
        x_t = q_sample(alphas, z, t, noise)
        row = {"t": level}
        for name, text in texts.items():
            v = pipe.unet(x_t, t, text, **cues.unet_kwargs())
            shown = directions(predicted_x0(alphas, x_t, t, v))
            row[name] = {"shows true dir": sum(a == b for a, b in zip(shown, true)),
                         "shows opposite": sum(a == OPPOSITE[b] for a, b in zip(shown, true)),
                         "still/none": sum(a not in OPPOSITE for a in shown)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
