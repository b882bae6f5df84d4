"""The oracle ladder of the spatial stage: is shape not learned because of the text path or the network?

The bundled model's UNet is trained on single world frames (the spatial stage) with its text resampler
replaced by one of five context paths, and its samples are judged every few hundred steps:

    oracle     one learned token per attribute value (shape, colour, background): no text at all
    direct     the MiniLM token states, each projected by one Linear to the context width: no resampler
    pooled     the MiniLM token states' masked mean (the sentence embedding), one Linear to 8 context tokens,
               each layer-normalised (tokens of the oracle's norm at initialisation)
    resampler  the bundled model's own path (MiniLM -> learned-query resampler)
    attributes the attribute context (model.unet.attribute_values): a learned parser of the MiniLM token states
               gives each attribute the captions state (colour, shape, ...) one token, a softmax mix of one
               learned embedding per value, trained with the captions' stated attributes (loss.attribute_weight 1)

If the oracle learns shape and the text paths do not, the text path is at fault; if the oracle does not
either, the network, loss or noise schedule is. ``x0`` asks at which noise level the shape is decided and
whether the shape token steers it: one-step clean predictions from noised true frames, judged, with the
true shape token and with a wrong one. ``words`` asks the same of a trained model folder through its text
path: held-out middle frames, with the true caption and with the caption's shape word swapped. ``detail``
asks how fine the latent detail that carries the shape is: clean latents under noise and under a blur.
``parsed`` reads an oracle run through text: a parser trained on the cached captions mixes the oracle's own
tokens. ``priors`` judges a model folder's spatial stage as ``train`` judges its runs. ``context`` asks what a
text run's context carries: each attribute's share of its variance and linear probes of shape, colour and
background. Results: docs/bundled_model.md ("How shape was learned, and why direction is not yet").

    python benchmarks/oracle_ladder.py cache runs/ladder/images --n 8000                 # 64 x 64 middle frames
    python benchmarks/oracle_ladder.py train runs/ladder/oracle --cache runs/ladder/images --context oracle
    python benchmarks/oracle_ladder.py train runs/ladder/oracle_l0 --cache runs/ladder/images --context oracle \\
        model.unet.attention_levels=[0,1,2]
    python benchmarks/oracle_ladder.py train runs/ladder/oracle_emb --cache runs/ladder/images --context oracle --label-embedding
    python benchmarks/oracle_ladder.py train runs/ladder/oracle_mid --cache runs/ladder/images --context oracle --timesteps 300 800 --steps 1000
    python benchmarks/oracle_ladder.py train runs/ladder/oracle_init --cache runs/ladder/images --context oracle \\
        --init higen/assets/bundled_model --snr-gamma 5 --lr 3e-4       # a trained UNet, a fresh oracle context
    python benchmarks/oracle_ladder.py cache runs/ladder/images_x15 --size-scale 1.5      # objects 1.5x larger
    python benchmarks/oracle_ladder.py train runs/ladder/direct_snr --cache runs/ladder/images --context direct \\
        --snr-gamma 5 --lr 3e-4 --steps 5000 --eval-every 500
    python benchmarks/oracle_ladder.py train runs/ladder/res_snr_lr5 --cache runs/ladder/images --context resampler \\
        --snr-gamma 5 --lr 5e-4 --warmup 500 --clip 0.5 --steps 5000 --eval-every 500
    python benchmarks/oracle_ladder.py train runs/ladder/pooled_lr5 --cache runs/ladder/images --context pooled \\
        --snr-gamma 5 --lr 5e-4 --warmup 500 --clip 0.5 --steps 5000 --eval-every 500
    python benchmarks/oracle_ladder.py train runs/ladder/oracle_lr5 --cache runs/ladder/images --context oracle \\
        --snr-gamma 5 --lr 5e-4 --warmup 500 --clip 0.5 --steps 12000 --decay-from 10000 --eval-every 500
    python benchmarks/oracle_ladder.py x0 runs/ladder/oracle --cache runs/ladder/images
    python benchmarks/oracle_ladder.py words                                             # the bundled model
    python benchmarks/oracle_ladder.py words runs/bundled_attr_video/model               # any model folder
    python benchmarks/oracle_ladder.py detail runs/ladder/images
    python benchmarks/oracle_ladder.py train runs/ladder/attr_lr5 --cache runs/ladder/images --context attributes \\
        --snr-gamma 5 --lr 5e-4 --warmup 500 --clip 0.5 --steps 5000 --eval-every 500
    python benchmarks/oracle_ladder.py parsed runs/ladder/oracle_lr5 --cache runs/ladder/images      # ~2 min
    python benchmarks/oracle_ladder.py priors runs/bundled_attr_spatial/model --sets 3   # any model folder
    python benchmarks/oracle_ladder.py context runs/ladder/res_snr_lr5 --cache runs/ladder/images

Each ``train`` run writes ``log.jsonl`` (loss by timestep quarter every 50 steps; judged shape, colour and
background of 48 held-out prompts every ``--eval-every`` steps), its EMA weights and ``state.pt``, from which
a second call with a larger ``--steps`` resumes. About 0.25-0.65 s per step of 32 frames on this project's
2-core machines (two threads, one run; 5,000 steps took 22 min on the faster).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from higen.cues import Cues
from higen.diffusion.sampling import guided_denoiser, make_sampler, sample
from higen.encoders.autoencoder import to_unit_range
from higen.diffusion.schedule import NoiseSchedule, offset_noise, predicted_x0, q_sample
from higen.pipeline.pipeline import HiGenPipeline
from higen.training.components import expected_unet_config
from higen.training.config import load_config
from higen.training.loss import VPredictionLoss
from higen.models.layers import AttributeContext
from higen.models.unet import HiGenUNet
from higen.world.dataset import world_clip
from higen.world.judge import measure
from higen.world.render import render
from higen.world.captions import ATTRIBUTE_VALUES, attribute_labels, make_caption
from higen.world.spec import BACKGROUNDS, COLOURS, SHAPES, SPLITS, sample_spec

VOCAB = (SHAPES, tuple(COLOURS), tuple(BACKGROUNDS))
NULL = torch.tensor([len(v) for v in VOCAB])  # the index each attribute uses for a dropped caption


def labels(spec) -> list[int]:
    return [VOCAB[0].index(spec.shape), VOCAB[1].index(spec.colour), VOCAB[2].index(spec.background)]


class OracleContext(nn.Module):
    """Attribute indices ``b 3`` (passed as the UNet's "text") -> one learned context token per attribute."""

    def __init__(self, width: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(len(v) + 1, width) for v in VOCAB)
        for table in self.tables:
            nn.init.normal_(table.weight)

    def forward(self, attributes: torch.Tensor) -> torch.Tensor:
        a = attributes.long()
        return torch.stack([table(a[:, k]) for k, table in enumerate(self.tables)], dim=1)


def sentence_mean(text: torch.Tensor) -> torch.Tensor:
    """MiniLM token states ``b L d`` -> their mean over the caption's tokens (MiniLM zeroes its padding)."""
    valid = (text != 0).any(dim=-1, keepdim=True).to(text.dtype)
    return (text * valid).sum(1) / valid.sum(1).clamp(min=1)


class PooledContext(nn.Module):
    """MiniLM token states ``b L d`` -> their mean over the caption's tokens (padding is zero) -> one Linear to
    ``num_tokens`` context tokens, each layer-normalised."""

    def __init__(self, text_dim: int, width: int, num_tokens: int):
        super().__init__()
        self.num_tokens = num_tokens
        self.proj = nn.Linear(text_dim, num_tokens * width)
        self.norm = nn.LayerNorm(width)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(sentence_mean(text)).unflatten(-1, (self.num_tokens, -1)))


class LabelEmbedding(nn.Module):
    """An oracle UNet that also adds a learned embedding of the labels to every frame's embedding, so the labels
    reach every ResBlock at every resolution (as a class-conditional diffusion model's class embedding)."""

    def __init__(self, unet: HiGenUNet):
        super().__init__()
        self.unet = unet
        self.tables = nn.ModuleList(nn.Embedding(len(v) + 1, unet.config.embed_dim) for v in VOCAB)
        for table in self.tables:
            nn.init.zeros_(table.weight)  # no-op at initialisation
        frame_embedding = unet.frame_embedding
        unet.frame_embedding = lambda t, b, f, *cues: frame_embedding(t, b, f, *cues) + self._labels.repeat_interleave(f, dim=0)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor, **cues) -> torch.Tensor:
        a = text.long()
        self._labels = sum(table(a[:, k]) for k, table in enumerate(self.tables))
        return self.unet(x, timesteps, text, **cues)


def build(context: str, overrides: list[str], label_embedding: bool = False) -> nn.Module:
    cfg = load_config("configs/bundled/higen.yaml", ["data.videos=unused", "data.images=unused", *overrides])
    torch.manual_seed(0)
    unet = HiGenUNet(expected_unet_config(cfg))
    if context == "oracle":
        unet.text_resampler = OracleContext(unet.config.context_dim)
    elif context == "direct":
        unet.text_resampler = nn.Linear(unet.config.text_dim, unet.config.context_dim)
    elif context == "pooled":
        unet.text_resampler = PooledContext(unet.config.text_dim, unet.config.context_dim, unet.config.num_text_tokens)
    elif context == "attributes":
        return HiGenUNet(dataclasses.replace(unet.config, attribute_values=tuple(len(v) for v in ATTRIBUTE_VALUES.values())))
    if label_embedding:
        if context != "oracle":
            raise SystemExit("--label-embedding needs --context oracle")
        return LabelEmbedding(unet)
    return unet


# ------------------------------------------------------------------------------------------- cache
def make_cache(out: Path, n: int, size_scale: float) -> None:
    """Middle frames of train-split world clips: scaled latents, MiniLM text features, attribute labels.
    ``size_scale`` != 1 draws the object that much larger (and nearer the centre, so it stays in view)."""
    pipe = HiGenPipeline.from_pretrained()
    frames, captions, attributes = [], [], []
    for i in range(n):
        spec, caption = world_clip(0, i, "train")
        if size_scale != 1.0:
            spec = dataclasses.replace(spec, size=spec.size * size_scale, direction="still", speed=0.0,
                                       start=(spec.start[0] * 0.6, spec.start[1] * 0.6))
        frames.append(render(spec, 1, 64, 64, start=0.5)[0])
        captions.append(caption)
        attributes.append(labels(spec))
    latents, text = [], []
    with torch.no_grad():
        for i in range(0, n, 64):
            x = to_unit_range(torch.from_numpy(np.stack(frames[i : i + 64])).permute(0, 3, 1, 2))
            latents.append(pipe.autoencoder.encode(x[:, :, None]))
            text.append(pipe.encode_prompts(captions[i : i + 64]))
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"latents": torch.cat(latents), "text": torch.cat(text), "attributes": torch.tensor(attributes),
                "null_text": pipe.encode_prompts([""])[0], "size_scale": size_scale}, out / "cache.pt")


# ------------------------------------------------------------------------------------------- train
def conditioning(context: str, data: dict, idx: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """What the replaced resampler reads: attribute indices (oracle) or text features, dropped ones nulled."""
    if context == "oracle":
        a = data["attributes"][idx].clone()
        a[drop] = NULL
        return a.float()
    t = data["text"][idx].clone()
    t[drop] = data["null_text"]
    return t


@torch.no_grad()
def judge_priors(unet: nn.Module, context: str, pipe: HiGenPipeline, n: int = 48, guidance: float = 4.0, offset: int = 0) -> dict:
    """Spatial priors of ``n`` held-out prompts from ``offset`` on (DPM-Solver++ 25 steps), judged."""
    specs, prompts = zip(*(world_clip(0, offset + i, "heldout") for i in range(n)))
    if context == "oracle":
        cond, uncond = torch.tensor([labels(s) for s in specs]).float(), NULL.expand(n, -1).float()
    else:
        cond, uncond = pipe.encode_prompts(list(prompts)), pipe.encode_prompts([""] * n)
    noise = torch.randn(n, 4, 1, 16, 16, generator=torch.Generator().manual_seed(1234))
    denoiser = guided_denoiser(unet, cond, uncond, Cues.spatial_stage(n), guidance)
    frames = pipe.decode(sample(denoiser, noise, make_sampler("dpm++", NoiseSchedule()), 25))
    found = [measure(np.repeat(f, 4, axis=0)) for f in frames]  # the judge reads clips: four copies of the frame
    colour_asked = [(m, s) for m, s in zip(found, specs) if s.change != "colour"]
    return {"shape": sum(m.shape == s.shape for m, s in zip(found, specs)),
            "colour": sum(m.colour == s.colour for m, s in colour_asked), "colour_of": len(colour_asked),
            "background": sum(m.background == s.background for m, s in zip(found, specs)), "n": n}


def start_from(unet: nn.Module, folder: Path, context: str) -> None:
    """Load a trained model folder's UNet into ``unet``; an oracle or direct context keeps its own fresh one."""
    trained = HiGenPipeline.from_pretrained(folder).unet.state_dict()
    if context != "resampler":
        trained = {k: v for k, v in trained.items() if not k.startswith("text_resampler.")}
    missing, unexpected = unet.load_state_dict(trained, strict=False)
    if unexpected or any(not k.startswith("text_resampler.") for k in missing):
        raise SystemExit(f"{folder} does not fit this UNet: missing {missing[:4]}, unexpected {unexpected[:4]}")


def caption_attributes(n: int) -> torch.Tensor:
    """The attributes the captions of the cache's ``n`` frames state (``attribute_labels``): the cache holds
    the middle frames of ``world_clip(0, i, "train")`` for i < n."""
    return torch.tensor(attribute_labels([world_clip(0, i, "train")[1] for i in range(n)]))


def train(out: Path, args) -> None:
    data = torch.load(Path(args.cache) / "cache.pt")
    if args.context == "attributes":
        said = caption_attributes(len(data["latents"]))
        not_said = torch.tensor([len(v) for v in ATTRIBUTE_VALUES.values()])
    unet = build(args.context, args.overrides, args.label_embedding).train()
    if args.decay_from is not None and not 0 <= args.decay_from < args.steps:
        raise SystemExit(f"--decay-from {args.decay_from} must be below --steps {args.steps}")
    if args.init and args.label_embedding:
        raise SystemExit("--init and --label-embedding do not combine")
    if args.init:
        start_from(unet, args.init, args.context)
    ema = build(args.context, args.overrides, args.label_embedding).eval()  # not a deepcopy: LabelEmbedding binds its UNet
    ema.load_state_dict(unet.state_dict())
    pipe = HiGenPipeline.from_pretrained()
    optimiser = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    loss_fn = VPredictionLoss(foreground_weight=8.0, snr_gamma=args.snr_gamma)  # the bundled recipe's loss
    generator = torch.Generator().manual_seed(0)
    quarters = [[] for _ in range(4)]
    first = 1
    if (out / "state.pt").is_file():  # resume where the last judgement left off
        state = torch.load(out / "state.pt", weights_only=False)
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        quarters, first = state["quarters"], state["step"] + 1
        print(f"resuming after step {state['step']}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({"context": args.context, "overrides": args.overrides, "label_embedding": args.label_embedding,
                                              "init": str(args.init) if args.init else None,
                                              "snr_gamma": args.snr_gamma, "timesteps": list(args.timesteps),
                                              "lr": args.lr, "warmup": args.warmup, "clip": args.clip,
                                              "decay_from": args.decay_from}))
    log, start = open(out / "log.jsonl", "a"), time.time()
    for step in range(first, args.steps + 1):
        for group in optimiser.param_groups:
            group["lr"] = args.lr * min(1.0, step / args.warmup)  # linear warm-up, then constant
            if args.decay_from is not None and step > args.decay_from:  # then linearly to zero at --steps
                group["lr"] *= (args.steps - step + 1) / (args.steps - args.decay_from)
        idx = torch.randint(0, len(data["latents"]), (args.batch,), generator=generator)
        drop = torch.rand(args.batch, generator=generator) < 0.1  # caption dropout, as the recipe
        t = torch.randint(*args.timesteps, (args.batch,), generator=generator)
        x0 = data["latents"][idx]
        noise = offset_noise(tuple(x0.shape), 0.1, generator=generator)
        text = conditioning(args.context, data, idx, drop)
        per_sample = loss_fn(lambda x, ts: unet(x, ts, text), x0, t, noise)
        loss = per_sample.mean()
        if args.context == "attributes":  # the parser's cross-entropy against what the captions say
            target = torch.where(drop[:, None], not_said, said[idx])
            loss = loss + sum(nn.functional.cross_entropy(logit, target[:, k])
                              for k, logit in enumerate(unet.text_resampler.logits(text)))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(unet.parameters(), args.clip)
        optimiser.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.lerp_(p, 1 - args.ema)
        for loss, ts in zip(per_sample.tolist(), t.tolist()):
            quarters[ts // 250].append(loss)
        record = {}
        if step % 50 == 0:
            record = {"step": step, "loss_by_quarter": [float(np.mean(q[-200:])) for q in quarters], "seconds": time.time() - start}
        if step % args.eval_every == 0 or step == args.steps:
            record = {"step": step, **record, "judged": judge_priors(ema, args.context, pipe)}
            torch.save(ema.state_dict(), out / "ema.pt")  # the latest judged EMA: what x0 probes
            torch.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "optimiser": optimiser.state_dict(),
                        "generator": generator.get_state(), "quarters": [q[-200:] for q in quarters], "step": step},
                       out / "state.pt.partial")
            (out / "state.pt.partial").replace(out / "state.pt")
        if record:
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()


# ---------------------------------------------------------------------------------------------- x0
def judged_shapes(pipe: HiGenPipeline, latents: torch.Tensor) -> list[str]:
    """The judge's shape of each decoded frame (it reads clips: four copies of the frame)."""
    return [measure(np.repeat(f, 4, axis=0)).shape for f in pipe.decode(latents)]


@torch.no_grad()
def x0_probe(run: Path, cache: Path, n: int = 48) -> None:
    """One-step clean predictions of noised true frames at five noise levels, judged, with the true shape
    token and with another shape's (oracle runs only): which shape do they show?"""
    settings = json.loads((run / "run.json").read_text())
    unet = build(settings["context"], settings["overrides"], settings.get("label_embedding", False)).eval()
    unet.load_state_dict(torch.load(run / "ema.pt"))
    if settings["context"] != "oracle":
        raise SystemExit("x0 swaps the shape token: it needs an oracle run")
    data, pipe = torch.load(cache / "cache.pt"), HiGenPipeline.from_pretrained()
    x0, true = data["latents"][:n], data["attributes"][:n]
    wrong = true.clone()
    wrong[:, 0] = (true[:, 0] + 1 + torch.arange(n) % 5) % len(SHAPES)  # every other shape, in turn
    alphas = NoiseSchedule().alphas_cumprod().float()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    print(json.dumps({"clean latents": sum(s == SHAPES[i] for s, i in zip(judged_shapes(pipe, x0), true[:, 0].tolist()))}))
    for level in (100, 300, 500, 700, 900):
        t = torch.full((n,), level)
        x_t = q_sample(alphas, x0, t, noise)
        row = {"t": level}
        for name, token in (("true token", true), ("wrong token", wrong)):
            v = unet(x_t, t, token.float())
            drawn = judged_shapes(pipe, predicted_x0(alphas, x_t, t, v))
            row[name] = {"true shape": sum(d == SHAPES[i] for d, i in zip(drawn, true[:, 0].tolist())),
                         "token's shape": sum(d == SHAPES[i] for d, i in zip(drawn, token[:, 0].tolist()))}
        print(json.dumps(row), flush=True)


def swapped_shape_captions(n: int) -> tuple[list, list[str], list[str], list[str]]:
    """The first ``n`` held-out clips: specs, captions, and the same captions (same wording draws) naming
    another shape, with that shape."""
    specs, true, swapped, other = [], [], [], []
    for i in range(n):
        rng = np.random.default_rng([0, SPLITS.index("heldout"), i])  # world_clip's generator, reused for both captions
        spec = sample_spec(rng, "heldout")
        twin = copy.deepcopy(rng)
        shape = SHAPES[(SHAPES.index(spec.shape) + 1 + i % 5) % len(SHAPES)]  # every other shape, in turn
        specs.append(spec), true.append(make_caption(spec, rng)), other.append(shape)
        swapped.append(make_caption(dataclasses.replace(spec, shape=shape), twin))
    return specs, true, swapped, other


@torch.no_grad()
def word_probe(model: Path | None, n: int = 96) -> None:
    """``x0`` for a model folder: does the caption's shape word steer one-step clean predictions?"""
    pipe = HiGenPipeline.from_pretrained(model)
    specs, true, swapped, other = swapped_shape_captions(n)
    frames = torch.from_numpy(np.stack([render(s, 1, 64, 64, start=0.5)[0] for s in specs]))
    pixels = to_unit_range(frames.permute(0, 3, 1, 2))[:, :, None]
    x0 = torch.cat([pipe.autoencoder.encode(pixels[i : i + 32]) for i in range(0, n, 32)])
    alphas = NoiseSchedule().alphas_cumprod().float()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    print(json.dumps({"clean latents": sum(d == s.shape for d, s in zip(judged_shapes(pipe, x0), specs)), "n": n}))
    for level in (100, 300, 500, 700, 900):
        t = torch.full((n,), level)
        x_t = q_sample(alphas, x0, t, noise)
        row = {"t": level}
        for name, captions, asked in (("true word", true, [s.shape for s in specs]), ("swapped word", swapped, other)):
            v = pipe.unet(x_t, t, text=pipe.encode_prompts(captions), **Cues.spatial_stage(n).unet_kwargs())
            drawn = judged_shapes(pipe, predicted_x0(alphas, x_t, t, v))
            row[name] = {"true shape": sum(d == s.shape for d, s in zip(drawn, specs)),
                         "word's shape": sum(d == a for d, a in zip(drawn, asked))}
        print(json.dumps(row), flush=True)


@torch.no_grad()
def detail_probe(cache: Path, n: int = 96) -> None:
    """How fine is the detail that carries the shape? Clean cached latents, perturbed by Gaussian noise of
    a few sizes and by a 3 x 3 box blur, decoded and judged."""
    data, pipe = torch.load(cache / "cache.pt"), HiGenPipeline.from_pretrained()
    x0, true = data["latents"][:n], [SHAPES[i] for i in data["attributes"][:n, 0].tolist()]
    generator = torch.Generator().manual_seed(0)
    for sigma in (0.0, 0.1, 0.3, 0.5):
        drawn = judged_shapes(pipe, x0 + sigma * torch.randn(x0.shape, generator=generator))
        print(json.dumps({"noise sigma": sigma, "true shape": sum(d == s for d, s in zip(drawn, true)), "n": n}), flush=True)
    padded = nn.functional.pad(x0[:, :, 0], (1, 1, 1, 1), mode="replicate")
    blurred = nn.functional.avg_pool2d(padded, 3, stride=1)[:, :, None]
    drawn = judged_shapes(pipe, blurred)
    print(json.dumps({"box blur": 3, "true shape": sum(d == s for d, s in zip(drawn, true)), "n": n}), flush=True)


# ------------------------------------------------------------------------------------------ parsed
def parsed_probe(run: Path, cache: Path, steps: int = 1500) -> None:
    """An oracle run read through text: a parser (the attribute context's, from MiniLM's token states) is trained
    by cross-entropy to name each cached caption's shape, colour and background, and its softmax mixes the
    oracle's own value tokens. The priors of held-out prompts are judged with the oracle's labels and with the
    parsed captions, on two sets of 48."""
    settings = json.loads((run / "run.json").read_text())
    if settings["context"] != "oracle":
        raise SystemExit("parsed reads an oracle run's tokens through text: it needs an oracle run")
    unet = build("oracle", settings["overrides"]).eval()
    unet.load_state_dict(torch.load(run / "ema.pt"))
    oracle = unet.text_resampler
    torch.manual_seed(0)
    parser = AttributeContext(unet.config.text_dim, unet.config.context_dim, tuple(len(v) for v in VOCAB))
    data, pipe = torch.load(cache / "cache.pt"), HiGenPipeline.from_pretrained()
    optimiser = torch.optim.AdamW([p for n, p in parser.named_parameters() if not n.startswith("tables")], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(data["text"]), (128,), generator=generator)
        drop = torch.rand(128, generator=generator) < 0.1
        text, target = conditioning("direct", data, idx, drop), conditioning("oracle", data, idx, drop).long()
        loss = sum(nn.functional.cross_entropy(logit, target[:, k]) for k, logit in enumerate(parser.logits(text)))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        for k, table in enumerate(oracle.tables):
            parser.tables[k].copy_(table.weight)
    for offset in (0, 100000):
        for name, path in (("labels", oracle), ("parsed captions", parser)):
            unet.text_resampler = path
            row = {"held-out set": offset, "context": name,
                   "judged": judge_priors(unet, "oracle" if path is oracle else "text", pipe, offset=offset)}
            print(json.dumps(row), flush=True)


def priors_probe(model: Path | None, sets: int) -> None:
    """A model folder's spatial stage, judged as ``train`` judges: the priors of ``sets`` sets of 48 held-out prompts."""
    pipe = HiGenPipeline.from_pretrained(model)
    for offset in range(0, 100000 * sets, 100000):
        print(json.dumps({"held-out set": offset, "judged": judge_priors(pipe.unet, "text", pipe, offset=offset)}), flush=True)


# ----------------------------------------------------------------------------------------- context
def linear_probe(x: torch.Tensor, y: torch.Tensor, fit: int) -> float:
    """Held-out accuracy of a multinomial logistic regression fitted on the first ``fit`` rows."""
    x = (x - x[:fit].mean(0)) / (x[:fit].std(0) + 1e-6)
    head = nn.Linear(x.shape[1], int(y.max()) + 1)
    optimiser = torch.optim.LBFGS(head.parameters(), max_iter=200)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(head(x[:fit]), y[:fit]) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return (head(x[fit:]).argmax(1) == y[fit:]).float().mean().item()


def variance_share(x: torch.Tensor, y: torch.Tensor) -> float:
    """The share of ``x``'s variance (rows are samples) that the group means of labels ``y`` explain."""
    x = x.flatten(1).double()
    mean = x.mean(0)
    between = sum((y == g).double().mean() * (x[y == g].mean(0) - mean).pow(2).sum() for g in y.unique())
    return float(between / (x - mean).pow(2).sum(1).mean())


def context_probe(run: Path, cache: Path, n: int = 4000, fit: int = 3000) -> None:
    """What a text run's context carries: its tokens' norm, how alike different captions' contexts are, how
    much of its variance each attribute explains (the rest is wording, motion and size), and how often a
    linear probe reads each attribute from it (against MiniLM's pooled token states). An oracle's context is
    one token per attribute: each explains a third of its variance."""
    config = json.loads((run / "run.json").read_text())
    if config["context"] == "oracle":
        raise SystemExit("context probes a text run (direct, pooled or resampler)")
    data = torch.load(cache / "cache.pt")
    text, attributes = data["text"][:n], data["attributes"][:n]
    unet = build(config["context"], config["overrides"]).eval()
    unet.load_state_dict(torch.load(run / "ema.pt"))
    with torch.no_grad():
        context = torch.cat([unet.text_resampler(text[i : i + 500]) for i in range(0, n, 500)])
    pooled = sentence_mean(text)
    unit = nn.functional.normalize(context[:256].flatten(1), dim=-1)
    cosine = ((unit @ unit.T).sum() - len(unit)) / (len(unit) * (len(unit) - 1))
    row = {"token norm": round(context.norm(dim=-1).mean().item(), 2), "cosine between captions": round(cosine.item(), 3)}
    row["variance share"] = {attr: round(variance_share(context, attributes[:, k]), 3) for k, attr in enumerate(("shape", "colour", "background"))}
    for name, x in (("context", context.flatten(1)), ("MiniLM pooled", pooled)):
        row[name] = {attr: round(linear_probe(x, attributes[:, k], fit), 3) for k, attr in enumerate(("shape", "colour", "background"))}
    print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache")
    c.add_argument("out", type=Path)
    c.add_argument("--n", type=int, default=8000)
    c.add_argument("--size-scale", type=float, default=1.0)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("--cache", type=Path, required=True)
    t.add_argument("--context", choices=("oracle", "direct", "pooled", "resampler", "attributes"), required=True)
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--ema", type=float, default=0.995)
    t.add_argument("--warmup", type=int, default=100, help="linear warm-up steps of the learning rate")
    t.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    t.add_argument("--decay-from", type=int, help="from this step the learning rate falls linearly to zero at --steps")
    t.add_argument("--eval-every", type=int, default=250)
    t.add_argument("--label-embedding", action="store_true", help="oracle only: the labels also reach every ResBlock")
    t.add_argument("--timesteps", type=int, nargs=2, default=(0, 1000), metavar=("LOW", "HIGH"),
                   help="train on t in [LOW, HIGH) only (a probe of the x0 window; such a model cannot sample)")
    t.add_argument("--init", type=Path, help="start from this model folder's UNet (a fresh oracle or direct context)")
    t.add_argument("--snr-gamma", type=float, default=0.0, help="Min-SNR-gamma loss weights (0: off, the bundled recipe)")
    t.add_argument("overrides", nargs="*", help="config overrides of configs/bundled/higen.yaml, e.g. model.unet.attention_levels=[0,1,2]")
    x = sub.add_parser("x0")
    x.add_argument("run", type=Path)
    x.add_argument("--cache", type=Path, required=True)
    w = sub.add_parser("words")
    w.add_argument("model", type=Path, nargs="?", help="a model folder (default: the bundled model)")
    w.add_argument("--n", type=int, default=96)
    q = sub.add_parser("priors")
    q.add_argument("model", type=Path, nargs="?", help="a model folder (default: the bundled model)")
    q.add_argument("--sets", type=int, default=2)
    r = sub.add_parser("parsed")
    r.add_argument("run", type=Path)
    r.add_argument("--cache", type=Path, required=True)
    p = sub.add_parser("context")
    p.add_argument("run", type=Path)
    p.add_argument("--cache", type=Path, required=True)
    d = sub.add_parser("detail")
    d.add_argument("cache", type=Path)
    d.add_argument("--n", type=int, default=96)
    args = parser.parse_args()
    if args.command == "cache":
        make_cache(args.out, args.n, args.size_scale)
    elif args.command == "train":
        train(args.out, args)
    elif args.command == "words":
        word_probe(args.model, args.n)
    elif args.command == "priors":
        priors_probe(args.model, args.sets)
    elif args.command == "parsed":
        parsed_probe(args.run, args.cache)
    elif args.command == "context":
        context_probe(args.run, args.cache)
    elif args.command == "detail":
        detail_probe(args.cache, args.n)
    else:
        x0_probe(args.run, args.cache)


if __name__ == "__main__":
    main()
