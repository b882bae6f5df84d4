"""Where is the direction of motion decided, and does the direction word steer it? (docs/bundled_model.md)

Held-out world clips that move (left, right, up or down, no appearance change) are encoded, noised to level t,
and the model's one-step clean prediction (from v) is decoded and its direction judged, once with the
caption's direction word and once with the opposite word. Prints, per t, how many of 24 predictions show the
clip's true direction, the opposite one, or no motion.

    python benchmarks/direction_probe.py                     # the bundled model, t = 300, 500, 700, 900
    python benchmarks/direction_probe.py runs/bundled_higen_snr/model_1800 800,950,990
"""
import json, sys, numpy as np, torch
from higen.pipeline.pipeline import HiGenPipeline
from higen.cues import Cues
from higen.diffusion.schedule import NoiseSchedule, q_sample
from higen.world.dataset import world_clip
from higen.world.render import render
from higen.world.judge import measure
OPP = {"left": "right", "right": "left", "up": "down", "down": "up"}
torch.set_grad_enabled(False)
pipe = HiGenPipeline.from_pretrained(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None)
specs = []
i = 0
while len(specs) < 24:
    s, _ = world_clip(0, i, "heldout"); i += 1
    if s.direction in OPP and getattr(s, "change", None) in (None, "none"):
        specs.append(s)
def prompt(s, d): return f"a {s.colour} {s.shape} moving {d} on a {s.background} background"
video = np.stack([render(s, 16, 64, 64) for s in specs])
x = torch.tensor(video).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
z = pipe.autoencoder.encode(x, sample=False)
cues = Cues.from_clip(z)
alphas = NoiseSchedule().alphas_cumprod().float()
noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
def dirs(lat): return [measure(v).direction for v in pipe.decode(lat)]
true = [s.direction for s in specs]
print(json.dumps({"clean": sum(a == b for a, b in zip(dirs(z), true))}), flush=True)
texts = {"true word": pipe.encode_prompts([prompt(s, s.direction) for s in specs]),
         "opposite word": pipe.encode_prompts([prompt(s, OPP[s.direction]) for s in specs])}
for level in [int(a) for a in (sys.argv[2].split(",") if len(sys.argv) > 2 else "300,500,700,900".split(","))]:
    t = torch.full((len(specs),), level)
    x_t = q_sample(alphas, z, t, noise)
    row = {"t": level}
    for name, text in texts.items():
        v = pipe.unet(x_t, t, text, **cues.unet_kwargs())
        d = dirs(alphas[level].sqrt() * x_t - (1 - alphas[level]).sqrt() * v)
        row[name] = {"shows true dir": sum(a == b for a, b in zip(d, true)), "shows opposite": sum(a == OPP[b] for a, b in zip(d, true)),
                     "still/none": sum(a not in OPP for a in d)}
    print(json.dumps(row), flush=True)
