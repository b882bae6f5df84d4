"""Evaluating text-to-video models (and the judge itself) on the procedural world.

- ``evaluate_model``: one video per world prompt of a split (held-out by default), judged per attribute,
  optionally with control sweeps: several motion (appearance) values at a fixed seed per prompt, and how the
  measured speed (appearance change) follows them (Spearman correlation, strict monotonicity).
- ``evaluate_ground_truth``: the judge on rendered world clips (optionally degraded): its error rates.
- ``evaluate_videos``: the judge on existing video files whose prompts are known.

Every function returns a JSON-able report; ``format_report`` prints it as a table.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from higen.world.captions import parse_prompt, spec_attributes
from higen.io.video import read_video
from higen.world.dataset import world_clip
from higen.world.judge import CORRECT, INCORRECT, compare, gaussian_blur, measure, score
from higen.world.render import render

# The attributes every evaluation reports, in table order.
REPORTED = ("colour", "shape", "direction", "background", "speed", "size", "change", "end_colour")


# ------------------------------------------------------------------------------ statistics
def rank(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (Pearson correlation of the ranks); None when either side is constant."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    rx, ry = rank(x), rank(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else None


def _tally(scores: Sequence[dict], attribute: str) -> dict:
    correct = sum(s["results"][attribute] == CORRECT for s in scores)
    incorrect = sum(s["results"][attribute] == INCORRECT for s in scores)
    asked = correct + incorrect
    return dict(correct=correct, incorrect=incorrect, asked=asked, accuracy=correct / asked if asked else None)


def summarise(scores: Sequence[dict]) -> dict:
    """Per-attribute counts over judged clips, plus mean presence and the fraction of stable clips.

    ``attributes[a] = {"correct", "incorrect", "asked", "accuracy"}`` (accuracy None when never asked).
    ``colour_split`` counts colour separately for prompts that ask for a colour change and those that do
    not: a changing object's colour (read over the clip's first quarter) must come from the temporal stage,
    since the spatial prior (the middle frame) shows it half-way through the change.
    """
    attributes = {a: _tally(scores, a) for a in REPORTED}
    changing = [s for s in scores if s["asked"]["change"] == "colour"]
    steady = [s for s in scores if s["asked"]["change"] != "colour"]
    n = len(scores)
    return dict(
        clips=n, attributes=attributes,
        colour_split={"no colour change": _tally(steady, "colour"), "colour change": _tally(changing, "colour")},
        presence=float(np.mean([s["presence"] for s in scores])) if n else None,
        stable=float(np.mean([s["stable"] for s in scores])) if n else None,
        stable_count=int(sum(s["stable"] for s in scores)),
    )


# ------------------------------------------------------------------------------ degradations
def degrade(video: np.ndarray, rng: np.random.Generator, noise: float = 0.0, blur: float = 0.0) -> np.ndarray:
    """Blur (Gaussian, ``blur`` pixels) then add Gaussian noise (``noise`` levels of 255) to uint8 ``f h w 3``."""
    x = gaussian_blur(video, blur, axes=(1, 2))
    if noise > 0:
        x = x + rng.normal(0.0, noise, x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ prompts
def world_prompts(n: int, split: str = "heldout", seed: int = 0, keep: Callable[[dict], bool] | None = None, limit: int = 10000) -> list[str]:
    """``n`` world captions of ``split`` (clips ``0, 1, ...`` of the world with ``seed``), keeping only those
    whose parsed attributes satisfy ``keep``."""
    prompts = []
    for i in range(limit):
        _, caption = world_clip(seed, i, split)
        if keep is None or keep(parse_prompt(caption)):
            prompts.append(caption)
            if len(prompts) == n:
                return prompts
    raise ValueError(f"found only {len(prompts)} of {n} prompts in {limit} world clips")


def motion_sweep_prompts(n: int, split: str = "heldout", seed: int = 0) -> list[str]:
    """Prompts of moving objects that name no speed, so the motion cue alone sets the speed."""
    return world_prompts(n, split, seed, lambda a: a["direction"] not in (None, "still") and a["speed"] is None)


def appearance_sweep_prompts(n: int, split: str = "heldout", seed: int = 0) -> list[str]:
    """Prompts that name no appearance change, so the appearance cue alone sets it."""
    return world_prompts(n, split, seed, lambda a: a["change"] is None)


# ------------------------------------------------------------------------------ model evaluation
def generate_videos(pipe, prompts: list[str], seed: int, frames: int, height: int, width: int, generation: dict) -> np.ndarray:
    """Videos uint8 ``b f h w 3`` for a batch of prompts with one seed."""
    overrides = {k: v for k, v in generation.items() if v is not None}
    out = pipe(prompts if len(prompts) > 1 else prompts[0], frames=frames, height=height, width=width, seed=seed, **overrides)
    video = np.asarray(out.video)
    if video.ndim != 5 or video.shape[0] != len(prompts):
        raise ValueError(f"the pipeline returned videos of shape {video.shape} for {len(prompts)} prompts")
    return video


def evaluate_model(
    pipe, n_prompts: int = 30, split: str = "heldout", seed: int = 0, frames: int = 16, height: int = 64, width: int = 64,
    batch_size: int = 1, motion_values: Sequence[float] | None = None, appearance_values: Sequence[float] | None = None,
    sweep_prompts: int = 3, progress: bool = False, **generation,
) -> dict:
    """Judge a pipeline on ``n_prompts`` world prompts of ``split``.

    ``pipe(prompt or prompts, frames=, height=, width=, seed=, **generation)`` must return an object whose
    ``.video`` is uint8 ``b f h w 3`` (``HiGenPipeline`` does). Batch ``k`` (of ``batch_size`` prompts) uses
    seed ``seed + k``. ``generation`` holds sampling overrides (``spatial_steps``, ``temporal_steps``,
    ``sampler``, ``spatial_guidance``, ``temporal_guidance``, ``motion``, ``appearance``, ...); None means the
    pipeline's default. ``motion_values`` / ``appearance_values`` (e.g. 5 values) add the control sweeps on
    ``sweep_prompts`` prompts each.
    """
    if n_prompts < 1 or batch_size < 1:
        raise ValueError(f"n_prompts and batch_size must be at least 1, got {n_prompts} and {batch_size}")
    prompts = world_prompts(n_prompts, split, seed)
    clips = []
    batches = range(0, n_prompts, batch_size)
    for k, start in enumerate(_maybe_progress(batches, progress, "evaluating")):
        batch = prompts[start : start + batch_size]
        videos = generate_videos(pipe, batch, seed + k, frames, height, width, generation)
        clips += [dict(score(p, v), seed=seed + k) for p, v in zip(batch, videos)]
    report = dict(
        mode="model", settings=dict(n_prompts=n_prompts, split=split, seed=seed, frames=frames, height=height, width=width,
                                    batch_size=batch_size, **generation),
        summary=summarise(clips), clips=clips, sweeps={},
    )
    base = {k: v for k, v in generation.items() if k not in ("motion", "appearance")}
    if motion_values is not None:
        sweep = motion_sweep_prompts(sweep_prompts, split, seed)
        report["sweeps"]["motion"] = control_sweep(pipe, sweep, "motion", motion_values, seed, frames, height, width, **base, appearance=generation.get("appearance"))
    if appearance_values is not None:
        sweep = appearance_sweep_prompts(sweep_prompts, split, seed)
        report["sweeps"]["appearance"] = control_sweep(pipe, sweep, "appearance", appearance_values, seed, frames, height, width, **base, motion=generation.get("motion"))
    return report


def control_sweep(
    pipe, prompts: Sequence[str], control: str, values: Sequence[float], seed: int = 0, frames: int = 16,
    height: int = 64, width: int = 64, **generation,
) -> dict:
    """Generate every prompt with each value of ``control`` ("motion" or "appearance") at one fixed seed and
    report how the measured speed (image sides per second) or appearance change follows the values: per
    prompt the measurements, their Spearman correlation with the values and whether they strictly increase
    (in the order of increasing values); averaged over prompts."""
    if control not in ("motion", "appearance"):
        raise ValueError(f"control must be 'motion' or 'appearance', got {control!r}")
    if len(values) < 2:
        raise ValueError(f"a sweep needs at least 2 values, got {len(values)}")
    values = sorted(float(v) for v in values)
    per_prompt = []
    for prompt in prompts:
        measured, parts = [], []
        for value in values:
            video = generate_videos(pipe, [prompt], seed, frames, height, width, {**generation, control: value})[0]
            m = measure(video)
            if control == "motion":
                measured.append(m.speed)
                parts.append(dict(speed=m.speed, speed_px=m.speed_px, direction=m.direction))
            else:
                measured.append(m.appearance_change)
                parts.append(dict(appearance_change=m.appearance_change, colour_change=m.colour_change, area_change=m.area_change))
        per_prompt.append(_sweep_result(prompt, values, measured, parts))
    correlations = [p["spearman"] for p in per_prompt if p["spearman"] is not None]
    return dict(
        control=control, values=values, seed=seed, prompts=per_prompt,
        mean_spearman=float(np.mean(correlations)) if correlations else None,
        strictly_increasing=float(np.mean([p["strictly_increasing"] for p in per_prompt])) if per_prompt else None,
    )


def _sweep_result(prompt: str, values: list[float], measured: list[float | None], parts: list[dict]) -> dict:
    known = [m is not None for m in measured]
    usable = [m for m in measured if m is not None]
    rho = spearman([v for v, k in zip(values, known) if k], usable) if sum(known) >= 2 else None
    increasing = all(known) and all(b > a for a, b in zip(usable, usable[1:]))
    return dict(prompt=prompt, measured=measured, parts=parts, spearman=rho, strictly_increasing=bool(increasing))


# ------------------------------------------------------------------------------ judge validation
def evaluate_ground_truth(
    n: int = 500, seed: int = 0, frames: int = 16, height: int = 64, width: int = 64, split: str = "all",
    noise: float = 0.0, blur: float = 0.0, progress: bool = False, autoencoder=None,
) -> dict:
    """The judge on ``n`` rendered world clips (blurred by ``blur`` pixels, plus Gaussian ``noise`` levels),
    scored against what each clip *is* (every attribute known, so every clip asks everything it can).

    ``autoencoder`` (a ``VideoAutoencoder``): judge each clip after an encode-decode round trip instead,
    the best any model generating through that autoencoder can score.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng([seed, 7])  # the degradation noise; clips come from world_clip
    clips = []
    for i in _maybe_progress(range(n), progress, "judging"):
        spec, caption = world_clip(seed, i, split)
        video = degrade(render(spec, frames, height, width), rng, noise, blur)
        if autoencoder is not None:
            video = round_trip(autoencoder, video)
        clips.append(dict(compare(spec_attributes(spec), measure(video), caption), index=i))
    settings = dict(n=n, seed=seed, frames=frames, height=height, width=width, split=split, noise=noise, blur=blur,
                    autoencoder=autoencoder is not None)
    return dict(mode="ground_truth", settings=settings, summary=summarise(clips), clips=clips)


def round_trip(autoencoder, video: np.ndarray) -> np.ndarray:
    """uint8 ``f h w 3`` -> encoded (posterior mean) and decoded back to uint8 ``f h w 3``."""
    import torch
    from einops import rearrange

    from higen.encoders.autoencoder import to_unit_range

    x = to_unit_range(torch.from_numpy(np.ascontiguousarray(video)))
    with torch.inference_mode():
        y = autoencoder.decode(autoencoder.encode(rearrange(x, "f h w c -> 1 c f h w")), chunk_size=16)
    y = ((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(y, "1 c f h w -> f h w c").numpy()


# ------------------------------------------------------------------------------ existing videos
def find_prompted_videos(folder: str | Path) -> list[tuple[Path, str]]:
    """(video, prompt) pairs from ``prompts.csv`` or ``manifest.csv`` (columns ``path`` and ``prompt`` or
    ``caption``, paths relative to the folder), else from ``*.json`` sidecars with a ``prompt`` key (as
    ``higen generate`` writes beside ``name.mp4`` as ``name.mp4.json``, or beside a PNG-frame folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder not found: {folder}")
    for name in ("prompts.csv", "manifest.csv"):
        if (folder / name).is_file():
            return _read_prompt_table(folder / name)
    pairs = []
    for sidecar in sorted(folder.glob("*.json")):
        data = json.loads(sidecar.read_text())
        if isinstance(data, dict) and "prompt" in data:
            video = folder / sidecar.name[: -len(".json")]
            if not video.exists() and data.get("output"):
                video = folder / Path(data["output"]).name
            pairs.append((video, str(data["prompt"])))
    if not pairs:
        raise FileNotFoundError(f"no prompts in {folder}: expected prompts.csv, manifest.csv, or .json sidecars with a 'prompt' key")
    return pairs


def _read_prompt_table(path: Path) -> list[tuple[Path, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        text_column = next((c for c in ("prompt", "caption") if c in columns), None)
        if "path" not in columns or text_column is None:
            raise ValueError(f"{path} needs a 'path' column and a 'prompt' or 'caption' column; it has: {', '.join(columns)}")
        pairs = [(path.parent / row["path"], row[text_column]) for row in reader]
    if not pairs:
        raise ValueError(f"{path} lists no videos")
    return pairs


def evaluate_videos(folder: str | Path, progress: bool = False) -> dict:
    """Judge the videos of a folder against their prompts (see ``find_prompted_videos``)."""
    pairs = find_prompted_videos(folder)
    missing = [str(p) for p, _ in pairs if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed videos are missing, e.g. {', '.join(missing[:3])}")
    clips = [dict(score(prompt, read_video(path)[0]), path=str(path)) for path, prompt in _maybe_progress(pairs, progress, "judging")]
    return dict(mode="videos", settings=dict(folder=str(folder)), summary=summarise(clips), clips=clips)


# ------------------------------------------------------------------------------ output
def format_report(report: dict) -> str:
    """A plain-text table of a report's summary and sweeps."""
    s = report["summary"]
    lines = [f"{report['mode']} evaluation: {s['clips']} clips", f"{'attribute':12s} {'correct':>9s} {'asked':>7s} {'accuracy':>9s}"]
    for name, a in s["attributes"].items():
        accuracy = "-" if a["accuracy"] is None else f"{100 * a['accuracy']:8.1f}%"
        lines.append(f"{name:12s} {a['correct']:9d} {a['asked']:7d} {accuracy:>9s}")
        if name == "colour":
            for part, b in s.get("colour_split", {}).items():
                if b["asked"]:
                    lines.append(f"  {part:22s} {b['correct']:3d} of {b['asked']:3d} {100 * b['accuracy']:8.1f}%")
    if s["clips"]:
        lines.append(f"{'presence':12s} {'':9s} {'':7s} {100 * s['presence']:8.1f}%  (mean fraction of frames with the object)")
        lines.append(f"{'stable':12s} {s['stable_count']:9d} {s['clips']:7d} {100 * s['stable']:8.1f}%")
    for sweep in report.get("sweeps", {}).values():
        lines.append(f"{sweep['control']} sweep over {', '.join(f'{v:g}' for v in sweep['values'])} (seed {sweep['seed']}):")
        for p in sweep["prompts"]:
            measured = ", ".join("-" if m is None else f"{m:.3f}" for m in p["measured"])
            rho = "-" if p["spearman"] is None else f"{p['spearman']:+.2f}"
            lines.append(f"  spearman {rho}  increasing {'yes' if p['strictly_increasing'] else 'no '}  [{measured}]  {p['prompt']}")
        mean = "-" if sweep["mean_spearman"] is None else f"{sweep['mean_spearman']:+.2f}"
        lines.append(f"  mean spearman {mean}, strictly increasing in {100 * sweep['strictly_increasing']:.0f}% of prompts")
    return "\n".join(lines)


def write_report(path: str | Path, report: dict) -> None:
    """Write a report as JSON, atomically (NaN and infinities become null)."""
    from higen.io.files import atomic_write_text

    atomic_write_text(path, json.dumps(_jsonable(report), indent=1) + "\n")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _maybe_progress(items: Iterable, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="clip")
