"""Text -> spatial reasoning -> spatial prior -> temporal reasoning -> decoded video (higen.md §1).

A pipeline is a UNet, a text encoder, an autoencoder, a noise schedule and generation defaults.
It saves to and loads from a model folder::

    model_index.json          format marker and component list
    pipeline.json             generation defaults (frames, size, steps, guidance, cues, fps)
    scheduler.json            the noise schedule
    unet/                     config.json + model.safetensors
    text_encoder/             the text encoder's own folder
    autoencoder/              the autoencoder's own folder
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from higen.cues import Cues
from higen.diffusion.sampling import guided_denoiser, make_sampler, sample
from higen.diffusion.schedule import NoiseSchedule, offset_noise
from higen.encoders.autoencoder import to_unit_range
from higen.models.unet import HiGenUNet
from higen.io.checkpoint import CheckpointError
from higen.io.files import read_json
from higen.io.folders import atomic_directory
from higen.pipeline.settings import GenerationSettings, SettingError, check_seed

FOLDER_FORMAT = "higen-pipeline"
FOLDER_VERSION = 1




@dataclass
class HiGenOutput:
    """``video``: uint8 ``b f h w 3``; ``keyframe``: uint8 ``b h w 3`` (the decoded spatial prior);
    ``settings``: every setting used (:class:`GenerationSettings`' fields), with the ``prompt`` and
    ``negative_prompt`` lists and the ``seed`` (JSON-able: what a sidecar records)."""

    video: np.ndarray
    keyframe: np.ndarray
    settings: dict
    latents: torch.Tensor | None = None  # b c f h w, scaled latents of the video
    prior_latents: torch.Tensor | None = None  # b c h w
    timings: dict = field(default_factory=dict)


ProgressCallback = Callable[[str, int, int], None]


class HiGenPipeline:
    """HiGen text-to-video (and keyframe-to-video) generation."""

    def __init__(self, unet: HiGenUNet, text_encoder, autoencoder, schedule: NoiseSchedule | None = None, defaults: GenerationSettings | None = None):
        self.unet = unet.eval()
        self.text_encoder = text_encoder.eval()
        self.autoencoder = autoencoder.eval()
        self.schedule = schedule or NoiseSchedule()
        self.defaults = defaults or GenerationSettings()
        self.offload = None  # a higen.pipeline.offload.ComponentOffload once offloading is enabled

    # ------------------------------------------------------------------------------------ devices
    @property
    def device(self) -> torch.device:
        """Where generation computes (with offloading: the GPU, wherever the weights wait)."""
        return self.offload.device if self.offload is not None else next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def to(self, device=None, dtype: torch.dtype | None = None) -> "HiGenPipeline":
        for module in (self.unet, self.text_encoder, self.autoencoder):
            module.to(device=device, dtype=dtype)
        return self

    # ------------------------------------------------------------------------------------ speed
    def enable_channels_last(self) -> "HiGenPipeline":
        """Run the UNet channels_last (see :meth:`HiGenUNet.to_channels_last`); same results up to summation order."""
        self.unet.to_channels_last()
        return self

    def compile_unet(self, **options) -> "HiGenPipeline":
        """``torch.compile`` the UNet in place with ``fullgraph=True`` (the UNet has no graph breaks).

        Compiles once per input shape on first use (the spatial and the temporal stage each have
        theirs); ``options`` go to ``torch.compile`` (``mode="max-autotune"``, ``backend=...``).
        """
        from higen.pipeline.offload import is_sequentially_offloaded

        if is_sequentially_offloaded(self.unet):
            raise ValueError("sequential offloading and torch.compile do not combine: compile before offloading, or do not offload")
        self.unet.compile(**{"fullgraph": True, "dynamic": False, **options})
        return self

    def enable_model_cpu_offload(self, device="cuda") -> "HiGenPipeline":
        """Keep components in CPU memory, each moved whole to ``device`` while used (higen.pipeline.offload)."""
        from higen.pipeline.offload import enable_model_cpu_offload

        enable_model_cpu_offload(self, device)
        return self

    def enable_sequential_cpu_offload(self, device="cuda") -> "HiGenPipeline":
        """Keep weights in CPU memory, each module's copied to ``device`` for its forward (higen.pipeline.offload)."""
        from higen.pipeline.offload import enable_sequential_cpu_offload

        enable_sequential_cpu_offload(self, device)
        return self

    def _use(self, component: str) -> None:
        if self.offload is not None:
            self.offload.use(component)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this (autoencoder x UNet downsampling)."""
        return self.autoencoder.downscale_factor * self.unet.config.downscale_factor

    # ---------------------------------------------------------------------------------- settings
    def resolve_settings(self, settings: GenerationSettings | None = None, **changes) -> GenerationSettings:
        """``changes`` (None: unchanged) over ``settings`` or the model's defaults, checked against this model."""
        s = (settings or self.defaults).replace(**changes)
        s.check_size(self.size_multiple)
        self.check_memory(s)
        return s

    def check_memory(self, s: GenerationSettings, batch: int = 1) -> None:
        """Refuse settings whose video cannot fit in the memory free on the device (a lower bound, higen.pipeline.memory)."""
        from higen.pipeline import memory

        need = memory.generation_memory(s.frames, s.height, s.width, s.decode_chunk_size, self.autoencoder.decoder_width, batch)
        free = memory.available_memory(self.device)
        if free is not None and need > free:
            raise SettingError("height", f"a {s.width}x{s.height} video of {s.frames} frames{f' (batch {batch})' if batch > 1 else ''} "
                                         f"needs at least {need / 2**30:,.1f} GiB of memory; {free / 2**30:,.1f} GiB is free on "
                                         f"{self.device}: lower the width, height, frames or decode chunk size")

    # ------------------------------------------------------------------------------------- text
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text-encoder token features ``b L d`` (before the UNet's resampler)."""
        self._use("text_encoder")
        return self.text_encoder.encode(list(prompts)).to(self.device, self.dtype)

    # ------------------------------------------------------------------------------------ call
    @torch.inference_mode()  # lighter than no_grad: no version counters or views tracked for autograd
    def __call__(
        self,
        prompt: str | Sequence[str] | None = None,
        *,
        settings: GenerationSettings | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        spatial_steps: int | None = None,
        temporal_steps: int | None = None,
        spatial_guidance: float | None = None,
        temporal_guidance: float | None = None,
        sampler: str | None = None,
        motion: float | None = None,
        appearance: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        spatial_noise: torch.Tensor | None = None,
        temporal_noise: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        keyframe: np.ndarray | torch.Tensor | None = None,
        spatial_prior: torch.Tensor | None = None,
        callback: ProgressCallback | None = None,
        decode_chunk_size: int | None = None,
        offset_noise_strength: float | None = None,
        output_latents: bool = False,
    ) -> HiGenOutput:
        """Generate videos.

        Args:
            prompt: one prompt or a list (the batch); may be omitted when ``prompt_embeds`` is given.
            settings: a :class:`GenerationSettings` to start from (default: the model's defaults); the
                keyword settings below that are not None change it.
            negative_prompt: text for the unconditional branch (default ``""``, as the release), or one per prompt.
            frames, height, width: video size in frames and pixels.
            spatial_steps, temporal_steps, spatial_guidance, temporal_guidance: per-stage sampling.
            sampler: ``ddim`` (the release's), ``dpm++`` or ``unipc``.
            motion: the motion control, given to every frame pair (release default 500; larger = more motion).
            appearance: the appearance control (0 = appearance does not change; larger = more change).
            seed / generator: randomness; the same seed gives the same video (bitwise on CPU).
            spatial_noise: initial noise of the spatial stage ``b c 1 h w``.
            temporal_noise: initial noise of the temporal stage ``b c f h w`` (offset noise included).
            prompt_embeds, negative_prompt_embeds: precomputed text features ``b L d``.
            keyframe: an image (uint8 ``b h w 3`` / ``h w 3``, or float ``b 3 h w`` in [-1, 1]) used as
                the spatial prior instead of the spatial stage: image-to-video.
            spatial_prior: a prior latent ``b c h w`` (scaled), likewise skipping the spatial stage.
            callback: ``callback(stage, step, total)`` after every sampler step, stage being
                ``"spatial"``, ``"temporal"`` or ``"decode"``.

        Latents are sampled in float32 whatever the UNet's dtype (the UNet computes in its own and
        returns float32), so bf16/fp16 weights do not also round the sampler's state and guidance.
        """
        # 1. Settings, validated once.
        s = self.resolve_settings(
            settings, frames=frames, height=height, width=width, spatial_steps=spatial_steps, temporal_steps=temporal_steps,
            spatial_guidance=spatial_guidance, temporal_guidance=temporal_guidance, sampler=sampler, motion=motion,
            appearance=appearance, decode_chunk_size=decode_chunk_size, offset_noise=offset_noise_strength,
            negative_prompt=negative_prompt if isinstance(negative_prompt, str) else None,
        )
        # 2. Text features of the prompts and of the unconditional branch.
        cond_text, uncond_text, prompts, negatives = self._text(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, s)
        b, c = cond_text.shape[0], self.unet.config.in_channels
        if b > 1:
            self.check_memory(s, b)
        h, w = s.height // self.autoencoder.downscale_factor, s.width // self.autoencoder.downscale_factor

        # 3. Noise, drawn on the CPU in a fixed order so a seed means the same video on every device.
        if generator is None:
            seed = random.randrange(2**63) if seed is None else check_seed(seed)
            generator = torch.Generator().manual_seed(seed)
        if spatial_noise is None:
            spatial_noise = torch.randn((b, c, 1, h, w), generator=generator)
        if temporal_noise is None:
            temporal_noise = offset_noise((b, c, s.frames, h, w), s.offset_noise, generator=generator)
        _check_shape("spatial_noise", spatial_noise, (b, c, 1, h, w))
        _check_shape("temporal_noise", temporal_noise, (b, c, s.frames, h, w))

        # 4. Spatial reasoning: one frame from text, or the user's keyframe.
        if spatial_prior is None and keyframe is not None:
            spatial_prior = self.encode_keyframe(keyframe, b, s.height, s.width)
        if spatial_prior is None and not s.decoupled:
            spatial_prior = torch.zeros(b, c, h, w)
        if spatial_prior is None:
            spatial_prior = self._spatial_stage(cond_text, uncond_text, spatial_noise, s, callback)
        _check_shape("spatial_prior", spatial_prior, (b, c, h, w))
        check_finite("the spatial prior", spatial_prior)
        spatial_prior = spatial_prior.to(self.device, self.dtype)

        # 5. Temporal reasoning: the clip from the prior, steered by the motion and appearance cues.
        latents = self._temporal_stage(cond_text, uncond_text, spatial_prior, temporal_noise, s, callback)
        check_finite("the temporal stage's latents", latents)

        # 6. Decode.
        video = self.decode(latents, s.decode_chunk_size, callback)
        keyframe_img = self.decode(spatial_prior[:, :, None], s.decode_chunk_size)[:, 0]
        if self.offload is not None:
            self.offload.release()  # nothing stays on the GPU between generations
        return HiGenOutput(
            video=video, keyframe=keyframe_img, settings=s.to_dict() | dict(prompt=prompts, negative_prompt=negatives, seed=seed),
            latents=latents.cpu() if output_latents else None,
            prior_latents=spatial_prior.cpu() if output_latents else None,
        )

    # ------------------------------------------------------------------------------------ stages
    def _text(self, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, s: GenerationSettings):
        """(prompt features ``b L d``, unconditional features or None, prompts, negative prompts)."""
        if prompt_embeds is None:
            if prompt is None:
                raise ValueError("give a prompt or prompt_embeds")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            if not prompts:
                raise ValueError("the prompt list is empty")
            cond = None
        else:
            cond = prompt_embeds.to(self.device, self.dtype)
            prompts = [prompt] if isinstance(prompt, str) else list(prompt or [""] * cond.shape[0])
        b = len(prompts) if cond is None else cond.shape[0]
        negatives = [s.negative_prompt] * b if negative_prompt is None or isinstance(negative_prompt, str) else list(negative_prompt)
        if len(negatives) != b:
            raise ValueError(f"{len(negatives)} negative prompts for a batch of {b}")
        needs_uncond = negative_prompt_embeds is None and (s.spatial_guidance != 1.0 or s.temporal_guidance != 1.0)
        if cond is None:
            # One text-encoder call for the prompts and negatives together.
            encoded = self.encode_prompts(prompts + (negatives if needs_uncond else []))
            cond, uncond = encoded[:b], (encoded[b:] if needs_uncond else None)
        else:
            uncond = self.encode_prompts(negatives) if needs_uncond else None
        if negative_prompt_embeds is not None:
            uncond = negative_prompt_embeds.to(self.device, self.dtype)
        if uncond is not None and uncond.shape != cond.shape:
            raise ValueError(f"negative text features {tuple(uncond.shape)} do not match the prompt's {tuple(cond.shape)}")
        return cond, uncond, prompts, negatives

    def _spatial_stage(self, cond_text, uncond_text, noise, s: GenerationSettings, callback) -> torch.Tensor:
        cues = Cues.spatial_stage(cond_text.shape[0], device=self.device)
        return self._sample(cond_text, uncond_text, cues, noise, s.spatial_guidance, s.sampler, s.spatial_steps, callback, "spatial")[:, :, 0]

    def _temporal_stage(self, cond_text, uncond_text, prior, noise, s: GenerationSettings, callback) -> torch.Tensor:
        b = cond_text.shape[0]
        if s.decoupled:
            cues = Cues.from_controls(s.motion, s.appearance, b, s.frames, self.unet.config.appearance_width, prior, self.device)
        else:
            cues = Cues.spatial_stage(b, s.frames, self.device)  # all that a model trained without the decoupling saw
        return self._sample(cond_text, uncond_text, cues, noise, s.temporal_guidance, s.sampler, s.temporal_steps, callback, "temporal")

    def _sample(self, cond_text, uncond_text, cues: Cues, noise, guidance: float, sampler: str, steps: int, callback, stage: str):
        self._use("unet")
        denoiser = guided_denoiser(self.unet, cond_text, uncond_text, cues, guidance)
        return sample(denoiser, noise.to(self.device, torch.float32), make_sampler(sampler, self.schedule), steps,
                      callback=_stage_callback(callback, stage))

    # ----------------------------------------------------------------------------- autoencoder
    def encode_keyframe(self, keyframe, batch: int, height: int, width: int) -> torch.Tensor:
        """An image -> the spatial prior latent ``b c h w`` (the autoencoder's posterior mean)."""
        image = torch.as_tensor(np.asarray(keyframe)) if not isinstance(keyframe, torch.Tensor) else keyframe
        if image.dtype == torch.uint8:
            if image.dim() == 3:
                image = image[None]
            image = to_unit_range(image.permute(0, 3, 1, 2))  # b h w 3 -> b 3 h w in [-1, 1]
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"keyframe must be h w 3 / b h w 3 uint8 or b 3 h w float; got {tuple(image.shape)}")
        if image.shape[-2:] != (height, width):
            image = torch.nn.functional.interpolate(image, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        if image.shape[0] == 1 and batch > 1:
            image = image.expand(batch, -1, -1, -1)
        self._use("autoencoder")
        latents = self.autoencoder.encode(image[:, :, None].to(self.device, self.dtype), sample=False)
        return latents[:, :, 0]

    def decode(self, latents: torch.Tensor, chunk_size: int = 2, callback: ProgressCallback | None = None) -> np.ndarray:
        """Scaled latents ``b c f h w`` -> uint8 frames ``b f H W 3``."""
        self._use("autoencoder")
        video = self.autoencoder.decode(latents.to(self.device, self.dtype), chunk_size=chunk_size)
        check_finite("the decoded video", video)  # NaN would become black pixels in uint8, without a word
        if callback is not None:
            callback("decode", 1, 1)  # one step, finished (the other stages also report steps done)
        video = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return video.permute(0, 2, 3, 4, 1).cpu().numpy()  # b c f h w -> b f h w c

    # ----------------------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Write the model folder (see the module docstring), whole or not at all."""
        write_model_folder(directory, self.unet, self.text_encoder, self.autoencoder, self.schedule, self.defaults, dtype=dtype)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike | None = None, device="cpu", dtype: torch.dtype | None = torch.float32) -> "HiGenPipeline":
        """Load a model folder (None: the bundled model, docs/bundled_model.md). ``dtype``: the UNet's and
        autoencoder's compute dtype, whatever they are stored in (a folder stored in fp16 still runs in fp32
        by default); None keeps the stored dtype."""
        if directory is None:
            from higen.assets import bundled_model_path

            directory = bundled_model_path()
        directory = Path(directory)
        index_path = directory / "model_index.json"
        if not index_path.is_file():
            raise FileNotFoundError(f"{directory} is not a higen model folder (no model_index.json)")
        index = read_json(index_path)
        if not isinstance(index, dict) or index.get("format") != FOLDER_FORMAT:
            raise ValueError(f"{index_path} is not a higen model index")
        missing = [c for c in ("unet", "text_encoder", "autoencoder") if c not in index.get("components", [])]
        if missing:
            raise ValueError(
                f"{directory} has no {' or '.join(missing)}: it holds a converted UNet only; convert again with "
                "--open-clip and --sd-checkpoint (the release's text encoder and autoencoder files) to make a full model"
            )
        from higen.encoders.autoencoder import VideoAutoencoder
        from higen.encoders.text import load_text_encoder

        defaults = GenerationSettings.load(directory / "pipeline.json")
        schedule = NoiseSchedule.from_dict(read_json(directory / "scheduler.json"))
        unet = HiGenUNet.from_pretrained(directory / "unet", device=device, dtype=dtype)
        text_encoder = _load_component(directory / "text_encoder", load_text_encoder)
        autoencoder = _load_component(directory / "autoencoder", VideoAutoencoder.from_pretrained)
        pipe = cls(unet, text_encoder, autoencoder, schedule, defaults)
        text_encoder.to(device)
        autoencoder.to(device=device, dtype=dtype)
        return pipe


def write_model_folder(
    directory: str | os.PathLike,
    unet: HiGenUNet,
    text_encoder=None,
    autoencoder=None,
    schedule: NoiseSchedule | None = None,
    defaults: GenerationSettings | None = None,
    dtype: torch.dtype | None = None,
    replace: bool = False,
) -> None:
    """Write a model folder, possibly with the UNet alone (a converted checkpoint without its encoders).

    Built in a temporary folder beside the target and renamed, so it appears whole or not at all. An existing
    non-empty ``directory`` is an error unless ``replace`` (then it is swapped out only once the new one is whole).
    """
    with atomic_directory(directory, may_replace=(lambda _: True) if replace else None) as tmp:
        components = ["unet"]
        unet.save_pretrained(tmp / "unet", dtype=dtype)
        if text_encoder is not None:
            text_encoder.save_pretrained(tmp / "text_encoder")
            components.append("text_encoder")
        if autoencoder is not None:
            autoencoder.save_pretrained(tmp / "autoencoder")
            components.append("autoencoder")
        (tmp / "scheduler.json").write_text(json.dumps((schedule or NoiseSchedule()).to_dict(), indent=2) + "\n")
        (tmp / "pipeline.json").write_text(json.dumps((defaults or GenerationSettings()).to_dict(), indent=2) + "\n")
        index = {"format": FOLDER_FORMAT, "version": FOLDER_VERSION, "components": components}
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _load_component(folder: Path, load: Callable):
    """``load(folder)``; whatever another library raises on a corrupt file becomes one line naming the folder."""
    try:
        return load(folder)
    except (CheckpointError, FileNotFoundError):
        raise
    except Exception as err:  # noqa: BLE001 - transformers/diffusers/safetensors raise many kinds on a corrupt file
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(f"cannot load {folder} (a corrupt or foreign file?): {type(err).__name__}: {first}") from None


def _stage_callback(callback: ProgressCallback | None, stage: str):
    if callback is None:
        return None
    return lambda i, n, _x: callback(stage, i + 1, n)


class NonFiniteError(ValueError):
    """Generation produced NaN or infinite values (corrupt weights, or a model pushed past what it can compute)."""


def check_finite(what: str, tensor: torch.Tensor) -> None:
    if not torch.isfinite(tensor).all():
        raise NonFiniteError(f"NaN or infinite values in {what}: the model's weights may be corrupt, or the settings too extreme for it")


def _check_shape(name: str, tensor: torch.Tensor, shape: tuple) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected {tuple(shape)}")
