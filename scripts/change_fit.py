"""Can the temporal stage learn to read the colour a colour change ends in? (docs/bundled_model.md, "Why colour
stops at 82 %")

The spatial prior is the clip's middle frame, which shows a colour-changing object half-way round the hue
wheel, so the colours at the clip's start and end can only come from the text. ``cache`` writes a latent cache
of the first ``--changes`` train clips whose object changes colour, interleaved with the first ``--plain``
ordinary train clips (0 for a cache of colour changes only); fine-tune on it and probe with
``scripts/stage_probe.py changes`` (train clips: the ones fine-tuned on; held-out: never seen):

    python scripts/change_fit.py cache runs/colourchange_1024 --changes 1024
    higen train --config configs/bundled/higen.yaml model.init=folder model.path=higen/assets/bundled_model \\
        data.videos=runs/colourchange_1024 cues.image_probability=0.0 "loss.timesteps=[900,1000]" \\
        optim.lr=3e-4 optim.warmup_steps=20 optim.schedule=constant train.max_steps=400 checkpoint.every=100 \\
        train.output_dir=runs/colourchange_ft
    higen train-export runs/colourchange_ft/checkpoints/step_0000400 runs/eval/colourchange_400
    python scripts/stage_probe.py changes --n 32 --split heldout --model runs/eval/colourchange_400 \\
        --noise-levels 300 700 900 950 999
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import higen.world.dataset


def clips(changes: int, plain: int = 0) -> list[tuple]:
    """(spec, caption) of the first ``changes`` colour-changing train clips and the first ``plain`` train clips
    (of every kind), interleaved plain, change, plain, change, ..."""
    world_clip = higen.world.dataset.world_clip
    changing, index = [], 0
    while len(changing) < changes:
        spec, caption = world_clip(0, index, "train")
        index += 1
        if spec.change == "colour":
            changing.append((spec, caption))
    ordinary = [world_clip(0, i, "train") for i in range(plain)]
    out = []
    for k in range(max(changes, plain)):
        out += ordinary[k : k + 1] + changing[k : k + 1]
    return out


def write_cache(out: Path, changes: int, plain: int, config: str) -> None:
    spec = importlib.util.spec_from_file_location("direction_fit", Path(__file__).with_name("direction_fit.py"))
    direction_fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(direction_fit)
    chosen = clips(changes, plain)
    direction_fit.cache_clips(out, chosen, config)
    print(f"{sum(s.change == 'colour' for s, _ in chosen)} of them change colour")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="write the clips as a latent cache")
    c.add_argument("out", type=Path)
    c.add_argument("--changes", type=int, default=1024, help="colour-changing train clips")
    c.add_argument("--plain", type=int, default=0, help="ordinary train clips mixed in")
    c.add_argument("--config", default="configs/bundled/higen.yaml", help="the training config whose encoders to use")
    args = p.parse_args()
    if args.changes < 0 or args.plain < 0 or args.changes + args.plain == 0:
        p.error("--changes and --plain must be non-negative and not both 0")
    write_cache(args.out, args.changes, args.plain, args.config)


if __name__ == "__main__":
    main()
