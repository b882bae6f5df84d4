"""Can a model learn to read the direction word when the text is the only way to tell clips apart?
(docs/bundled_model.md, "Why direction is at chance")

Builds ``groups`` x 4 world clips: in each group one object (a train clip's shape, colour, background,
speed, size) sits at the image centre in the middle frame and moves left, right, up or down, so the four
clips share their spatial prior and differ only in the direction and its word in the caption. Fine-tune on them
(video steps only) and compare the loss under the true caption, the reversed direction and the empty one:

    python scripts/direction_fit.py cache runs/direction_cache --groups 4
    higen train --config configs/bundled/higen.yaml model.init=folder model.path=higen/assets/bundled_model \\
        data.videos=runs/direction_cache cues.image_probability=0.0 "loss.timesteps=[900,1000]" \\
        optim.lr=3e-4 optim.warmup_steps=20 optim.schedule=constant train.max_steps=300 checkpoint.every=60 \\
        train.output_dir=runs/dirhi_shipped
    higen train-export runs/dirhi_shipped/checkpoints/step_0000240 runs/eval/dirhi_240
    python scripts/direction_fit.py probe --groups 4 --model runs/eval/dirhi_240
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np

import higen.world.dataset
from higen import HiGenPipeline
from higen.world.captions import make_caption, replace_attribute
from higen.world.render import render
from higen.world.spec import CLIP_SECONDS, OPPOSITE_DIRECTION

DIRECTIONS = ("left", "right", "up", "down")


def clips(groups: int, skip: int = 0) -> list[tuple]:
    """``groups * 4`` (spec, caption): group g's four directions of the (skip + g)-th moving, unchanging train
    clip. A probe with ``skip`` past the groups a model was fine-tuned on asks whether it learned the word or
    the groups."""
    bases, index, seen = [], 0, 0
    while len(bases) < groups:
        spec, _ = higen.world.dataset.world_clip(0, index, "train")
        index += 1
        if spec.direction != "still" and spec.change == "none":
            if seen >= skip:
                bases.append(spec)
            seen += 1
    out = []
    for g, base in enumerate(bases, start=skip):
        for k, direction in enumerate(DIRECTIONS):
            spec = dataclasses.replace(base, direction=direction, start=(0.0, 0.0))
            vx, vy = spec.velocity()
            # centre at clip time 0.5 (the middle frame, the prior) is the image centre for all four
            spec = dataclasses.replace(spec, start=(-0.5 * vx * CLIP_SECONDS, -0.5 * vy * CLIP_SECONDS))
            # one caption draw per group: the four captions differ in the direction word only, so a model
            # cannot tell the clips apart by their wording
            out.append((spec, make_caption(spec, np.random.default_rng([g]))))
    return out


def cache_clips(out: Path, chosen: list[tuple], config: str) -> None:
    """Encode the world clips ``chosen`` ((spec, caption) pairs, in order) into a video latent cache at ``out``
    with ``config``'s encoders (scripts/change_fit.py uses this too)."""
    from higen.training.cache import build_training_cache
    from higen.training.config import TrainConfig, load_config

    # WorldDataset draws its clips from higen.world.dataset.world_clip: serve these instead.
    higen.world.dataset.world_clip = lambda seed, index, split="train": chosen[index]
    cfg = load_config(config, ["data.source=world", f"data.length={len(chosen)}"], TrainConfig)
    build_training_cache(cfg, out, "video", batch_size=min(len(chosen), 64))
    print(f"{len(chosen)} clips written to {out}, e.g. {chosen[0][1]!r}")


def write_cache(out: Path, groups: int, config: str, skip: int = 0) -> None:
    cache_clips(out, clips(groups, skip), config)


def probe(model: str | None, groups: int, levels: list[int], skip: int = 0) -> None:
    spec = importlib.util.spec_from_file_location("stage_probe", Path(__file__).with_name("stage_probe.py"))
    stage_probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage_probe)
    pipe = HiGenPipeline.from_pretrained(model) if model else HiGenPipeline.from_pretrained()
    d = pipe.defaults
    pipe.unet.eval()
    chosen = clips(groups, skip)
    captions = {"true": [c for _, c in chosen], "direction reversed": [], "empty": [""] * len(chosen)}
    for s, c in chosen:
        turned = replace_attribute(c, "direction", OPPOSITE_DIRECTION[s.direction])
        if turned is None:
            raise ValueError(f"no direction word found in {c!r}")
        captions["direction reversed"].append(turned)
    print(f"{len(chosen)} clips, e.g. {captions['true'][0]!r} -> {captions['direction reversed'][0]!r}")
    stage_probe.video_loss_table(pipe, [render(s, d.frames, d.height, d.width) for s, _ in chosen], captions, levels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="write the clips as a latent cache")
    c.add_argument("out", type=Path)
    c.add_argument("--config", default="configs/bundled/higen.yaml", help="the training config whose encoders to use")
    q = sub.add_parser("probe", help="loss under the true, reversed and empty captions")
    q.add_argument("--model", help="model folder (default: the bundled model)")
    q.add_argument("--noise-levels", type=int, nargs="+", default=[100, 300, 500, 700, 900, 950, 980, 999],
                   help="timesteps to compare the losses at")
    for a in (c, q):
        a.add_argument("--groups", type=int, default=4, help="objects; four directions each")
        a.add_argument("--skip", type=int, default=0, help="start at this object (probe groups a fine-tune never saw)")
    args = p.parse_args()
    if args.command == "cache":
        write_cache(args.out, args.groups, args.config, args.skip)
    else:
        probe(args.model, args.groups, args.noise_levels, args.skip)


if __name__ == "__main__":
    main()
