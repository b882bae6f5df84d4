"""How much a denoiser gains at zero SNR from knowing the direction, against what a model does there.

At t = 999 (zero terminal SNR) the noisy clip is pure noise, the v-loss is ``||x0_hat - x0||^2`` and its minimiser
is the mean of the clips that fit what the model is told. For the 24 held-out moving clips of
``direction_probe.py`` this prints the plain MSE against the true clip's latents of:

    true / opposite   the mean over the world's speeds (3 per speed band) of the clips that share the clip's middle
                      frame (its spatial prior) and move the true / the opposite way
    blind             the mean over the five directions (each 1/5 in the world, still included): no direction known
    still             the prior repeated in every frame
    model             the model's one-step prediction at t = 999 from the true caption (same noise for every clip)

    python benchmarks/direction_gap.py                    # the bundled model (~1.5 min on 2 cores)
    python benchmarks/direction_gap.py --model runs/bundled_attr_video/model
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch

from higen.cues import Cues
from higen.diffusion.schedule import NoiseSchedule, predicted_x0
from higen.encoders.autoencoder import to_unit_range
from higen.pipeline.pipeline import HiGenPipeline
from higen.world.render import render
from higen.world.spec import CLIP_SECONDS, SPEED_BANDS

from direction_probe import OPPOSITE, moving_clips, prompt  # benchmarks/ is the script's folder

MOVING = ("left", "right", "up", "down")


def through(spec, direction: str, speed: float):
    """``spec`` moving ``direction`` at ``speed`` instead, through the same place at the middle frame (clip time
    0.5, frame ``f // 2`` of an even ``f``): the clip that shares ``spec``'s spatial prior."""
    middle = spec.centre(np.array([0.5]))[0]
    moved = dataclasses.replace(spec, direction=direction, speed=speed, start=(0.0, 0.0))
    travel = np.array(moved.velocity()) * CLIP_SECONDS
    return dataclasses.replace(moved, start=tuple(float(v) for v in middle - 0.5 * travel))


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    p.add_argument("--n", type=int, default=24, help="clips")
    args = p.parse_args()

    pipe = HiGenPipeline.from_pretrained(args.model, dtype=torch.float32)
    speeds = [float(s) for lo, hi in SPEED_BANDS.values() for s in np.linspace(lo, hi, 3)]

    def encode(specs) -> torch.Tensor:
        video = to_unit_range(torch.from_numpy(np.stack([render(s, 16, 64, 64) for s in specs])).permute(0, 4, 1, 2, 3))
        return pipe.autoencoder.encode(video, sample=False)

    specs = moving_clips(args.n)
    clips = encode(specs)
    rows = []
    for spec, z in zip(specs, clips):
        means = {d: encode([through(spec, d, s) for s in speeds]).mean(0) for d in MOVING}
        still = encode([through(spec, "still", 0.0)])[0]
        error = lambda mean: float((mean - z).pow(2).mean())  # noqa: E731
        rows.append({"true": error(means[spec.direction]), "opposite": error(means[OPPOSITE[spec.direction]]),
                     "blind": error((sum(means.values()) + still) / 5), "still": error(still)})
    alphas = NoiseSchedule().alphas_cumprod().float()
    t = torch.full((len(specs),), 999)
    x_t = torch.randn(clips.shape, generator=torch.Generator().manual_seed(0))  # zero SNR: x_999 is the noise
    v = pipe.unet(x_t, t, pipe.encode_prompts([prompt(s, s.direction) for s in specs]), **Cues.from_clip(clips).unet_kwargs())
    model = (predicted_x0(alphas, x_t, t, v) - clips).pow(2).mean(dim=(1, 2, 3, 4))
    summary = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
    print(json.dumps({**summary, "model": round(float(model.mean()), 4)}))


if __name__ == "__main__":
    main()
