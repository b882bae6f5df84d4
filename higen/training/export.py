"""A training checkpoint as a model folder (``higen train-export``): evaluate or ship any step of a run.

The trainer exports ``output_dir/model/`` only at the end of a run; this writes the same folder from any
complete checkpoint, using the config the checkpoint recorded (its text encoder, autoencoder, UNet config
and generation defaults) and its EMA weights by default. ``generation.KEY=VALUE`` overrides change the
exported generation defaults (pipeline.json) without retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from higen.training import checkpoint as ckpt
from higen.training.components import generation_defaults, load_components
from higen.training.config import TrainConfig, apply_override, from_dict


def export_checkpoint(
    checkpoint: str | Path, target: str | Path, use_ema: bool = True, overrides: Sequence[str] = ()
) -> Path:
    """Write the model folder of ``checkpoint`` (a ``checkpoints/step_*`` folder, or a run's output folder
    for its latest checkpoint) to ``target``. ``use_ema`` False takes the raw (non-EMA) weights.
    ``overrides``: ``generation.KEY=VALUE`` items over the recorded config's generation defaults."""
    from higen.pipeline.pipeline import write_model_folder

    for item in overrides:
        if not item.strip().startswith("generation."):
            raise ValueError(f"train-export overrides only generation settings (generation.KEY=VALUE); got {item!r}")
    checkpoint = ckpt.locate_checkpoint(checkpoint)
    tensors, meta = ckpt.load_checkpoint(checkpoint)
    cfg: TrainConfig = from_dict(TrainConfig, meta["config"], "")
    for item in overrides:
        apply_override(cfg, item)
    cfg.validate()
    if use_ema and "ema" not in tensors:
        raise ValueError(f"{checkpoint} has no EMA weights (the run had ema.enabled=false); export without EMA")
    components = load_components(cfg, load_unet_weights=False)
    unet = components.unet
    state = {name: tensors["model"][name] for name in tensors["model"]}
    if use_ema:
        state.update({name: tensors["ema"][name] for name in tensors["ema"]})
    unet.load_state_dict(state, strict=True, assign=True)  # build_unet(load_weights=False) leaves it on "meta"
    write_model_folder(target, unet.eval(), components.text_encoder, components.autoencoder, components.schedule,
                       generation_defaults(cfg, components.defaults), replace=True)
    return Path(target)


__all__ = ["export_checkpoint"]
