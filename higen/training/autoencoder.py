"""Training a small latent autoencoder for a model of our own (the bundled model's, docs/bundled_model.md).

HiGen itself never trains its autoencoder: the release uses Stable Diffusion 2.1's, frozen. A small model
trained on a narrow domain (our procedural world) needs a small autoencoder of its own, so this trains a
diffusers ``AutoencoderKL`` on frames from any training data source:

- loss: L1 + MSE reconstruction of the posterior *sample* (as the VAE objective) plus a small KL term;
  no perceptual or adversarial loss: those need pretrained networks we cannot download here;
- after training, ``scaling_factor`` is set to 1 / std of the latents of held-out frames, the same role
  0.18215 plays for SD 2.1 (Rombach et al. 2022, §G): scaled latents have unit variance, which the
  diffusion schedule assumes.

Frames are taken from video batches (a few random frames per clip) so every phase of the motion and of
the appearance changes is seen, not only first frames.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

from higen.data.config import DataSection
from higen.training.config import load_config
from higen.training.loss import contrast_weights


@dataclass
class AutoencoderModelSection:
    """diffusers ``AutoencoderKL`` shape: one level per entry of ``block_out_channels`` (2^(n-1) x down)."""

    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)
    layers_per_block: int = 1
    latent_channels: int = 4
    # GroupNorm groups. Keep several channels per group: with one channel per group GroupNorm is an
    # instance norm, which erases a flat region's level, so flat backgrounds (our world's) learn very slowly.
    norm_num_groups: int = 4
    # Initial posterior log-variance. At diffusers' init it is about 0, so posterior samples are mostly
    # unit noise until the encoder learns to shrink it; starting small makes early training a plain
    # autoencoder's. The (tiny) KL term then sets it.
    logvar_init: float = -8.0


@dataclass
class AutoencoderTrainSection:
    output_dir: str = "runs/autoencoder"
    seed: int = 0
    max_steps: int = 3000
    batch_size: int = 8  # clips per step
    frames_per_clip: int = 4  # random frames taken from each clip
    lr: float = 3e-4
    warmup_steps: int = 100
    mse_weight: float = 1.0
    # Reconstruction weight 1 + w * d / max d, d = |pixel - its row's median colour| (higen.training.loss.
    # contrast_weights): with plain L1/MSE a small object on a flat background is a few percent of the loss
    # and comes back as a colourless blob; this weights what differs from the background. 0: plain.
    contrast_weight: float = 0.0
    kl_weight: float = 1e-6
    device: str = "auto"
    log_every: int = 50
    eval_clips: int = 64  # held-out clips for the final PSNR and the latent scale


@dataclass
class AutoencoderConfig:
    model: AutoencoderModelSection = field(default_factory=AutoencoderModelSection)
    data: DataSection = field(default_factory=lambda: DataSection(source="world", frames=16, height=64, width=64, num_workers=1))
    train: AutoencoderTrainSection = field(default_factory=AutoencoderTrainSection)

    def validate(self) -> None:
        self.data.validate()
        if self.data.latent:
            raise ValueError("config: data.latent makes no sense for an autoencoder (it needs pixels)")
        for key in ("max_steps", "batch_size", "frames_per_clip", "eval_clips", "log_every"):
            if getattr(self.train, key) < 1:
                raise ValueError(f"config: train.{key} must be at least 1")


def load_autoencoder_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> AutoencoderConfig:
    return load_config(path, overrides, cls=AutoencoderConfig)


def build_vae(model: AutoencoderModelSection):
    from diffusers import AutoencoderKL

    n = len(model.block_out_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=tuple(model.block_out_channels),
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        layers_per_block=model.layers_per_block, latent_channels=model.latent_channels, norm_num_groups=model.norm_num_groups,
    )
    with torch.no_grad():  # quant_conv outputs (mean, logvar) per latent channel
        vae.quant_conv.bias[model.latent_channels:] = model.logvar_init
    return vae


def take_frames(pixels: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``b 3 f H W`` -> ``(b k) 3 H W``: ``k`` frames drawn without replacement from each clip."""
    b, _, f = pixels.shape[:3]
    k = min(k, f)
    picks = torch.stack([torch.randperm(f, generator=generator)[:k] for _ in range(b)])  # b k
    frames = rearrange(pixels, "b c f h w -> b f c h w")
    return rearrange(frames[torch.arange(b)[:, None], picks], "b k c h w -> (b k) c h w")


def vae_loss(vae, frames: torch.Tensor, cfg: AutoencoderTrainSection, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    posterior = vae.encode(frames).latent_dist
    recon = vae.decode(posterior.sample(generator=generator)).sample
    weight = contrast_weights(frames, cfg.contrast_weight)
    l1 = (weight * (recon - frames).abs()).mean()
    mse = (weight * (recon - frames).square()).mean()
    # KL summed over the latent, per pixel value: with the reconstruction as a per-value mean this is SD's
    # weighting (its losses are sums over the image), so kl_weight 1e-6 means what it means there.
    kl = posterior.kl().mean() / frames[0].numel()
    loss = l1 + cfg.mse_weight * mse + cfg.kl_weight * kl
    return loss, {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio of images in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)).item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


@torch.no_grad()
def evaluate(vae, frames: torch.Tensor, chunk: int = 64) -> dict:
    """Reconstruction PSNR (posterior mean) and the latent standard deviation on held-out frames."""
    vae.eval()
    means, recons = [], []
    for part in frames.split(chunk):
        z = vae.encode(part).latent_dist.mean
        means.append(z)
        recons.append(vae.decode(z).sample)
    z, recon = torch.cat(means), torch.cat(recons)
    vae.train()
    return {"psnr": psnr(recon, frames), "latent_std": float(z.std()), "latent_mean": float(z.mean())}


def heldout_frames(cfg: AutoencoderConfig) -> torch.Tensor:
    """Every frame of ``eval_clips`` clips the training order does not start with (another seed's order)."""
    from higen.data import TrainingData

    with TrainingData(cfg.data, seed=cfg.train.seed + 10_000, rank=0, world_size=1, batch_size=cfg.train.eval_clips,
                      image_batch_size=1, num_workers=0) as data:
        pixels = data.next_batch("video").pixels
    return rearrange(pixels, "b c f h w -> (b f) c h w")


def train_autoencoder(cfg: AutoencoderConfig) -> dict:
    """Train, set the latent scale, save ``output_dir/autoencoder`` (a ``VideoAutoencoder`` folder)."""
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from tqdm.auto import tqdm

    from higen.data import TrainingData
    from higen.encoders.autoencoder import VideoAutoencoder
    from higen.io.files import atomic_write_text
    from higen.training.trainer import flush_denormals

    t = cfg.train
    device = torch.device("cuda" if t.device == "auto" and torch.cuda.is_available() else ("cpu" if t.device == "auto" else t.device))
    out = Path(t.output_dir)
    if (out / "autoencoder").exists():
        raise FileExistsError(f"{out / 'autoencoder'} exists; choose another train.output_dir")
    flush_denormals()
    torch.manual_seed(t.seed)
    vae = build_vae(cfg.model).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=t.lr, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, t.warmup_steps, t.max_steps)
    generator = torch.Generator().manual_seed(t.seed)
    history: list[dict] = []
    start = time.perf_counter()
    with TrainingData(cfg.data, seed=t.seed, rank=0, world_size=1, batch_size=t.batch_size, image_batch_size=1,
                      num_workers=cfg.data.num_workers) as data:
        bar = tqdm(range(1, t.max_steps + 1), desc="autoencoder", unit="step")
        for step in bar:
            frames = take_frames(data.next_batch("video").pixels, t.frames_per_clip, generator).to(device)
            loss, parts = vae_loss(vae, frames, t, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if step % t.log_every == 0 or step == t.max_steps:
                history.append({"step": step, "loss": loss.item(), **parts, "seconds": time.perf_counter() - start})
                bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{10 * math.log10(4 / max(parts['mse'], 1e-12)):.1f}")
    held = heldout_frames(cfg).to(device)
    stats = evaluate(vae, held)
    vae.register_to_config(scaling_factor=1.0 / stats["latent_std"])
    VideoAutoencoder(vae.cpu()).save_pretrained(out / "autoencoder")
    report = {"steps": t.max_steps, "seconds": time.perf_counter() - start, "heldout": stats,
              "scaling_factor": 1.0 / stats["latent_std"], "parameters": sum(p.numel() for p in vae.parameters()),
              "history": history}
    atomic_write_text(out / "autoencoder_report.json", json.dumps(report, indent=2) + "\n")
    return report
