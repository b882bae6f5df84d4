"""The oracle ladder of the temporal stage: can the bundled model learn the direction of motion, and from what?

The bundled model is fine-tuned on video steps only (its cached training clips, the true middle frame as the
spatial prior) with one extra per-frame input added to every frame's embedding through a zero-initialised MLP,
beside the frame's normalised time, so it reaches every ResBlock at every resolution:

    text     nothing extra: the bundled model's own path (MiniLM -> resampler -> cross-attention)
    oracle   the clip's true direction, one-hot: no text at all
    warp     the moving prior (UNetConfig.prior_motion: a travel read linearly from the UNet's context tokens,
             zero-initialised, moves the prior frame by frame) in place of the frame embedding's extra input
    pooled   the mean of MiniLM's token states of the caption (where the direction word survives: a linear probe
             reads it from 98 % of held-out captions, against 37 % from the resampler's context tokens)

Half of each batch's timesteps are drawn from [--high-from, 1000), where the noisy clip no longer shows its
motion (benchmarks/direction_probe.py), the rest uniformly. Every ``--eval-every`` steps the one-step clean
predictions of 24 noised held-out moving clips are judged with the true and with the opposite direction (word or
label); at the end the temporal stage samples those 24 clips from their true middle frame (DPM-Solver++ 25,
guidance 4, the bundled defaults' cues) and the judge reads each clip's direction.

    python benchmarks/direction_ladder.py runs/dirladder/oracle --input oracle --steps 300
    python benchmarks/direction_ladder.py runs/dirladder/pooled --input pooled --steps 300
    python benchmarks/direction_ladder.py runs/dirladder/oracle_hi --input oracle --shards 8 --steps 400 \\
        --eval-every 200 --high-fraction 0.9          # 4 s per step on 2 cores
    python benchmarks/direction_ladder.py runs/dirladder/text_hi990 --input text --shards 8 --steps 300 \
        --eval-every 100 --high-from 990 --high-fraction 0.75 --levels 990 999   # the model card's t >= 990 run
    python benchmarks/direction_ladder.py runs/dirladder/warp --input warp --shards 8 --steps 300 \
        --eval-every 100 --levels 950 999                                        # the model card's learned warp

The cache is the bundled recipe's video cache; its first 8 shards (2,048 clips) are enough and take ~10 min:
``higen train-cache runs/bundled_cache/videos --config configs/bundled/higen.yaml --kind video --batch-size 16
data.source=world data.length=2048 model.autoencoder=higen/assets/bundled_model/autoencoder``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from higen.cues import Cues, middle_frame
from higen.diffusion.sampling import guided_denoiser, make_sampler, sample
from higen.diffusion.schedule import NoiseSchedule, offset_noise, predicted_x0, q_sample, v_target
from higen.encoders.autoencoder import to_unit_range
from higen.models.layers import mlp, sinusoidal_embedding
from higen.models.unet import frame_times
from higen.pipeline.pipeline import HiGenPipeline
from higen.training.loss import VPredictionLoss
from higen.world.dataset import world_clip
from higen.world.judge import measure
from higen.world.render import render
from higen.world.spec import DIRECTIONS

from direction_probe import OPPOSITE, moving_clips, prompt  # benchmarks/ is the script's folder

NULL = len(DIRECTIONS)  # the oracle's label for a dropped caption


class DirectionInput(nn.Module):
    """The bundled UNet plus one extra input per frame: ``text`` carries it as an extra last token (the label
    in its first element for ``oracle``), stripped before the UNet reads the text."""

    def __init__(self, unet: nn.Module, kind: str):
        super().__init__()
        self.unet, self.kind = unet, kind
        base = unet.config.base_channels
        width = {"oracle": NULL + 1, "pooled": unet.config.text_dim}.get(kind)
        self.embed = mlp(width + base, unet.config.embed_dim, zero_last=True) if width else None
        if kind == "warp":  # the moving prior (UNetConfig.prior_motion), zero-initialised
            unet.add_prior_motion()
        inner = unet.frame_embedding
        unet.frame_embedding = lambda t, b, f, *cues: inner(t, b, f, *cues) + self._extra

    def forward(self, x, timesteps, text, **cues):
        text, label = text[:, :-1], text[:, -1, 0].long()
        b, f = x.shape[0], x.shape[2]
        if self.embed is None:
            self._extra = 0.0
        else:
            if self.kind == "oracle":
                features = nn.functional.one_hot(label, NULL + 1).to(x.dtype)
            else:
                valid = (text != 0).any(dim=-1, keepdim=True).to(text.dtype)  # MiniLM zeroes its padding
                features = (text * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
            time_ = sinusoidal_embedding(frame_times(f, x.device), self.unet.config.base_channels)
            both = torch.cat([features[:, None].expand(-1, f, -1), time_[None].expand(b, -1, -1)], dim=-1)
            self._extra = self.embed(both).reshape(b * f, -1)
        return self.unet(x, timesteps, text, **cues)


def with_label(text: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    extra = torch.zeros(text.shape[0], 1, text.shape[2])
    extra[:, 0, 0] = labels.float()
    return torch.cat([text, extra], dim=1)


def load_clips(folder: Path, shards: int) -> dict:
    latents, text, motion, appearance, labels = [], [], [], [], []
    for name in json.loads((folder / "cache.json").read_text())["shards"][:shards]:
        with safe_open(str(folder / name), "pt") as f:
            latents.append(f.get_tensor("latents"))
            text.append(f.get_tensor("text"))
            motion.append(f.get_tensor("motion"))
            appearance.append(f.get_tensor("appearance"))
            indices = json.loads(f.metadata()["indices"])
        labels += [DIRECTIONS.index(world_clip(0, i, "train")[0].direction) for i in indices]
    return {"latents": torch.cat(latents), "text": torch.cat(text), "motion": torch.cat(motion),
            "appearance": torch.cat(appearance), "labels": torch.tensor(labels)}


class Probe:
    """The 24 held-out moving clips, encoded once; their texts with the true and the opposite direction."""

    def __init__(self, pipe: HiGenPipeline, n: int = 24):
        self.pipe, self.specs = pipe, moving_clips(n)
        self.true = [s.direction for s in self.specs]
        video = to_unit_range(torch.from_numpy(np.stack([render(s, 16, 64, 64) for s in self.specs])).permute(0, 4, 1, 2, 3))
        with torch.no_grad():
            self.z = pipe.autoencoder.encode(video, sample=False)
        label = lambda words: torch.tensor([DIRECTIONS.index(w) for w in words])  # noqa: E731
        self.texts = {
            "true": with_label(pipe.encode_prompts([prompt(s, s.direction) for s in self.specs]), label(self.true)),
            "opposite": with_label(pipe.encode_prompts([prompt(s, OPPOSITE[s.direction]) for s in self.specs]),
                                   label([OPPOSITE[d] for d in self.true])),
        }
        self.null = with_label(pipe.encode_prompts([""] * n), torch.full((n,), NULL))
        self.alphas = NoiseSchedule().alphas_cumprod().float()
        self.noise = torch.randn(self.z.shape, generator=torch.Generator().manual_seed(0))

    def directions(self, latents) -> list[str]:
        return [measure(v).direction for v in self.pipe.decode(latents)]

    def score(self, shown: list[str], word: str) -> dict:
        asked = self.true if word == "true" else [OPPOSITE[d] for d in self.true]
        return {"as asked": sum(a == b for a, b in zip(shown, asked)), "still": sum(a not in OPPOSITE for a in shown)}

    @torch.no_grad()
    def one_step(self, model: nn.Module, levels: list[int]) -> dict:
        cues = Cues.from_clip(self.z)
        out = {}
        for level in levels:
            t = torch.full((len(self.specs),), level)
            x_t = q_sample(self.alphas, self.z, t, self.noise)
            target = v_target(self.alphas, self.z, t, self.noise)
            row = {}
            for word, text in self.texts.items():
                v = model(x_t, t, text, **cues.unet_kwargs())
                row[word] = {**self.score(self.directions(predicted_x0(self.alphas, x_t, t, v)), word),
                             "loss": round((v - target).pow(2).mean().item(), 5)}  # against the true clip
            out[level] = row
        return out

    @torch.no_grad()
    def sampled(self, model: nn.Module, steps: int = 25, guidance: float = 4.0) -> dict:
        n, s = len(self.specs), self.pipe.defaults
        cues = Cues.from_controls(s.motion, s.appearance, n, 16, model.unet.config.appearance_width, middle_frame(self.z))
        noise = offset_noise(tuple(self.z.shape), 0.1, generator=torch.Generator().manual_seed(1))
        out = {}
        for word, text in self.texts.items():
            latents = sample(guided_denoiser(model, text, self.null, cues, guidance), noise, make_sampler("dpm++", NoiseSchedule()), steps)
            out[word] = self.score(self.directions(latents), word)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--input", choices=("text", "oracle", "pooled", "warp"), required=True)
    p.add_argument("--model", default=None, help="the model folder to start from (default: the bundled model)")
    p.add_argument("--cache", type=Path, default=Path("runs/bundled_cache/videos"), help="a video latent cache of world clips")
    p.add_argument("--shards", type=int, default=16, help="cache shards to load (256 clips each)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--high-from", type=int, default=850)
    p.add_argument("--high-fraction", type=float, default=0.5)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--levels", type=int, nargs="+", default=[900, 950, 990])
    args = p.parse_args()

    torch.manual_seed(0)
    pipe = HiGenPipeline.from_pretrained(args.model, dtype=torch.float32)
    model = DirectionInput(pipe.unet, args.input).train()
    data = load_clips(args.cache, args.shards)
    null_text = pipe.encode_prompts([""])[0]
    probe = Probe(pipe)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    loss_fn = VPredictionLoss(foreground_weight=8.0)
    g = torch.Generator().manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "log.jsonl", "w")

    def record(row: dict) -> None:
        print(json.dumps(row), flush=True)
        log.write(json.dumps(row) + "\n")
        log.flush()

    model.eval()
    record({"step": 0, "one_step": probe.one_step(model, args.levels)})
    model.train()
    start, losses = time.time(), []
    for step in range(1, args.steps + 1):
        for group in optimiser.param_groups:
            group["lr"] = args.lr * min(1.0, step / 20)
        idx = torch.randint(0, len(data["latents"]), (args.batch,), generator=g)
        drop = torch.rand(args.batch, generator=g) < 0.1
        text, labels = data["text"][idx].clone(), data["labels"][idx].clone()
        text[drop], labels[drop] = null_text, NULL
        high = torch.rand(args.batch, generator=g) < args.high_fraction
        t = torch.where(high, torch.randint(args.high_from, 1000, (args.batch,), generator=g), torch.randint(0, 1000, (args.batch,), generator=g))
        x0 = data["latents"][idx]
        noise = offset_noise(tuple(x0.shape), 0.1, generator=g)
        per_sample = loss_fn(model, x0, t, noise, text=with_label(text, labels), spatial_prior=middle_frame(x0),
                             motion=data["motion"][idx], appearance=data["appearance"][idx])
        optimiser.zero_grad(set_to_none=True)
        per_sample.mean().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        losses.append(per_sample.mean().item())
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            record({"step": step, "seconds": round(time.time() - start), "loss": float(np.mean(losses[-args.eval_every:])),
                    "one_step": probe.one_step(model, args.levels)})
            model.train()
    model.eval()
    record({"step": args.steps, "sampled": probe.sampled(model)})
    torch.save(model.state_dict(), args.out / "model.pt")


if __name__ == "__main__":
    main()
