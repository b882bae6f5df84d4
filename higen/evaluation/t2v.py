"""The text-to-video protocol of HiGen's paper: one video per caption, then every measure there are weights for.

:func:`generate_videos` writes ``{name}.mp4`` (and its ``{name}.mp4.json`` sidecar) for each caption of
a captions file into a folder. Videos are written atomically, so a video that exists is complete:
a run that stops is resumed by running it again, and videos already there are skipped. Caption ``k``
(in file order) is generated with seed ``seed + k`` whichever process generates it, so ``shard=(i, n)``
(captions ``i, i + n, i + 2n, ...``) lets any number of processes split the work and still give the
same videos as one process.

:func:`evaluate_t2v` then measures the folder: flicker always; CLIPSIM with a CLIP model; FVD when
the I3D weights are installed, real videos are given and the videos are long enough; frame FID when
real videos and the FID Inception weights file are given. A measure that cannot be computed is
recorded in the report with the reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from higen.evaluation.clipsim import CLIPSimilarity, evaluate_clipsim
from higen.evaluation.flicker import evaluate_flicker
from higen.evaluation.i3d import MIN_FRAMES
from higen.io.files import atomic_write_text
from higen.io.video import write_video

SUFFIX = ".mp4"
FVD_FRAMES = 16  # the clip length of the papers' FVD; shorter videos use all their frames


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit() or not 0 <= int(index) < int(count):
        raise ValueError(f"a shard is I/N with 0 <= I < N (e.g. 0/4); got {text!r}")
    return int(index), int(count)


def video_path(folder: Path, name: str) -> Path:
    return folder / f"{name}{SUFFIX}"


def missing_videos(folder: str | os.PathLike, captions: Mapping[str, str]) -> list[str]:
    """The captions' names whose video is not in ``folder`` yet."""
    return [name for name in captions if not video_path(Path(folder), name).is_file()]


def pending(captions: Mapping[str, str], folder: str | os.PathLike, shard: tuple[int, int] = (0, 1)) -> list[tuple[int, str, str]]:
    """(k, name, caption) of this shard's captions whose video is missing."""
    missing, (index, count) = set(missing_videos(folder, captions)), shard
    return [(k, name, caption) for k, (name, caption) in enumerate(captions.items()) if k % count == index and name in missing]


def generate_videos(pipe, captions: Mapping[str, str], folder: str | os.PathLike, settings=None, seed: int = 0,
                    shard: tuple[int, int] = (0, 1), progress: bool = False) -> list[Path]:
    """Generate this shard's missing videos into ``folder``; returns the paths written by this call."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index, count = shard
    todo, total = pending(captions, folder, shard), len(range(index, len(captions), count))
    written = []
    for k, name, caption in tqdm(todo, desc=f"generating (shard {index}/{count})", unit="video", disable=not progress,
                                 initial=total - len(todo), total=total):
        out = pipe(caption, settings=settings, seed=seed + k)
        target = video_path(folder, name)
        write_video(target, out.video[0], fps=out.settings["fps"], format="mp4")
        sidecar = dict(out.settings, prompt=caption, negative_prompt=out.settings["negative_prompt"][0], output=str(target))
        atomic_write_text(target.with_name(target.name + ".json"), json.dumps(sidecar, indent=2) + "\n")
        written.append(target)
    return written


def evaluate_t2v(folder: str | os.PathLike, captions: Mapping[str, str], real_videos: str | os.PathLike | None = None,
                 clip: CLIPSimilarity | None = None, i3d_weights: str | os.PathLike | None = None, device="cpu",
                 fvd_frames: int | None = None, fvd_stride: int = 1, batch_size: int = 8, clip_batch_size: int = 32,
                 fid_weights: str | os.PathLike | None = None, fid_frames: int | None = None, fid_stride: int = 1,
                 fid_batch_size: int = 32, progress: bool = False) -> dict:
    """Every measure of the generated ``folder`` that can be computed; ``{"skipped": reason}`` for the others."""
    missing = missing_videos(folder, captions)
    if missing:
        raise ValueError(f"{len(missing)} of {len(captions)} videos are not generated yet (first: {missing[0]}); generate them first")
    report: dict = {"n": len(captions), "flicker": evaluate_flicker(folder)}
    report["clipsim"] = (evaluate_clipsim(folder, captions, clip, clip_batch_size, progress) if clip is not None
                         else {"skipped": "no CLIP checkpoint given (--clip-checkpoint)"})
    report["fvd"] = _fvd(folder, real_videos, i3d_weights, device, fvd_frames, fvd_stride, batch_size, progress)
    report["fid"] = _fid(folder, real_videos, fid_weights, device, fid_frames, fid_stride, fid_batch_size, progress)
    return report


def _fvd(folder, real_videos, weights, device, frames, stride, batch_size, progress) -> dict:
    from higen.evaluation.fvd import evaluate_fvd
    from higen.evaluation.i3d import default_weights_path
    from higen.evaluation.videos import list_videos
    from higen.io.video import iter_frames

    if real_videos is None:
        return {"skipped": "no real videos given (--real-videos)"}
    if weights is None:
        try:
            default_weights_path()
        except FileNotFoundError as err:
            return {"skipped": str(err)}
    if frames is None:
        length = sum(1 for _ in iter_frames(list_videos(folder)[0]))
        frames = min(FVD_FRAMES, (length - 1) // stride + 1)
    if frames < MIN_FRAMES:
        return {"skipped": f"FVD's I3D needs clips of at least {MIN_FRAMES} frames; the generated videos give {frames} at stride {stride}"}
    return evaluate_fvd(real_videos, folder, frames, stride, weights, device, batch_size, progress)


def _fid(folder, real_videos, weights, device, frames, stride, batch_size, progress) -> dict:
    """Frame FID; by default over as many frames of each real video as the generated videos have (at ``stride``)."""
    from higen.evaluation.fid import evaluate_fid
    from higen.evaluation.videos import list_videos
    from higen.io.video import iter_frames

    if real_videos is None:
        return {"skipped": "no real videos given (--real-videos)"}
    if weights is None:
        return {"skipped": "no FID Inception weights given (--fid-weights)"}
    if frames is None:
        length = sum(1 for _ in iter_frames(list_videos(folder)[0]))
        frames = (length - 1) // max(stride, 1) + 1
    return evaluate_fid(real_videos, folder, weights, frames, stride, device, batch_size, progress)


def _summary_rows(report: dict) -> list[tuple[str, str, str]]:
    """(measure, value, how it was computed) for the summary table."""
    fvd, clipsim, flicker = report["fvd"], report["clipsim"], report["flicker"]
    fid = report.get("fid", {"skipped": "not in this report"})
    rows = [("FVD (lower is better)",) + (
        (f"{fvd['fvd']:.2f}", f"preset {fvd['preset']}, {fvd['frames']} frames, stride {fvd['stride']}, "
                              f"{fvd['real']['n']} real / {fvd['fake']['n']} generated videos")
        if "fvd" in fvd else ("not computed", fvd["skipped"]))]
    rows.append(("Frame FID (lower is better)",) + (
        (f"{fid['fid']:.2f}", f"preset {fid['preset']}, {fid['frames_per_video']} frames per video, stride {fid['stride']}, "
                              f"{fid['real']['frames']} real / {fid['fake']['frames']} generated frames")
        if "fid" in fid else ("not computed", fid["skipped"])))
    rows.append(("CLIPSIM (raw cosine)",) + ((f"{clipsim['clipsim']:.4f}", clipsim["model"]) if "clipsim" in clipsim
                                             else ("not computed", clipsim["skipped"])))
    rows.append(("Temporal flickering (1 = still)", f"{flicker['flicker']:.4f}",
                 f"mean frame difference {flicker['frame_difference']['mean']:.2f} of 255"))
    return rows


def summary_html(report: dict, captions: Mapping[str, str], videos: str = "videos", shown: int = 24) -> str:
    """A small HTML page beside the report: the measures, then the first ``shown`` videos with their captions."""
    from html import escape

    table = "".join(f"<tr><td>{escape(a)}</td><td><b>{escape(b)}</b></td><td>{escape(c)}</td></tr>" for a, b, c in _summary_rows(report))
    scores = report["clipsim"].get("videos", {})
    figures = []
    for name, caption in list(captions.items())[:shown]:
        file = f"{name}{SUFFIX}"
        score = f" · CLIPSIM {scores[file]['clipsim']:.3f}" if file in scores else ""
        figures.append(f'<figure><video src="{escape(videos)}/{escape(file)}" controls loop muted></video>'
                       f"<figcaption>{escape(caption)}<br><small>{escape(name)}{score}</small></figcaption></figure>")
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>higen evaluate-t2v</title><style>"
        "body{font-family:sans-serif;margin:2em}td{padding:.2em 1em}"
        "figure{display:inline-block;width:260px;margin:.5em;vertical-align:top}video{width:256px}</style></head><body>\n"
        f"<h1>Text-to-video evaluation</h1>\n<p>Model {escape(str(report.get('model', '')))}; {report['n']} captions.</p>\n"
        f"<table>{table}</table>\n<h2>Videos</h2>\n{''.join(figures)}\n</body></html>\n"
    )
