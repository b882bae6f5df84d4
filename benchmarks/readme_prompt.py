"""The README's example prompt over ten seeds, judged: does the model draw what the prompt asks, seed after seed?

Generates the prompt with the model's default settings for seeds 0-9 (or ``--seeds``), judges each video
from its pixels (``higen.world.judge.score``) and prints, per seed, the judged colour, shape, direction and
background, and how many seeds got all four right (docs/bundled_model.md, "Scores").

    python benchmarks/readme_prompt.py                       # the bundled model
    python benchmarks/readme_prompt.py --model runs/bundled_attr_video/model -o runs/eval/readme.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from higen.pipeline.pipeline import HiGenPipeline
from higen.world.judge import CORRECT, score

PROMPT = "a red circle moving left on a black background"
CHECKED = ("colour", "shape", "direction", "background")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("-o", "--output", type=Path, help="write the per-seed judgements as JSON")
    args = p.parse_args()

    pipe = HiGenPipeline.from_pretrained(args.model)
    rows = []
    for seed in range(args.seeds):
        video = np.asarray(pipe(args.prompt, seed=seed).video)[0]
        judged = score(args.prompt, video)
        right = {a: judged["results"][a] == CORRECT for a in CHECKED}
        rows.append(dict(seed=seed, measured={a: judged["measured"].get(a) for a in CHECKED}, right=right,
                         all_right=all(right.values()), presence=judged["presence"]))
        shown = "  ".join(f"{a}={judged['measured'].get(a)}{'' if right[a] else '(x)'}" for a in CHECKED)
        print(f"seed {seed}: {shown}", flush=True)
    totals = {a: sum(r["right"][a] for r in rows) for a in CHECKED}
    print(f"{args.prompt!r}: " + ", ".join(f"{a} {totals[a]}/{len(rows)}" for a in CHECKED)
          + f"; all four right {sum(r['all_right'] for r in rows)}/{len(rows)}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(dict(prompt=args.prompt, model=args.model or "bundled", seeds=rows, totals=totals), indent=1))


if __name__ == "__main__":
    main()
