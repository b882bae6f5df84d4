"""Oracle: does the bundled model follow a spatial prior that moves from frame to frame? (docs/bundled_model.md)

HiGen adds the one spatial prior (the middle frame) to every frame alike. Here each frame gets it translated
to where the true clip's object is in that frame (the middle latent frame shifted by the clip's true velocity,
bilinear, edges repeated), through the model's own prior embedding and without any training (the prior moves
as with ``UNetConfig.prior_motion``, its travel given). For the 24 held-out moving clips of
``direction_probe.py`` it prints, for the prior as trained, moved the true way and moved the opposite way: the
error of the one-step prediction at t = 999 against the true clip, the moved prior's own error, and how many
of the 24 clips the temporal stage samples (DPM-Solver++ 25, guidance 4, the default cues, from the true
middle frame) move the true way.

    python benchmarks/warped_prior.py            # the bundled model, ~8 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from higen.cues import Cues, middle_frame
from higen.diffusion.sampling import guided_denoiser, make_sampler, sample
from higen.diffusion.schedule import NoiseSchedule, offset_noise, predicted_x0
from higen.encoders.autoencoder import to_unit_range
from higen.models import layers
from higen.models.unet import HiGenUNet
from higen.pipeline.pipeline import HiGenPipeline
from higen.world.judge import measure
from higen.world.render import render
from higen.world.spec import CLIP_SECONDS

from direction_probe import OPPOSITE, moving_clips, prompt  # benchmarks/ is the script's folder


def moved_prior(prior: torch.Tensor, velocities, frames: int) -> torch.Tensor:
    """``prior`` ``b c h w`` moved frame by frame at ``velocities`` ``b 2`` (image sides per second, x right, y down;
    a tensor keeps its gradient) -> ``b c f h w`` (:func:`higen.models.layers.moved_prior`)."""
    travel = torch.as_tensor(velocities, dtype=prior.dtype, device=prior.device) * CLIP_SECONDS
    return layers.moved_prior(prior, travel, frames)


class _FixedTravel(nn.Module):
    """Stands in for ``HiGenUNet.prior_velocity``: each sample's travel is given, whatever its context."""

    def __init__(self, travel: torch.Tensor):
        super().__init__()
        self.travel = travel

    def forward(self, context: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        copies = context.shape[0] // len(self.travel)  # guidance batches the branches
        return self.travel.repeat(copies, 1)


@contextmanager
def fixed_travel(unet: HiGenUNet, travel: torch.Tensor | None):
    """The UNet's moving prior (``UNetConfig.prior_motion``) with ``travel`` ``b 2``; None: the prior as trained."""
    saved = unet.prior_velocity
    unet.prior_velocity = None if travel is None else _FixedTravel(travel)
    try:
        yield unet
    finally:
        unet.prior_velocity = saved


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    args = p.parse_args()

    pipe = HiGenPipeline.from_pretrained(args.model, dtype=torch.float32)
    unet, frames = pipe.unet, 16
    specs = moving_clips(24)
    video = to_unit_range(torch.from_numpy(np.stack([render(s, frames, 64, 64) for s in specs])).permute(0, 4, 1, 2, 3))
    z = pipe.autoencoder.encode(video, sample=False)
    prior, velocities = middle_frame(z), np.array([s.velocity() for s in specs])
    text, null = pipe.encode_prompts([prompt(s, s.direction) for s in specs]), pipe.encode_prompts([""] * len(specs))
    defaults, alphas = pipe.defaults, NoiseSchedule().alphas_cumprod().float()
    cues = Cues.from_controls(defaults.motion, defaults.appearance, len(specs), frames, unet.config.appearance_width, prior)
    t = torch.full((len(specs),), 999)
    x_t = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))  # zero SNR: x_999 is the noise
    for name, way in (("as trained", None), ("moved the true way", velocities), ("moved the opposite way", -velocities)):
        moved = None if way is None else moved_prior(prior, way, frames)
        with fixed_travel(unet, None if way is None else torch.as_tensor(way, dtype=torch.float32) * CLIP_SECONDS):
            x0 = predicted_x0(alphas, x_t, t, unet(x_t, t, text, **Cues.from_clip(z).unet_kwargs()))
            noise = offset_noise(tuple(z.shape), 0.1, generator=torch.Generator().manual_seed(1))
            latents = sample(guided_denoiser(unet, text, null, cues, 4.0), noise, make_sampler("dpm++", NoiseSchedule()), 25)
        shown = [measure(v).direction for v in pipe.decode(latents)]
        print(json.dumps({"prior": name, "error at t=999": round(float((x0 - z).pow(2).mean()), 4),
                          "moved prior's own error": None if moved is None else round(float((moved - z).pow(2).mean()), 4),
                          "sampled: true way": sum(a == s.direction for a, s in zip(shown, specs)),
                          "sampled: opposite": sum(a == OPPOSITE[s.direction] for a, s in zip(shown, specs)),
                          "sampled: still": sum(a not in OPPOSITE for a in shown)}), flush=True)


if __name__ == "__main__":
    main()
