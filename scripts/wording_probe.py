"""Does a model follow prompts worded in ways the world's captions never are? (docs/bundled_model.md, "Prompts in
new wording")

For the first ``--n`` held-out world clips that move and do not change appearance it writes two prompts: the
world's own caption of the clip (its templates and synonyms) and one in a sentence structure the templates never
use, with the plain names (``NEW_WORDINGS``, taken in turn). Both sets are generated with the same seeds (batch k:
seed k) and judged; the report gives each set's summary and how often the two prompts of a clip agree:

    python scripts/wording_probe.py --n 32 -o benchmarks/results/bundled_eval/wording_32.json
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from higen import HiGenPipeline
from higen.world.captions import parse_prompt
from higen.world.dataset import world_clip
from higen.world.evaluate import generate_videos, summarise
from higen.world.judge import score

# Sentence structures none of the world's caption templates (higen.world.captions._TEMPLATES) has; every one is
# read back by parse_prompt (checked before generating).
NEW_WORDINGS = (
    "{colour} {shape}, {background} background, heading {direction}",
    "there is one {colour} {shape} and it goes {direction}, with a {background} backdrop behind it",
    "animation of a {background} backdrop with a {colour} {shape} heading {direction}",
    "a {adjective}-moving {colour} {shape} seen against {background}",
    "the {shape} is {colour} and travels {direction} across a {background} background",
    "show me a {colour} {shape} that keeps going {direction}, {background} background",
    "{colour} {shape} floating {direction} over {background}",
    "a {shape} coloured {colour}, sliding {direction}, with a {background} background",
)
ADJECTIVES = {"left": "leftward", "right": "rightward", "up": "upward", "down": "downward"}


def prompt_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(world caption, new wording) of the first ``n`` moving, unchanging held-out clips."""
    pairs, index = [], 0
    while len(pairs) < n:
        spec, caption = world_clip(seed, index, "heldout")
        index += 1
        if spec.direction == "still" or spec.change != "none":
            continue
        new = NEW_WORDINGS[len(pairs) % len(NEW_WORDINGS)].format(
            colour=spec.colour, shape=spec.shape, direction=spec.direction, adjective=ADJECTIVES[spec.direction],
            background=spec.background,
        )
        new = re.sub(r"\ba (?=[aeiou])", "an ", new)
        asked = parse_prompt(new)
        wanted = dict(colour=spec.colour, shape=spec.shape, direction=spec.direction, background=spec.background)
        if {k: asked[k] for k in wanted} != wanted:
            raise ValueError(f"the judge reads {new!r} as {asked}, not {wanted}")
        pairs.append((caption, new))
    return pairs


def probe(pipe, n: int, batch_size: int, seed: int = 0) -> dict:
    pairs = prompt_pairs(n, seed)
    d = pipe.defaults
    clips: dict[str, list[dict]] = {"world captions": [], "new wording": []}
    for k, start in enumerate(range(0, n, batch_size)):
        batch = pairs[start : start + batch_size]
        for column, prompts in zip(clips, zip(*batch)):
            videos = generate_videos(pipe, list(prompts), seed + k, d.frames, d.height, d.width, {})
            clips[column] += [dict(score(p, v), seed=seed + k) for p, v in zip(prompts, videos)]
        print(f"{min(start + batch_size, n)}/{n} pairs", flush=True)
    summaries = {column: summarise(scores) for column, scores in clips.items()}
    agree = {}
    for attribute in ("colour", "shape", "direction", "background"):
        same = [a["measured"].get(attribute) == b["measured"].get(attribute) for a, b in zip(*clips.values())]
        agree[attribute] = sum(same) / len(same)
    return dict(n=n, seed=seed, batch_size=batch_size, summaries=summaries, same_reading=agree, clips=clips)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--n", type=int, default=32, help="held-out clips (two prompts each)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("-o", "--output", type=Path, help="write the report (JSON) here")
    args = p.parse_args()
    if args.n < 1 or args.batch_size < 1:
        p.error(f"--n and --batch-size must be at least 1, got {args.n} and {args.batch_size}")
    pipe = HiGenPipeline.from_pretrained(args.model) if args.model else HiGenPipeline.from_pretrained()
    report = probe(pipe, args.n, args.batch_size)
    for column, s in report["summaries"].items():
        acc = {k: s["attributes"][k] for k in ("colour", "shape", "direction", "background")}
        print(f"{column:16s}", "  ".join(f"{k} {v['correct']}/{v['asked']}" for k, v in acc.items()),
              f"  present {s['presence']:.3f}  stable {s['stable']:.3f}")
    print("same judge reading for a clip's two prompts:", {k: round(v, 3) for k, v in report["same_reading"].items()})
    if args.output:
        from higen.world.evaluate import write_report

        write_report(args.output, report)
        print(f"written: {args.output}")


if __name__ == "__main__":
    main()
