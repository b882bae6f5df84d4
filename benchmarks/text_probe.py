"""Which words of a caption survive the text path? Linear probes on the text features a model's UNet reads.

Captions of world clips (train split to fit, held-out split to score) are encoded by the model's text encoder;
a logistic-regression probe per attribute (direction, shape, colour) is fitted on each of
    tokens_mean     the mean of the encoder's token states (what ``direction_ladder.py --input pooled`` reads)
    tokens          all token states, flattened
    context         the UNet's resampler output, flattened (what its cross-attention reads)
and its held-out accuracy printed (chance: 1/5 for direction, 1/6 for shape and colour). A word the context
does not carry cannot steer the clip through cross-attention, whatever the UNet learns.

    python benchmarks/text_probe.py                       # the bundled model
    python benchmarks/text_probe.py --model runs/bundled_attr_video/model --n 1500
"""

from __future__ import annotations

import argparse
import json

import torch

from higen.pipeline.pipeline import HiGenPipeline
from higen.world.dataset import world_clip

ATTRIBUTES = ("direction", "shape", "colour")


@torch.no_grad()
def features(pipe: HiGenPipeline, captions: list[str], batch: int = 100) -> dict[str, torch.Tensor]:
    text = torch.cat([pipe.encode_prompts(captions[i : i + batch]) for i in range(0, len(captions), batch)]).float()
    context = torch.cat([pipe.unet.text_resampler(text[i : i + batch].to(pipe.unet.dtype)).float()
                         for i in range(0, len(captions), batch)])
    return {"tokens_mean": text.mean(1), "tokens": text.flatten(1), "context": context.flatten(1)}


def probe_accuracy(x_fit: torch.Tensor, y_fit: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, classes: int) -> float:
    """Held-out accuracy of an L2-regularised multinomial logistic regression on standardised features."""
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-5
    x_fit, x_test = (x_fit - mean) / std, (x_test - mean) / std
    w = torch.zeros(x_fit.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_fit @ w + b, y_fit) + 1e-3 * w.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return ((x_test @ w + b).argmax(1) == y_test).float().mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    p.add_argument("--n", type=int, default=1500, help="training captions to fit on (300 held-out ones score)")
    args = p.parse_args()
    torch.manual_seed(0)
    pipe = HiGenPipeline.from_pretrained(args.model)
    fit = [world_clip(3, i, "train") for i in range(args.n)]
    test = [world_clip(4, i, "heldout") for i in range(300)]
    x_fit, x_test = features(pipe, [c for _, c in fit]), features(pipe, [c for _, c in test])
    for attribute in ATTRIBUTES:
        values = sorted({getattr(s, attribute) for s, _ in fit})
        label = lambda clips: torch.tensor([values.index(getattr(s, attribute)) for s, _ in clips])  # noqa: E731
        row = {name: round(probe_accuracy(x_fit[name], label(fit), x_test[name], label(test), len(values)), 3) for name in x_fit}
        print(json.dumps({"attribute": attribute, "chance": round(1 / len(values), 3), **row}), flush=True)


if __name__ == "__main__":
    main()
