"""Samplers (chosen by name), classifier-free guidance, and the sampling loop.

Samplers are diffusers schedulers configured for HiGen's schedule. ``ddim`` reproduces the release's
DDIM loop (t = 981, 961, ..., 1, eta 0); ``dpm++`` (DPM-Solver++ 2M) and ``unipc`` are faster
multistep solvers. A scheduler is created fresh for every sampling run, so no state leaks between runs.
"""

from __future__ import annotations

import inspect
from typing import Callable, Protocol

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

from higen.cues import Cues
from higen.diffusion.schedule import NoiseSchedule


def _ddim(s: NoiseSchedule):
    # "leading" spacing with offset 1 gives the release's t = 981, 961, ..., 1 for 50 steps.
    return DDIMScheduler(
        **s.diffusers_kwargs(), timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False
    )


def _dpmpp(s: NoiseSchedule):
    # Zero terminal SNR makes t = 999 pure noise; "trailing" spacing starts there, as Lin et al. advise.
    return DPMSolverMultistepScheduler(
        **s.diffusers_kwargs(), algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing", final_sigmas_type="zero"
    )


def _unipc(s: NoiseSchedule):
    return UniPCMultistepScheduler(**s.diffusers_kwargs(), solver_order=2, timestep_spacing="trailing", final_sigmas_type="zero")


SAMPLERS: dict[str, Callable[[NoiseSchedule], object]] = {"ddim": _ddim, "dpm++": _dpmpp, "unipc": _unipc}


def make_sampler(name: str, schedule: NoiseSchedule):
    """A fresh diffusers scheduler for ``name`` (one of :data:`SAMPLERS`)."""
    try:
        return SAMPLERS[name](schedule)
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}") from None


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


def guided_denoiser(unet: torch.nn.Module, text: torch.Tensor, uncond_text: torch.Tensor | None, cues: Cues, scale: float) -> Denoiser:
    """v = u + scale (c - u), with both branches in one batched UNet call.

    ``text`` and ``uncond_text``: text features ``b L d`` of the prompts and of the unconditional branch.
    Only the text differs between branches in HiGen; the prior and cues are kept in both (higen.md §2).
    ``scale == 1`` (or no ``uncond_text``) runs the conditional branch alone.
    """
    texts = [text] if uncond_text is None or scale == 1.0 else [text, uncond_text]
    if any(t.shape != text.shape for t in texts):
        raise ValueError(f"unconditional text features {tuple(uncond_text.shape)} do not match the prompt's {tuple(text.shape)}")
    n = len(texts)
    kwargs = {k: None if v is None else torch.cat([v] * n) for k, v in cues.unet_kwargs().items()}
    kwargs["text"] = torch.cat(texts)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = unet(torch.cat([x] * n), _timesteps(t, x, n), **kwargs)
        if n == 1:
            return out
        c, u = out.chunk(2)
        return u + scale * (c - u)

    return denoise


def _timesteps(t, x: torch.Tensor, repeat: int = 1) -> torch.Tensor:
    t = torch.as_tensor(t, device=x.device)
    return t.reshape(1).expand(x.shape[0] * repeat) if t.numel() == 1 else t.repeat(repeat)


def sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    sampler,
    steps: int,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Integrate from ``noise`` to a clean latent with ``steps`` sampler steps.

    ``callback(step_index, steps, latents)`` is called after every step.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    sampler.set_timesteps(steps, device=noise.device)
    # Only stochastic samplers take a generator (UniPC's step() has no such argument).
    extra = {"generator": generator} if "generator" in inspect.signature(sampler.step).parameters else {}
    x = noise * sampler.init_noise_sigma
    for i, t in enumerate(sampler.timesteps):
        v = denoiser(sampler.scale_model_input(x, t), t)
        x = sampler.step(v, t, x, **extra).prev_sample
        if callback is not None:
            callback(i, steps, x)
    return x
