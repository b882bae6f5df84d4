"""HiGen's training loss: plain v-prediction MSE on the zero-terminal-SNR schedule (higen.md §4).

EDM-style: :class:`VPredictionLoss` is a callable that returns one loss per sample and knows nothing
about optimisers, reductions or devices. The randomness it consumes (timesteps, noise) is drawn by
:func:`draw_timesteps` / :func:`draw_noise` from per-sample generators, so a sample's noise depends on
its key (seed, step, global index) and not on which process or batch position it landed in.
"""

from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange

from higen.diffusion.schedule import NoiseSchedule, offset_noise, q_sample, v_target


def contrast_weights(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-position loss weights ``n 1 h w`` of images ``n c h w``, mean 1 per image: ``1 + strength * d / max d``.

    ``d`` is the distance (L1 over channels) of each position from its row's background, taken as the
    row's median over the width: plain backgrounds and vertical gradients are both background, a small
    object on them stands out. Normalising ``d`` by its per-image maximum makes ``strength`` mean the same
    for pixels in [-1, 1] and for latents of any scale; normalising the weights to mean 1 keeps the loss
    on the scale of the unweighted one. ``strength`` 0 gives ones: the plain loss.
    """
    if strength == 0:
        return torch.ones_like(x[:, :1])
    background = x.median(dim=-1, keepdim=True).values  # n c h 1
    d = (x - background).abs().sum(dim=1, keepdim=True)  # n 1 h w
    weight = 1.0 + strength * d / d.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return weight / weight.mean(dim=(2, 3), keepdim=True)


def min_snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights ``b`` for a v-prediction loss: ``min(SNR, gamma) / (SNR + 1)``.

    The v-loss is ``(SNR + 1)`` times the clean-image loss; Min-SNR-gamma weights the clean-image loss by
    ``min(SNR, gamma)`` (Hang et al., ICCV 2023), so the easy low-noise steps stop dominating and the
    mid-noise steps, where an object's outline is decided, weigh more. A zero-terminal-SNR schedule has
    SNR 0 at its last step, whose weight would be 0: that step keeps weight 1 (as diffusers does).
    """
    a = alphas_cumprod[timesteps]
    snr = a / (1 - a).clamp_min(1e-12)
    weight = snr.clamp(max=gamma) / (snr + 1)
    return torch.where(snr == 0, torch.ones_like(weight), weight)


def draw_timesteps(generators: list[torch.Generator], num_timesteps: int, low: int = 0) -> torch.Tensor:
    """One ``t ~ U{low, ..., num_timesteps - 1}`` per generator: int64 ``b`` (on the CPU)."""
    if not 0 <= low < num_timesteps:
        raise ValueError(f"timesteps: need 0 <= low < high; got low {low}, high {num_timesteps}")
    return torch.stack([torch.randint(low, num_timesteps, (), generator=g) for g in generators])


def draw_noise(generators: list[torch.Generator], shape: tuple[int, ...], strength: float) -> torch.Tensor:
    """Per-sample Gaussian noise plus offset noise: ``b c f h w`` from a per-sample ``shape`` ``(c, f, h, w)``.

    Offset noise (the release's 0.1): a per-(c, f) constant over (h, w) added to each sample's noise,
    which lets the model change a frame's mean brightness (higen.md §1). Drawn on the CPU in float32
    so a seed means the same noise on every device.
    """
    return torch.cat([offset_noise((1, *shape), strength, generator=g) for g in generators])


class VPredictionLoss:
    """``loss(model, x0, timesteps, noise, **conditioning) -> b``: mean squared error of the predicted v.

    ``x0``: clean scaled latents ``b c f h w``; ``timesteps``: ``b``; ``noise``: like ``x0``;
    ``conditioning``: the UNet's keyword inputs (``text``, ``spatial_prior``, ``motion``, ``appearance``).
    The target is ``v = sqrt(a_t) noise - sqrt(1 - a_t) x0``; the loss is the per-sample mean over
    (c, f, h, w) with no SNR weighting, as the release. Computed in float32 whatever the autocast.
    ``foreground_weight`` > 0 weights each latent position by :func:`contrast_weights` of its clean frame
    (mean 1 per frame), not in the release. ``snr_gamma`` > 0 weights each sample by Min-SNR-gamma
    (Hang et al., ICCV 2023; :func:`min_snr_weights`), not in the release.
    """

    def __init__(self, schedule: NoiseSchedule | None = None, foreground_weight: float = 0.0, snr_gamma: float = 0.0):
        self.schedule = schedule or NoiseSchedule()
        self.alphas_cumprod = self.schedule.alphas_cumprod().float()
        self.foreground_weight = foreground_weight
        self.snr_gamma = snr_gamma

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_train_timesteps

    def __call__(
        self, model: Callable[..., torch.Tensor], x0: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor, **conditioning
    ) -> torch.Tensor:
        x0, noise = x0.float(), noise.to(x0.device, torch.float32)
        timesteps = timesteps.to(x0.device)
        x_t = q_sample(self.alphas_cumprod, x0, timesteps, noise)
        target = v_target(self.alphas_cumprod, x0, timesteps, noise)
        prediction = model(x_t, timesteps, **conditioning)
        error = (prediction.float() - target).pow(2)
        if self.foreground_weight:
            error = error * self.weights(x0)
        per_sample = error.flatten(1).mean(dim=1)
        if self.snr_gamma:
            per_sample = per_sample * min_snr_weights(self.alphas_cumprod.to(x0.device), timesteps, self.snr_gamma)
        return per_sample

    def weights(self, x0: torch.Tensor) -> torch.Tensor:
        """Loss weights ``b 1 f h w`` of clean latents ``b c f h w``, one map per frame."""
        frames = rearrange(x0, "b c f h w -> (b f) c h w")
        return rearrange(contrast_weights(frames, self.foreground_weight), "(b f) 1 h w -> b 1 f h w", b=x0.shape[0])


class AttributeLoss:
    """``weight`` x the cross-entropy, summed over attributes, of an attribute context's logits
    (:class:`higen.models.layers.AttributeContext`) against the attributes each caption states, read by the
    procedural world's caption parser (:func:`higen.world.captions.attribute_labels`); a dropped caption
    states none. Not in the release."""

    def __init__(self, attribute_values: tuple[int, ...], weight: float):
        from higen.world.captions import ATTRIBUTE_VALUES

        sizes = tuple(len(v) for v in ATTRIBUTE_VALUES.values())
        if tuple(attribute_values) != sizes:
            raise ValueError(f"loss.attribute_weight needs model.unet.attribute_values {list(sizes)} (the world's "
                             f"{', '.join(ATTRIBUTE_VALUES)}); this UNet has {list(attribute_values)}")
        self.not_said, self.weight = torch.tensor(sizes), weight

    def __call__(self, context: torch.nn.Module, text: torch.Tensor, captions: list[str], dropped: list[bool]) -> torch.Tensor:
        from higen.world.captions import attribute_labels

        labels = torch.tensor(attribute_labels(captions), device=text.device)
        labels = torch.where(torch.tensor(dropped, device=text.device)[:, None], self.not_said.to(text.device), labels)
        ce = sum(torch.nn.functional.cross_entropy(logit.float(), labels[:, k]) for k, logit in enumerate(context.logits(text)))
        return self.weight * ce


__all__ = ["VPredictionLoss", "AttributeLoss", "draw_timesteps", "draw_noise", "min_snr_weights"]
