"""What one generation is asked to do: :class:`GenerationSettings`, validated once, where it is made.

A model folder stores its defaults as one (``pipeline.json``); a call, the ``higen generate`` flags and
the web page's fields each give some settings over them (:meth:`GenerationSettings.replace`), and the
pipeline reads the result by attribute. Every value is checked when a settings object is created: a bad
one is a :class:`SettingError` (a ``ValueError``) naming the setting.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from higen.diffusion.sampling import SAMPLERS
from higen.encoders.text import NULL_TEXT


class SettingError(ValueError):
    """A bad generation setting; ``setting`` is its name (the command line turns it into its flag)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class GenerationSettings:
    """Settings of one generation. Defaults are the release's (higen.md §4)."""

    frames: int = 32
    height: int = 256  # pixels; a multiple of the model's size multiple (checked by the pipeline)
    width: int = 448
    fps: float = 8.0  # frame rate of the written video
    spatial_steps: int = 50
    temporal_steps: int = 50
    spatial_guidance: float = 12.0  # classifier-free guidance scale; 1 runs the conditional branch alone
    temporal_guidance: float = 12.0
    sampler: str = "ddim"
    motion: float = 500.0  # the motion control: larger means more motion
    appearance: float = 1.0  # the appearance control: 0 keeps appearance fixed, larger changes it more
    negative_prompt: str = NULL_TEXT  # the unconditional branch of guidance (training's caption dropout uses the same)
    offset_noise: float = 0.1  # strength of the temporal stage's offset noise
    decode_chunk_size: int = 2  # frames the autoencoder decodes at once
    # False for a model trained without HiGen's decoupling (no spatial prior, no cues: the plain
    # text-to-video ablation): one sampling stage, and the spatial stage's cues whatever the controls say,
    # exactly what that model saw in training.
    decoupled: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _typed(f.name, f.type, getattr(self, f.name)))
        for name in ("frames", "spatial_steps", "temporal_steps", "decode_chunk_size", "height", "width"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("spatial_guidance", "temporal_guidance", "offset_noise"):
            if getattr(self, name) < 0:
                raise SettingError(name, f"{name} must not be negative, got {getattr(self, name)}")
        if self.fps <= 0:
            raise SettingError("fps", f"fps must be positive, got {self.fps}")
        if self.sampler not in SAMPLERS:
            raise SettingError("sampler", f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")

    def replace(self, **changes) -> "GenerationSettings":
        """A copy with ``changes`` (a None value keeps the current setting), validated."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown generation settings: {', '.join(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check_size(self, multiple: int) -> None:
        """Height and width must be multiples of ``multiple`` (the autoencoder's times the UNet's downsampling)."""
        for name in ("height", "width"):
            if getattr(self, name) % multiple:
                raise SettingError(name, f"{name} {getattr(self, name)} must be a positive multiple of {multiple} (autoencoder x UNet downsampling)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GenerationSettings":
        return cls().replace(**d) if d else cls()

    @classmethod
    def load(cls, path) -> "GenerationSettings":
        """Settings from a JSON file (a model folder's ``pipeline.json``); a bad file or value names the file."""
        from higen.io.files import read_json

        d = read_json(path)
        if not isinstance(d, dict):
            raise ValueError(f"{path} does not hold a JSON object of generation settings")
        try:
            return cls.from_dict(d)
        except SettingError as err:
            raise SettingError(err.setting, f"{path}: {err}") from None
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes 64-bit seeds


def check_seed(seed) -> int:
    """A seed as an int in ``[0, 2**64)``, or a :class:`SettingError` naming it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Real) or not 0 <= seed < SEED_LIMIT or int(seed) != seed:
        raise SettingError("seed", f"seed must be a whole number from 0 to 2**64 - 1, got {seed}")
    return int(seed)


def _typed(name: str, kind: str, value):
    """``value`` as the field's type (``int``, ``float``, ``str``, ``bool``), or a :class:`SettingError`."""
    if kind == "bool":
        if not isinstance(value, bool):
            raise SettingError(name, f"{name} must be true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise SettingError(name, f"{name} must be text, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingError(name, f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise SettingError(name, f"{name} must be a finite number, got {value}")
    if kind == "int":
        if not float(value).is_integer():
            raise SettingError(name, f"{name} must be a whole number, got {value}")
        return int(value)
    return float(value)


__all__ = ["GenerationSettings", "SettingError", "check_seed"]
