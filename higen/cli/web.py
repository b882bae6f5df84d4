"""``higen web``: a local web page for generating videos (gradio; ``pip install 'higen[web]'``).

The page holds every control of ``higen generate``: prompt, negative prompt, size, steps, guidance,
sampler, the motion and appearance cues, seed, and an optional keyframe image (image-to-video). Each
video is written to ``--output-dir`` with the same JSON sidecar as the CLI's, so a result seen on the
page can be reproduced from the command line.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from higen.cli.common import OFFLOAD, check_prompt, free_name, keyframe_path, load_pipeline, resolve_device, slug, speed_options, write_output, write_sidecar
from higen.pipeline.settings import check_seed

SAMPLERS = ("ddim", "dpm++", "unipc")


def add_parser(sub) -> None:
    p = sub.add_parser("web", help="a local web page for generating videos (needs gradio)",
                       description="Serve a web page for generating videos with a HiGen model (pip install 'higen[web]').")
    p.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    p.add_argument("--output-dir", type=Path, default=Path("outputs/web"), help="where videos and their sidecars are written")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="ask gradio for a public link (needs internet)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--offload", choices=OFFLOAD)
    p.set_defaults(run=run)


class WebGenerator:
    """What the page calls: one video per request, written with its sidecar. Usable without gradio."""

    def __init__(self, pipe, output_dir: Path, model_path: Path | str | None = None, device: str = "cpu"):
        self.pipe, self.output_dir, self.model_path, self.device = pipe, Path(output_dir), model_path, str(device)
        self.count = 0

    def controls(self) -> dict:
        """The page's initial values: the model's generation defaults."""
        d = self.pipe.defaults
        return dict(frames=d.frames, height=d.height, width=d.width, steps=d.temporal_steps, guidance=d.temporal_guidance,
                    sampler=d.sampler, motion=d.motion, appearance=d.appearance, negative_prompt=d.negative_prompt)

    def generate(self, prompt: str, negative_prompt: str = "", seed: int | None = None, frames: int | None = None,
                 height: int | None = None, width: int | None = None, steps: int | None = None, guidance: float | None = None,
                 sampler: str | None = None, motion: float | None = None, appearance: float | None = None,
                 keyframe=None, progress=None) -> tuple[Path, Path, dict]:
        """Returns (mp4 path, keyframe PNG path, settings). ``seed`` None or negative draws one."""
        prompt = check_prompt(prompt)
        seed = check_seed(seed) if seed is not None and seed >= 0 else random.randrange(2**31)
        callback = None
        if progress is not None:
            callback = lambda stage, step, total: progress(step / max(total, 1), desc=stage)  # noqa: E731
        settings = self.pipe.resolve_settings(
            negative_prompt=negative_prompt or None, frames=frames, height=height, width=width, spatial_steps=steps,
            temporal_steps=steps, spatial_guidance=guidance, temporal_guidance=guidance, sampler=sampler or None,
            motion=motion, appearance=appearance,
        )
        start = time.perf_counter()
        out = self.pipe(prompt, settings=settings, seed=seed, keyframe=keyframe, callback=callback)
        elapsed = time.perf_counter() - start
        self.count += 1
        target = free_name(self.output_dir / f"{time.strftime('%Y%m%d-%H%M%S')}_{self.count:04d}_{slug(prompt)}_{seed}.mp4", keyframe=True)
        write_output(target, out.video[0], settings.fps, "mp4")
        key_path = keyframe_path(target)
        write_output(key_path, out.keyframe[0][None], settings.fps, "png-file")
        record = write_sidecar(target, out.settings, prompt, model=str(self.model_path), format="mp4", device=self.device,
                               keyframe="uploaded image" if keyframe is not None else None, seconds=round(elapsed, 3))
        return target, key_path, record


def build_app(generator: WebGenerator):
    """The gradio page over ``generator``."""
    import gradio as gr
    import torch

    c = generator.controls()

    def on_generate(prompt, negative_prompt, seed, frames, height, width, steps, guidance, sampler, motion, appearance, keyframe,
                    progress=gr.Progress()):
        try:
            video, key, settings = generator.generate(prompt, negative_prompt, seed, frames, height, width, steps, guidance,
                                                      sampler, motion, appearance, keyframe, progress=progress)
        except ValueError as err:  # bad settings, a size too large, a corrupt model: shown on the page, the server keeps running
            raise gr.Error(str(err))
        except (MemoryError, torch.OutOfMemoryError):  # the size check is a lower bound: a run may still not fit
            raise gr.Error("out of memory: lower the width, height or frames")
        return str(video), str(key), settings

    with gr.Blocks(title="HiGen") as app:
        gr.Markdown("# HiGen text-to-video\nA spatial prior keyframe from the text, then the clip from it, "
                    "steered by the motion and appearance cues.")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=2)
                negative = gr.Textbox(label="Negative prompt", value=c["negative_prompt"])
                with gr.Row():
                    motion = gr.Number(label="Motion (larger = more motion)", value=c["motion"])
                    appearance = gr.Number(label="Appearance (0 = unchanging, larger = more change)", value=c["appearance"])
                with gr.Accordion("Sampling", open=False):
                    seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0)
                    with gr.Row():
                        frames = gr.Number(label="Frames", value=c["frames"], precision=0)
                        height = gr.Number(label="Height", value=c["height"], precision=0)
                        width = gr.Number(label="Width", value=c["width"], precision=0)
                    with gr.Row():
                        steps = gr.Number(label="Steps per stage", value=c["steps"], precision=0)
                        guidance = gr.Number(label="Guidance", value=c["guidance"])
                        sampler = gr.Dropdown(list(SAMPLERS), value=c["sampler"], label="Sampler")
                    keyframe = gr.Image(label="Keyframe (optional: image-to-video)", type="numpy")
                button = gr.Button("Generate", variant="primary")
            with gr.Column():
                video = gr.Video(label="Video")
                key = gr.Image(label="Spatial prior keyframe")
                settings = gr.JSON(label="Settings (also written beside the video)")
        button.click(on_generate, [prompt, negative, seed, frames, height, width, steps, guidance, sampler, motion, appearance, keyframe],
                     [video, key, settings])
    return app


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("the web page needs gradio: pip install 'higen[web]'") from None
    device = resolve_device(args.device)
    pipe, model_path = load_pipeline(args.model, "cpu" if args.offload else device, args.dtype)
    speed_options(pipe, device, args.channels_last, args.compile, args.offload)
    app = build_app(WebGenerator(pipe, args.output_dir, model_path, device))
    app.queue().launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0
