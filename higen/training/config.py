"""The training configuration: typed dataclasses, loaded from YAML, overridden by ``a.b=value``.

Every value is checked against its field's type when it is read, so ``optim.lr=1e-4`` is a float
and ``optim.lr=fast`` is an error naming the key (the reference stored command-line overrides as
strings, which broke numeric settings: higen.md §6). Unknown keys are errors too, with a suggestion.
All errors are ``ValueError`` with one readable message; the CLI prints it and exits 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from higen.data.config import DataSection
from higen.models.config import UNetConfig

# ------------------------------------------------------------------------------------ sections


@dataclass
class ModelSection:
    """Where the weights come from. ``init``: ``scratch`` (``unet`` below), ``vgen`` (a released /
    VGen ``UNetSD_HiGen`` checkpoint at ``path``: fine-tuning) or ``folder`` (a higen model folder)."""

    init: str = "scratch"
    path: str | None = None  # vgen: the .pth/.safetensors file; folder: the model folder
    vgen_config: str | None = None  # vgen: JSON of the VGen constructor kwargs (default: the release's)
    unet: UNetConfig = field(default_factory=UNetConfig)  # scratch only; otherwise taken from the weights
    text_encoder: str | None = None  # text-encoder folder, open_clip_pytorch_model.bin or minilm; default: the model folder's
    tokenizer: str | None = None  # with an OpenCLIP .bin text encoder: CLIP tokenizer folder or bpe_simple_vocab_16e6.txt.gz
    autoencoder: str | None = None  # autoencoder folder or SD 2.1 .ckpt; default: the model folder's autoencoder/
    dropout: float | None = None  # override the UNet's ResBlock/temporal dropout (None: keep the model's)
    # folder / vgen: give the loaded UNet a moving spatial prior (UNetConfig.prior_motion), zero-initialised, so the
    # model computes exactly what it did until it is trained. Not in the release.
    add_prior_motion: bool = False


@dataclass
class CuesSection:
    """How the HiGen conditioning is built from a training sample (higen.md §1, §2)."""

    caption_dropout: float = 0.1  # probability of training a sample with the null text "" (CFG)
    image_probability: float = 0.0  # per-step probability of an image step (F = 1: the spatial stage)
    # The appearance embedder whose per-frame embeddings measure the appearance cue: openclip | histogram |
    # ones (no embedder: appearance never changes); auto = openclip when open_clip is set, else histogram.
    appearance_embedder: str = "auto"
    open_clip: str | None = None  # open_clip_pytorch_model.bin (ViT-H-14) or a saved image-embedder folder
    appearance_scale: float | None = None  # k in 1 - k (1 - cos); None: 5 for openclip (the release), 10 for histogram
    offset_noise: float = 0.1  # the release's noise_strength
    # False trains the plain text-to-video ablation: no spatial prior (zeros), motion 0, appearance ones
    # on every step; the exported model then samples in one stage (GenerationSettings.decoupled).
    decoupled: bool = True


@dataclass
class LossSection:
    """The denoising loss: the release's plain v-prediction MSE (higen.md §4) unless reweighted here."""

    # Per-position weights 1 + w * d / max d from the clean latents, d = distance from the row's background
    # (higen.training.loss.contrast_weights), normalised to mean 1 per frame. For small objects on plain
    # backgrounds (the procedural world) the object is a few percent of the loss and its colour and shape are
    # learnt last; w > 0 moves the loss towards it. 0: the release's loss.
    foreground_weight: float = 0.0
    # Training timesteps are drawn uniformly from [low, high) (the release: all of [0, 1000)). A narrower
    # range trains one end of the schedule only, e.g. (500, 1000): the noisy steps where a video's layout and
    # motion are decided (docs/bundled_model.md); the other steps then drift.
    timesteps: tuple[int, int] = (0, 1000)
    # Min-SNR-gamma per-sample weights (Hang et al., ICCV 2023; higen.training.loss.min_snr_weights), e.g. 5.
    # 0: the release's unweighted loss.
    snr_gamma: float = 0.0
    # Min-SNR-gamma of the video steps alone (None: snr_gamma). 0 keeps the plain v-loss on video steps: Min-SNR-5
    # weights the noisiest timesteps, where a clip's motion and its cues' effect are decided, at a hundredth or less.
    video_snr_gamma: float | None = None
    # Weight of the attribute context's cross-entropy (model.unet.attribute_values: not in the release) against
    # the attributes each caption states, read by the procedural world's caption parser
    # (higen.world.captions.attribute_labels); added to the denoising loss. 0: the denoising loss alone.
    attribute_weight: float = 0.0


@dataclass
class ParamGroupRule:
    """Parameters whose name matches ``pattern`` (``re.search``; ``@spatial`` = the pretrained image
    weights, i.e. everything but the temporal layers and HiGen's cue/prior embeddings). First match wins."""

    pattern: str = ""
    freeze: bool = False
    lr_scale: float = 1.0
    grad_scale: float = 1.0


@dataclass
class OptimSection:
    """AdamW with linear warm-up then cosine decay to zero (the release: lr 3e-5, no weight decay, 10 warm-up steps)."""

    lr: float = 3e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 10
    schedule: str = "cosine"  # cosine | constant
    decay_steps: int | None = None  # length of warm-up + cosine; None: train.max_steps
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    param_groups: list[ParamGroupRule] = field(default_factory=list)


@dataclass
class TrainSection:
    output_dir: str = "runs/higen"
    seed: int = 6666
    max_steps: int = 1000
    batch_size: int = 1  # clips per process per micro-step
    image_batch_size: int | None = None  # images per process per micro-step on image steps (None: batch_size)
    grad_accum: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16: CUDA only, with a gradient scaler)
    device: str = "auto"  # auto | cpu | cuda
    gradient_checkpointing: bool = False
    deterministic: bool = False  # torch.use_deterministic_algorithms (bitwise resume on GPU; slower)
    resume: str | None = None  # auto (the latest checkpoint in output_dir, if any) | a checkpoint folder


@dataclass
class EMASection:
    enabled: bool = True
    decay: float = 0.9999
    warmup: bool = True  # decay_n = min(decay, (1 + n) / (10 + n)): early EMA tracks the weights


@dataclass
class CheckpointSection:
    every: int = 1000  # steps between checkpoints (the last step is always saved); 0: none at all (benchmarks)
    keep_last: int = 3
    export_model: bool = True  # write output_dir/model/ (a model folder for `higen generate`) at the end
    export_ema: bool = True  # ... with the EMA weights (when EMA is on)


@dataclass
class LogSection:
    every: int = 10
    tensorboard: bool = True  # event files when tensorboard is installed; log.jsonl is always written
    progress: bool = True


@dataclass
class SampleSection:
    """Sample videos through HiGenPipeline every ``every`` steps (0: never)."""

    every: int = 0
    prompts: list[str] = field(default_factory=lambda: ["a red square moving right"])
    frames: int | None = None  # None: data.frames
    height: int | None = None
    width: int | None = None
    steps: int = 25
    guidance: float = 9.0
    seed: int = 0
    use_ema: bool = True
    fps: float = 8.0


@dataclass
class DistributedSection:
    strategy: str = "ddp"  # ddp | fsdp
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    timeout_minutes: int = 30


@dataclass
class DebugSection:
    """Fault injection for tests of crash safety; never set these in a real run."""

    kill_after_step: int | None = None  # SIGKILL this process right after this step (after its checkpoint, if one is due)
    kill_during_checkpoint: int | None = None  # SIGKILL in the middle of writing this step's checkpoint


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    cues: CuesSection = field(default_factory=CuesSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    ema: EMASection = field(default_factory=EMASection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    log: LogSection = field(default_factory=LogSection)
    sample: SampleSection = field(default_factory=SampleSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)
    debug: DebugSection = field(default_factory=DebugSection)
    # Generation defaults written into the exported model folder's pipeline.json (any GenerationSettings
    # field, e.g. motion, appearance, sampler, spatial_steps); frames / size / fps default to the data's.
    generation: dict = field(default_factory=dict)

    def validate(self) -> None:
        _validate(self)

    def to_dict(self) -> dict:
        return _plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_CHOICES = {
    "model.init": ("scratch", "vgen", "folder"),
    "data.source": ("manifest", "webdataset", "world", "cache"),
    "data.min_frames_policy": ("skip", "pad"),
    "cues.appearance_embedder": ("auto", "openclip", "histogram", "ones"),
    "optim.schedule": ("cosine", "constant"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "distributed.strategy": ("ddp", "fsdp"),
    "distributed.backend": ("auto", "nccl", "gloo"),
}


def _validate(cfg: TrainConfig) -> None:
    from higen.pipeline.settings import GenerationSettings

    try:
        GenerationSettings.from_dict(cfg.generation)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config: generation: {err}") from None
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ValueError(f"config: {key} must be one of {', '.join(choices)}; got {value!r}")
    positive = {
        "train.max_steps": cfg.train.max_steps, "train.batch_size": cfg.train.batch_size, "train.grad_accum": cfg.train.grad_accum,
        "data.frames": cfg.data.frames, "data.height": cfg.data.height, "data.width": cfg.data.width,
        "checkpoint.keep_last": cfg.checkpoint.keep_last, "log.every": cfg.log.every,
        "data.length": cfg.data.length,
    }
    if cfg.train.image_batch_size is not None:
        positive["train.image_batch_size"] = cfg.train.image_batch_size
    for key, value in positive.items():
        if value < 1:
            raise ValueError(f"config: {key} must be at least 1; got {value}")
    for key, value in (("cues.caption_dropout", cfg.cues.caption_dropout), ("cues.image_probability", cfg.cues.image_probability)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"config: {key} is a probability in [0, 1]; got {value}")
    if cfg.cues.appearance_scale is not None and cfg.cues.appearance_scale <= 0:
        raise ValueError(f"config: cues.appearance_scale must be positive; got {cfg.cues.appearance_scale}")
    low, high = cfg.loss.timesteps
    if not 0 <= low < high:
        raise ValueError(f"config: loss.timesteps must be [low, high) with 0 <= low < high; got {list(cfg.loss.timesteps)}")
    if cfg.loss.snr_gamma < 0:
        raise ValueError(f"config: loss.snr_gamma must not be negative (0: no Min-SNR weighting); got {cfg.loss.snr_gamma}")
    if cfg.loss.video_snr_gamma is not None and cfg.loss.video_snr_gamma < 0:
        raise ValueError(f"config: loss.video_snr_gamma must not be negative (0: no Min-SNR weighting); got {cfg.loss.video_snr_gamma}")
    if cfg.loss.foreground_weight < 0:
        raise ValueError(f"config: loss.foreground_weight must not be negative (0: the plain loss); got {cfg.loss.foreground_weight}")
    if cfg.loss.attribute_weight < 0:
        raise ValueError(f"config: loss.attribute_weight must not be negative (0: off); got {cfg.loss.attribute_weight}")
    if cfg.cues.offset_noise < 0:
        raise ValueError(f"config: cues.offset_noise must not be negative; got {cfg.cues.offset_noise}")
    if cfg.optim.grad_clip < 0:
        raise ValueError(f"config: optim.grad_clip must not be negative (0 turns clipping off); got {cfg.optim.grad_clip}")
    if cfg.checkpoint.every < 0:
        raise ValueError(f"config: checkpoint.every must not be negative (0: no checkpoints); got {cfg.checkpoint.every}")
    if cfg.sample.every < 0:
        raise ValueError(f"config: sample.every must not be negative (0: never); got {cfg.sample.every}")
    if cfg.optim.lr <= 0:
        raise ValueError(f"config: optim.lr must be positive; got {cfg.optim.lr}")
    if not 0.0 <= cfg.ema.decay < 1.0:
        raise ValueError(f"config: ema.decay must be in [0, 1); got {cfg.ema.decay}")
    if cfg.model.add_prior_motion and cfg.model.init == "scratch":
        raise ValueError("config: model.add_prior_motion widens loaded weights; from scratch set model.unet.prior_motion")
    if cfg.model.init != "scratch" and not cfg.model.path:
        raise ValueError(f"config: model.init={cfg.model.init} needs model.path")
    if cfg.cues.appearance_embedder == "openclip" and not cfg.cues.open_clip:
        raise ValueError("config: cues.appearance_embedder=openclip needs cues.open_clip (the OpenCLIP ViT-H-14 weights file)")
    if cfg.data.source in ("manifest", "webdataset", "cache") and not cfg.data.videos and not cfg.data.images:
        raise ValueError(f"config: data.source={cfg.data.source} needs data.videos (and/or data.images)")
    cfg.data.validate()
    for i, rule in enumerate(cfg.optim.param_groups):
        if not rule.pattern:
            raise ValueError(f"config: optim.param_groups.{i}.pattern is empty")
        _compile_pattern(rule.pattern, f"optim.param_groups.{i}.pattern")
    cfg.model.unet.validate()


def _compile_pattern(pattern: str, key: str):
    import re

    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(f"config: {key} is not a valid regular expression: {err}") from None


# --------------------------------------------------------------------------------- loading


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), cls: type = None) -> Any:
    """Read a YAML file (None: all defaults), apply ``a.b=value`` overrides, validate.

    ``cls`` is the config dataclass (default :class:`TrainConfig`); it is validated by its ``validate()``.
    """
    cls = cls or TrainConfig
    data = read_config_file(path) if path is not None else {}
    cfg = from_dict(cls, data, "")
    for item in overrides:
        apply_override(cfg, item)
    cfg.validate()
    return cfg


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping, with its ``base:`` (another config file, relative to this one) read first.

    The file's own sections are merged into its base's key by key (a section it names replaces only the keys
    it sets); lists and single values replace the base's. A base may have a base of its own.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise ValueError(f"config files name each other as base in a loop: {chain}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level of a config must be a mapping of sections")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f"{path}: base must be the path of another config file, got {base!r}")
    return _merged(read_config_file(path.parent / base, (*_seen, path.resolve())), data)


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def from_dict(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types; ``prefix`` names it in errors."""
    where = prefix or "the config"
    if not isinstance(data, dict):
        raise ValueError(f"config: {where} must be a mapping; got {type(data).__name__} {data!r}")
    hints = _hints(cls)
    for key in data:
        if key not in hints:
            raise ValueError(_unknown_key(f"{prefix}.{key}" if prefix else str(key), list(hints)))
    kwargs = {key: _coerce(value, hints[key], f"{prefix}.{key}" if prefix else key) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:  # e.g. UNetConfig's own validation
        raise ValueError(f"config: {where}: {err}") from None


def apply_override(cfg: TrainConfig, item: str) -> None:
    """``section.key=value`` (list items by index: ``optim.param_groups.0.lr_scale=2``; one entry of a
    mapping such as ``generation.motion=30``, kept beside the mapping's other entries)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-4)")
    parts = key.split(".")
    obj: Any = cfg
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if dataclasses.is_dataclass(obj):
            hints = _hints(type(obj))
            if part not in hints:
                raise ValueError(_unknown_key(here, list(hints)))
            if last:
                setattr(obj, part, _coerce(_parse_scalar(raw, hints[part]), hints[part], here))
            else:
                obj = getattr(obj, part)
        elif isinstance(obj, dict):
            if not last:
                raise ValueError(f"config: {here}: {here} is one value and has no sub-keys")
            hint = _mapping_entry_hints(parts[0]).get(part)
            value = _parse_scalar(raw, hint if hint is not None else Any)
            obj[part] = _coerce(value, hint, here) if hint is not None else value  # unknown keys: validate() names them
        elif isinstance(obj, list):
            if not part.isdigit() or int(part) >= len(obj):
                raise ValueError(f"config: {here}: {part!r} is not an index of a list of {len(obj)} items")
            if last:
                raise ValueError(f"config: {here}: give a field of the item, e.g. {here}.pattern=...")
            obj = obj[int(part)]
        else:
            raise ValueError(f"config: {here}: {'.'.join(parts[:depth])} has no sub-keys")


def _mapping_entry_hints(section: str) -> dict[str, Any]:
    """The types of a mapping section's entries: ``generation`` holds GenerationSettings fields."""
    if section == "generation":
        from higen.pipeline.settings import GenerationSettings

        return _hints(GenerationSettings)
    return {}


def _parse_scalar(raw: str, hint: Any) -> Any:
    """Command-line text -> a Python value: YAML syntax, except that string fields take the text as is."""
    if _strip_optional(hint) is str:
        if raw.strip().lower() in ("null", "none", "~") and _is_optional(hint):
            return None
        return raw
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return raw


# ------------------------------------------------------------------------------------- types


def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_optional(hint: Any) -> bool:
    return _is_union(hint) and type(None) in typing.get_args(hint)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _strip_optional(hint: Any) -> Any:
    if _is_optional(hint):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
    return hint


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check (and gently convert) ``value`` to type ``hint``; ``ValueError`` naming ``key`` otherwise."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null") and _is_optional(hint)):
        if _is_optional(hint):
            return None
        raise ValueError(f"config: {key} must not be empty (expected {_type_name(hint)})")
    hint = _strip_optional(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise ValueError(f"config: {key} must have {len(args)} items; got {len(value)}")
                return tuple(_coerce(v, a, f"{key}.{i}") for i, (v, a) in enumerate(zip(value, args)))
            items = [_coerce(v, args[0], f"{key}.{i}") for i, v in enumerate(value)] if args else list(value)
            return tuple(items) if origin is tuple else items
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return dict(value)
    elif hint is Any:
        return value
    raise ValueError(f"config: {key} must be {_type_name(hint)}; got {value!r}")


def _type_name(hint: Any) -> str:
    hint = _strip_optional(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (int, float, str, bool):
        return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}[hint.__name__]
    if origin in (list, tuple):
        return f"a list of {_type_name(args[0]) if args else 'values'}"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return str(hint)


def _unknown_key(key: str, known: list[str]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"config: unknown key {key!r}{hint} (known here: {', '.join(known)})"


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


__all__ = [
    "TrainConfig", "ModelSection", "CuesSection", "ParamGroupRule", "OptimSection", "TrainSection",
    "EMASection", "CheckpointSection", "LogSection", "SampleSection", "DistributedSection", "DebugSection",
    "load_config", "apply_override", "from_dict",
]
