"""Where does a model lose a prompt's colour, shape and direction? (docs/bundled_model.md, "Why shape / direction is at chance")

Two probes of the spatial stage (stage 1: text -> one frame) and one of the temporal stage, on world clips of
the train and held-out splits.

``priors``: generates the spatial prior alone (no temporal stage) for ``--n`` prompts per split and judges its
colour and shape. Train prompts are combinations the model was trained on, so a shape that is wrong there
is not learned at all rather than not generalised.

``words``: how much the model's denoising loss depends on each caption word. For ``--n`` clips it renders
the middle frame, noises its latent at several noise levels and compares the (foreground-weighted, as in
training) v-prediction loss with the true caption, the caption with its shape word swapped for another
shape, with its colour word swapped, and the empty caption. A model that reads a word from the text pays
for the swap; a ratio near 1 means the word is ignored at that noise level.

``directions``: the temporal stage's version of ``words``. For ``--n`` moving clips it noises the whole
clip's latents and compares the loss with the true caption, with the direction word swapped for the
opposite one, and with the empty caption, the clip's own middle frame given as the spatial prior and its
measured motion and appearance cues given as in training. A ratio near 1 for the swap means the temporal
stage does not read the direction word.

``changes``: the same for colour changes. For ``--n`` clips whose object changes colour it compares the loss
with the true caption, with the end colour swapped for another colour, and with the empty caption. The prior
(the middle frame) shows the object half-way through its change, so only the text tells the colour it ends in.

``change-cue``: generates ``--n`` prompts asking for a colour change at each appearance value of ``--values``
and judges their start colour, end colour and change class: does a stronger appearance cue make the temporal
stage carry out the change the text names?

``context``: where a word is lost on the way into the UNet. For ``--n`` captions of moving clips it swaps the
direction (for the opposite one), the colour and the shape word and reports how far each swap moves the
text encoder's token states and the UNet's resampled text context (``text_resampler``, the release's
``context_embedding``), relative to the true caption's. A word the encoder distinguishes but the context
barely changes with is dropped by the resampler's learned queries.

``cache``: is a world video cache (``higen train-cache ... --kind video data.source=world``) what training
should see? For ``--n`` rows spread over it: the row's caption is the world's caption of its source index,
its text features are the caption's, and its latents, decoded with the model's autoencoder, are judged to
move the way the caption says and to have its colour.

    python scripts/stage_probe.py priors --n 48
    python scripts/stage_probe.py directions --n 32
    python scripts/stage_probe.py changes --n 32 --noise-levels 300 700 900 950 999
    python scripts/stage_probe.py change-cue --n 12 --split heldout
    python scripts/stage_probe.py context --n 64
    python scripts/stage_probe.py cache --n 48 --cache runs/bundled_cache/videos
    python scripts/stage_probe.py words --n 96 --model runs/my_model/model
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from collections.abc import Sequence

import numpy as np
import torch
from safetensors import safe_open

from higen import HiGenPipeline
from higen.cues import motion_from_latents
from higen.encoders.histogram import HistogramEmbedder
from higen.training.conditioning import DEFAULT_APPEARANCE_SCALE, appearance_cue
from higen.training.loss import VPredictionLoss
from higen.world.captions import parse_prompt, replace_attribute
from higen.world.dataset import world_clip
from higen.world.judge import measure
from higen.world.render import render
from higen.world.spec import COLOURS, OPPOSITE_DIRECTION, SHAPES

SPLITS = ("heldout", "train")
NOISE_LEVELS = (100, 300, 500, 700, 900)


def other(names: Sequence[str], value: str, offset: int) -> str:
    """A name other than ``value``, cycling through the rest with ``offset``."""
    rest = [name for name in names if name != value]
    return rest[offset % len(rest)]


def probe_priors(pipe: HiGenPipeline, n: int, guidance: float | None, batch: int) -> None:
    for split in SPLITS:
        clips = [world_clip(0, i, split) for i in range(n)]
        hits, shapes = collections.Counter(), collections.Counter()
        for start in range(0, n, batch):
            chunk = clips[start:start + batch]
            with torch.inference_mode():
                out = pipe([prompt for _, prompt in chunk], frames=2, temporal_steps=1, spatial_guidance=guidance, seed=start)
            for keyframe, (spec, _) in zip(out.keyframe, chunk):
                m = measure(np.repeat(keyframe[None], 4, axis=0))  # the judge reads clips: a still one
                hits["colour"] += m.colour == spec.colour
                hits["shape"] += m.shape == spec.shape
                shapes[m.shape] += 1
        print(f"{split}: colour {hits['colour']}/{n}, shape {hits['shape']}/{n}; shapes drawn: {dict(shapes)}", flush=True)


def probe_words(pipe: HiGenPipeline, n: int, split: str, levels: Sequence[int] = NOISE_LEVELS) -> None:
    d, unet = pipe.defaults, pipe.unet.eval()
    captions: dict[str, list[str]] = {"true": [], "shape swapped": [], "colour swapped": [], "empty": []}
    frames = []
    for i in range(4 * n):
        if len(frames) == n:
            break
        spec, caption = world_clip(0, i, split)
        shape = replace_attribute(caption, "shape", other(SHAPES, spec.shape, i))
        colour = replace_attribute(caption, "colour", other(list(COLOURS), spec.colour, i))
        if shape is None or colour is None:
            continue
        for key, text in zip(captions, (caption, shape, colour, "")):
            captions[key].append(text)
        clip = render(spec, d.frames, d.height, d.width)
        frames.append(clip[len(clip) // 2])
    b = len(frames)
    print(f"{b} {split} clips, e.g. {captions['true'][0]!r} -> {captions['shape swapped'][0]!r} / {captions['colour swapped'][0]!r}")
    pixels = torch.from_numpy(np.stack(frames)).float().div(127.5).sub(1).permute(0, 3, 1, 2)[:, :, None]
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        x0 = pipe.autoencoder.encode(pixels.to(pipe.device, pipe.dtype)).float()
        texts = {key: pipe.encode_prompts(value) for key, value in captions.items()}
        cues = dict(spatial_prior=x0.new_zeros(b, x0.shape[1], *x0.shape[-2:]), motion=x0.new_zeros(b),
                    appearance=x0.new_ones(b, 1, unet.config.appearance_width))
        loss_table(pipe, x0, texts, cues, generator, levels)


def loss_table(pipe: HiGenPipeline, x0: torch.Tensor, texts: dict[str, torch.Tensor], cues: dict, generator: torch.Generator,
               levels: Sequence[int] = NOISE_LEVELS) -> None:
    """Print the foreground-weighted v-loss of ``x0`` under each caption (the first is the reference) at
    each of the noise ``levels``, with the same noise for all."""
    b, keys = x0.shape[0], list(texts)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    loss = VPredictionLoss(pipe.schedule, foreground_weight=8.0)
    print("noise level  " + "  ".join(f"{key:>15s}" for key in keys) + f"   (loss; swaps as a ratio to the {keys[0]} caption's)")
    for t in levels:
        timesteps = torch.full((b,), t, device=x0.device)
        values = {key: float(loss(pipe.unet, x0, timesteps, noise, text=text, **cues).mean()) for key, text in texts.items()}
        cells = [f"{values[keys[0]]:15.4f}"] + [f"{values[key]:8.4f} x{values[key] / values[keys[0]]:5.2f}" for key in keys[1:]]
        print(f"{t:11d}  " + "  ".join(cells), flush=True)


def swapped_clips(pipe: HiGenPipeline, n: int, split: str, label: str, swap, search: int) -> tuple[dict[str, list[str]], list]:
    """The first ``n`` clips of ``split`` (among the first ``search``) for which ``swap(spec, caption, index)``
    gives a changed caption (None skips the clip), rendered at the model's defaults, and their captions: true,
    ``label`` (the swapped ones) and empty."""
    d = pipe.defaults
    captions: dict[str, list[str]] = {"true": [], label: [], "empty": []}
    clips = []
    for i in range(search):
        if len(clips) == n:
            break
        spec, caption = world_clip(0, i, split)
        swapped = swap(spec, caption, i)
        if swapped is None:
            continue
        for key, text in zip(captions, (caption, swapped, "")):
            captions[key].append(text)
        clips.append(render(spec, d.frames, d.height, d.width))
    return captions, clips


def probe_directions(pipe: HiGenPipeline, n: int, split: str, levels: Sequence[int] = NOISE_LEVELS) -> None:
    d = pipe.defaults
    pipe.unet.eval()

    def turn(spec, caption, i):
        return None if spec.direction == "still" else replace_attribute(caption, "direction", OPPOSITE_DIRECTION[spec.direction])

    captions, clips = swapped_clips(pipe, n, split, "direction swapped", turn, 20 * n)
    b = len(clips)
    print(f"{b} moving {split} clips, e.g. {captions['true'][0]!r} -> {captions['direction swapped'][0]!r}")
    video_loss_table(pipe, clips, captions, levels)
    if pipe.unet.position_embed is not None:
        # A direction needs the sign of (frame - middle frame); an embedding that is the same for frames
        # i and F-1-i only tells how far a frame is from the prior.
        with torch.inference_mode():
            pos = pipe.unet.position_embedding(1, d.frames, pipe.device).float()
        mirror = (pos - pos.flip(0)).norm(dim=-1) / pos.norm(dim=-1)
        print("frame position: |e(i) - e(F-1-i)| / |e(i)|, i = 0.." + str(d.frames // 2 - 1) + ": "
              + " ".join(f"{v:.2f}" for v in mirror[: d.frames // 2].tolist()))


def probe_changes(pipe: HiGenPipeline, n: int, split: str, levels: Sequence[int] = NOISE_LEVELS) -> None:
    """``directions`` for colour changes: does the temporal stage read the colour a change ends in? The prior
    (the middle frame) shows the object half-way through the change, so only the text tells the end colour."""
    pipe.unet.eval()

    def recolour(spec, caption, i):
        if spec.change != "colour":
            return None
        return replace_attribute(caption, "end_colour", other([c for c in COLOURS if c != spec.colour], spec.end_colour, i))

    captions, clips = swapped_clips(pipe, n, split, "end colour swapped", recolour, 40 * n)
    print(f"{len(clips)} colour-changing {split} clips, e.g. {captions['true'][0]!r} -> {captions['end colour swapped'][0]!r}")
    video_loss_table(pipe, clips, captions, levels)


def probe_change_cue(pipe: HiGenPipeline, n: int, split: str, values: Sequence[float]) -> None:
    """Generate ``n`` prompts of ``split`` that ask for a colour change at each appearance value and judge them:
    does a larger appearance cue make the temporal stage carry out the change the text names?"""
    from higen.world.evaluate import world_prompts
    from higen.world.judge import score

    prompts = world_prompts(n, split, 0, lambda a: a["change"] == "colour")
    print(f"{n} {split} prompts asking for a colour change, e.g. {prompts[0]!r}")
    for value in values:
        with torch.inference_mode():
            out = pipe(prompts, seed=0, appearance=value)
        scores = [score(p, v) for p, v in zip(prompts, np.asarray(out.video))]
        right = {a: sum(s["results"][a] == "correct" for s in scores) for a in ("colour", "end_colour", "change")}
        change = np.mean([s["measured"]["colour_change"] for s in scores])
        print(f"appearance {value:g}: start colour {right['colour']}/{n}, end colour {right['end_colour']}/{n}, "
              f"change class {right['change']}/{n}; mean start-to-end colour difference {change:.1f} (Delta E)", flush=True)


def video_loss_table(pipe: HiGenPipeline, clips: Sequence[np.ndarray], captions: dict[str, list[str]],
                     levels: Sequence[int] = NOISE_LEVELS) -> None:
    """:func:`loss_table` of uint8 ``f h w 3`` clips as the temporal stage sees them in training: the clip's
    middle frame as the prior, its measured motion and appearance cues."""
    pixels = torch.from_numpy(np.stack(clips)).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)  # b 3 f H W
    with torch.inference_mode():
        x0 = pipe.autoencoder.encode(pixels.to(pipe.device, pipe.dtype)).float()
        texts = {key: pipe.encode_prompts(value) for key, value in captions.items()}
        appearance = appearance_cue(HistogramEmbedder().embed(pixels), DEFAULT_APPEARANCE_SCALE["histogram"])
        cues = dict(spatial_prior=x0[:, :, x0.shape[2] // 2], motion=motion_from_latents(x0), appearance=appearance.to(x0.device))
        loss_table(pipe, x0, texts, cues, torch.Generator().manual_seed(0), levels)


def probe_context(pipe: HiGenPipeline, n: int, split: str) -> None:
    captions: dict[str, list[str]] = {"true": [], "direction": [], "colour": [], "shape": []}
    for i in range(20 * n):
        if len(captions["true"]) == n:
            break
        spec, caption = world_clip(0, i, split)
        if spec.direction == "still":
            continue
        swaps = [replace_attribute(caption, "direction", OPPOSITE_DIRECTION[spec.direction]),
                 replace_attribute(caption, "colour", other(list(COLOURS), spec.colour, i)),
                 replace_attribute(caption, "shape", other(SHAPES, spec.shape, i))]
        if None in swaps:
            continue
        for key, text in zip(captions, (caption, *swaps)):
            captions[key].append(text)
    unet = pipe.unet.eval()
    with torch.inference_mode():
        states = {key: pipe.encode_prompts(texts).float() for key, texts in captions.items()}
        context = {key: unet.text_resampler(value.to(unet.dtype)).float() for key, value in states.items()}

    def moved(x: dict[str, torch.Tensor], key: str) -> float:
        return float(((x["true"] - x[key]).norm(dim=(1, 2)) / x["true"].norm(dim=(1, 2))).mean())

    print(f"{len(captions['true'])} moving {split} captions; |true - swapped| / |true|, mean over captions:")
    print(f"{'word swapped':14s} {'text states':>12s} {'resampled':>10s}")
    for key in list(captions)[1:]:
        print(f"{key:14s} {moved(states, key):12.3f} {moved(context, key):10.3f}")


def probe_cache(pipe: HiGenPipeline, n: int, folder: Path, split: str) -> None:
    if not (folder / "cache.json").is_file():
        raise SystemExit(f"{folder} is not a latent cache (no cache.json); build one with higen train-cache")
    info = json.loads((folder / "cache.json").read_text())
    if info.get("kind") != "video":
        raise SystemExit(f"{folder}: the cache probe reads video caches; this one holds {info.get('kind')!r} rows")
    tally: collections.Counter = collections.Counter()
    rows = np.linspace(0, info["count"] - 1, n).round().astype(int)
    for row in rows.tolist():
        shard, offset = divmod(row, info["shard_size"])
        with safe_open(str(folder / info["shards"][shard]), framework="pt") as handle:
            meta = handle.metadata()
            caption, index = json.loads(meta["captions"])[offset], json.loads(meta["indices"])[offset]
            latents, text = handle.get_slice("latents")[offset:offset + 1], handle.get_slice("text")[offset:offset + 1]
        spec, world_caption = world_clip(info["seed"], index, split)
        with torch.inference_mode():
            features = pipe.encode_prompts([caption]).float().cpu()
            measured = measure(pipe.decode(latents)[0])
        tally["caption is the world's"] += caption == world_caption
        tally["text features match"] += bool(torch.allclose(features, text.float(), atol=1e-4))
        tally["caption's direction = clip's"] += parse_prompt(caption)["direction"] == spec.direction
        tally["judged direction = caption's"] += measured.direction == parse_prompt(caption)["direction"]
        tally["judged colour = caption's"] += measured.colour == parse_prompt(caption)["colour"]
    print(f"{len(rows)} rows of {folder} ({info['count']}), {split} split:")
    for key, value in tally.items():
        print(f"  {key:30s} {value}/{len(rows)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("probe", choices=("priors", "words", "directions", "changes", "change-cue", "context", "cache"))
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--n", type=int, default=48, help="prompts per split (priors), clips (words, directions, changes, cache) or captions (context)")
    p.add_argument("--split", default="train", choices=SPLITS, help="words, directions, changes, context, cache: the clips' split")
    p.add_argument("--guidance", type=float, help="priors: spatial guidance (default: the model's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--noise-levels", type=int, nargs="+", default=list(NOISE_LEVELS),
                   help="words, directions, changes: timesteps to compare the losses at (a direction pays mostly at t >= 900)")
    p.add_argument("--values", type=float, nargs="+", default=[0.03, 0.135, 0.4, 0.66, 1.0],
                   help="change-cue: appearance values (default: the training percentiles 50/75 and up to 1)")
    p.add_argument("--cache", type=Path, default=Path("runs/bundled_cache/videos"), help="cache: the video cache folder")
    args = p.parse_args()
    if args.n < 1 or args.batch_size < 1:
        p.error("--n and --batch-size must be at least 1")
    pipe = HiGenPipeline.from_pretrained(args.model)  # None: the bundled model
    if args.probe == "priors":
        probe_priors(pipe, args.n, args.guidance, args.batch_size)
    elif args.probe == "words":
        probe_words(pipe, args.n, args.split, args.noise_levels)
    elif args.probe == "directions":
        probe_directions(pipe, args.n, args.split, args.noise_levels)
    elif args.probe == "changes":
        probe_changes(pipe, args.n, args.split, args.noise_levels)
    elif args.probe == "change-cue":
        probe_change_cue(pipe, args.n, args.split, args.values)
    elif args.probe == "context":
        probe_context(pipe, args.n, args.split)
    else:
        probe_cache(pipe, args.n, args.cache, args.split)


if __name__ == "__main__":
    main()
