"""The noise schedule and v-parameterisation of HiGen (higen.md §4).

1000 steps of "scaled linear" betas (sqrt-linear 0.00085 -> 0.012, squared) rescaled to zero terminal
SNR (Lin et al. 2024), v-prediction. We let diffusers compute the schedule and the q-sample / velocity
arithmetic; this module only fixes HiGen's settings and adds offset noise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler


@dataclass(frozen=True)
class NoiseSchedule:
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    zero_terminal_snr: bool = True
    prediction_type: str = "v_prediction"

    def diffusers_kwargs(self) -> dict:
        return dict(
            num_train_timesteps=self.num_train_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            beta_schedule=self.beta_schedule,
            rescale_betas_zero_snr=self.zero_terminal_snr,
            prediction_type=self.prediction_type,
        )

    def training_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(**self.diffusers_kwargs(), clip_sample=False)

    def alphas_cumprod(self) -> torch.Tensor:
        return self.training_scheduler().alphas_cumprod

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseSchedule":
        return cls(**d)


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1))).to(like)


def q_sample(alphas_cumprod: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise, per sample ``t`` (any layout with batch first)."""
    a = alphas_cumprod.to(x0.device)[t]
    return _broadcast(a.sqrt(), x0) * x0 + _broadcast((1 - a).sqrt(), x0) * noise


def v_target(alphas_cumprod: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v = sqrt(a_t) noise - sqrt(1 - a_t) x0."""
    a = alphas_cumprod.to(x0.device)[t]
    return _broadcast(a.sqrt(), x0) * noise - _broadcast((1 - a).sqrt(), x0) * x0


def predicted_x0(alphas_cumprod: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The clean sample a v-prediction implies: x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v."""
    a = alphas_cumprod.to(x_t.device)[t]
    return _broadcast(a.sqrt(), x_t) * x_t - _broadcast((1 - a).sqrt(), x_t) * v


def offset_noise(shape: tuple[int, ...], strength: float, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """Gaussian noise plus ``strength`` x a per-(b, c, f) constant over (h, w), for ``b c f h w`` shapes.

    The release adds 0.1 of it both in training and to the temporal stage's initial noise.
    """
    b, c, f = shape[:3]
    noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if strength:
        noise = noise + strength * torch.randn((b, c, f, 1, 1), generator=generator, device=device, dtype=dtype)
    return noise
