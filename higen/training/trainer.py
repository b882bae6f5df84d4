"""The HiGen trainer: ``train(cfg)`` / ``higen train --config FILE.yaml [key=value ...]``.

One linear, sectioned function (nanoGPT style). Per optimiser step:

1. one draw keyed by (seed, step) decides an image step (F = 1, the spatial stage) or a video step,
   the same on every rank whatever the number of processes (the release tied it to GPU ranks);
2. ``grad_accum`` micro-batches: the data layer's batch -> frozen encoders -> (latents, text, prior,
   motion, appearance) -> v-prediction loss with per-sample timesteps and noise keyed by (seed, step,
   global sample index) -> backward (gradient sync only on the last micro-batch);
3. gradient scaling per parameter group, clipping, AdamW, LR schedule, EMA;
4. on rank 0: log, samples every ``sample.every`` steps, checkpoints every ``checkpoint.every``.

Because every random number is keyed by the step and the sample (the global torch RNG, which dropout
uses, is re-seeded per step from (seed, step, rank)), a run resumed from a checkpoint continues
bitwise like an uninterrupted one on the CPU, and two processes with batch 1 compute what one
process with batch 2 computes (up to the order of floating-point sums in the gradient all-reduce).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from higen.training import checkpoint as ckpt
from higen.training.components import Components, expected_unet_config, generation_defaults, load_components, unet_differences
from higen.training.conditioning import Conditioner, keyed_seed, resolve_appearance_scale, sample_generators, step_kind
from higen.training.config import TrainConfig
from higen.training.distributed import (
    World, barrier, gather_objects, mean_over_ranks, no_gradient_sync, setup, sum_over_ranks, teardown, unwrap, wrap_model,
)
from higen.training.logging import TrainLogger
from higen.training.loss import AttributeLoss, VPredictionLoss, draw_noise, draw_timesteps
from higen.training.optim import EMA, build_param_groups, make_lr_schedule, make_optimizer, scale_gradients

# Settings that must not change when resuming: they decide which samples and random numbers each
# step uses, or what the optimiser state belongs to. Everything else (lr, max_steps, logging, ...) may.
RESUME_MUST_MATCH = (
    "train.seed", "train.batch_size", "train.image_batch_size", "train.grad_accum",
    "data.source", "data.videos", "data.images", "optim.param_groups",
)
# Settings that never matter for compatibility and are not reported as changes.
_RESUME_IGNORED = ("debug.", "train.resume", "train.output_dir", "log.", "sample.")
_DROPOUT_STREAM = 6  # keyed_seed purpose of the per-step global RNG re-seed


@dataclass
class TrainResult:
    step: int  # the last completed optimiser step
    loss: float | None  # the last logged loss (mean over ranks)
    output_dir: Path
    checkpoint: Path | None
    model_dir: Path | None


DataFactory = Callable[[TrainConfig, World, Components], object]


def train(cfg: TrainConfig, components: Components | None = None, data_factory: DataFactory | None = None) -> TrainResult:
    """Train HiGen as ``cfg`` says (launch several processes with ``torchrun``).

    ``components`` and ``data_factory`` replace the models named by the config and the data layer
    (tests and notebooks); ``data_factory(cfg, world, components)`` returns an object with the
    ``TrainingData`` interface of ``higen.data``.
    """
    cfg.validate()
    flush_denormals()
    # FSDP2 warns that the UNet returns a view (rearrange); only an in-place op on it would be wrong,
    # and the loss uses none.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    world = setup(cfg.train.device, cfg.distributed)
    try:
        with contextlib.ExitStack() as cleanup:  # data loader workers, log files: closed on errors too
            return _train(cfg, world, components, data_factory, cleanup)
    finally:
        teardown(world)


def flush_denormals() -> None:
    """Treat subnormal floats as zero on the CPU (no effect on GPUs, which do so in their fast paths).

    Early in training (LR warm-up, zero-initialised branches, Adam's second moments of tiny gradients)
    many values are subnormal, and x86 CPUs handle those in microcode: we measured CPU steps 10-30x
    slower until the values grew. The numbers that change are below 1.2e-38.
    """
    torch.set_flush_denormal(True)


def _train(cfg: TrainConfig, world: World, components: Components | None, data_factory: DataFactory | None,
           cleanup: contextlib.ExitStack) -> TrainResult:
    t_cfg, device = cfg.train, world.device

    # ---------------------------------------------------------------- 1. run folder and resume
    _check_precision(cfg, device)
    if t_cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    output_dir = Path(t_cfg.output_dir)
    ckpt_root = output_dir / "checkpoints"
    if world.is_main:
        ckpt.clean_partial(ckpt_root)
    barrier(world)
    resume_from = ckpt.resolve_resume(t_cfg.resume, ckpt_root)
    if t_cfg.resume is None and ckpt.list_checkpoints(ckpt_root):
        raise ValueError(
            f"{output_dir} already holds checkpoints; continue it with --resume (train.resume=auto) "
            "or choose another train.output_dir"
        )
    saved_tensors, saved_meta = ckpt.load_checkpoint(resume_from) if resume_from else ({}, {})
    unet_config = components.unet.config if components is not None else expected_unet_config(cfg)
    resume_notes = _check_resume(saved_meta, cfg, unet_config, world) if resume_from else []

    # ---------------------------------------------------------------- 2. data and models
    # Data first, so a bad manifest fails in seconds; a latent cache is checked against the encoders.
    if components is None and cfg.data.source == "cache":
        components = load_components(cfg, load_unet_weights=resume_from is None)
    data = (data_factory or make_training_data)(cfg, world, components)
    cleanup.callback(data.close)
    if not (data.has_videos() or data.has_images()):
        raise ValueError("the training data hold no videos and no images")
    if components is None:
        components = load_components(cfg, load_unet_weights=resume_from is None)
    unet = components.unet
    if resume_from:
        unet.load_state_dict(dict(saved_tensors["model"]), assign=True)
    unet.gradient_checkpointing = t_cfg.gradient_checkpointing
    build_param_groups(unet, cfg.optim.param_groups)  # sets requires_grad=False on frozen weights before wrapping
    unet.to(device).train()
    for frozen in (components.text_encoder, components.autoencoder, components.embedder):
        if frozen is not None:
            frozen.to(device).eval()
    # Image steps (F = 1) leave the temporal layers without gradients: DDP must then expect unused parameters.
    image_steps = data.has_images() and (cfg.cues.image_probability > 0 or not data.has_videos())
    model = wrap_model(unet, world, cfg.distributed, find_unused=image_steps)
    groups = build_param_groups(unwrap(model), cfg.optim.param_groups)  # the (possibly sharded) parameters now
    names = {p: n for g in groups for p, n in zip(g.params, g.names)}
    trainable = {n: p for p, n in names.items()}

    # ---------------------------------------------------------------- 3. optimisation
    optimizer = make_optimizer(groups, cfg.optim)
    lr_schedule = make_lr_schedule(optimizer, cfg.optim, t_cfg.max_steps)
    scaler = torch.amp.GradScaler("cuda") if t_cfg.precision == "fp16" else None
    ema = EMA(trainable, cfg.ema.decay, cfg.ema.warmup) if cfg.ema.enabled else None
    video_gamma = cfg.loss.snr_gamma if cfg.loss.video_snr_gamma is None else cfg.loss.video_snr_gamma
    loss_fns = {"image": VPredictionLoss(components.schedule, cfg.loss.foreground_weight, cfg.loss.snr_gamma),
                "video": VPredictionLoss(components.schedule, cfg.loss.foreground_weight, video_gamma)}
    attribute_loss = AttributeLoss(unet.config.attribute_values, cfg.loss.attribute_weight) if cfg.loss.attribute_weight else None
    t_low, t_high = cfg.loss.timesteps
    if t_high > components.schedule.num_train_timesteps:
        raise ValueError(f"config: loss.timesteps {list(cfg.loss.timesteps)} goes past the schedule's {components.schedule.num_train_timesteps} steps")
    conditioner = Conditioner(
        components.text_encoder, components.autoencoder, components.embedder, seed=t_cfg.seed,
        caption_dropout=cfg.cues.caption_dropout, appearance_scale=resolve_appearance_scale(cfg.cues), device=device,
        autocast=lambda: _autocast(t_cfg.precision, device), decoupled=cfg.cues.decoupled,
    )

    # ---------------------------------------------------------------- 4. restore
    start_step = 0
    if resume_from:
        start_step = int(saved_meta["step"])
        _restore(saved_meta, saved_tensors, optimizer, names, lr_schedule, scaler, ema, data, world)
        del saved_tensors
    logger = TrainLogger(output_dir, enabled=world.is_main, tensorboard=cfg.log.tensorboard, progress=cfg.log.progress,
                         start_step=start_step, max_steps=t_cfg.max_steps)
    cleanup.callback(logger.close)
    if world.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        from higen.io.files import atomic_write_text

        atomic_write_text(output_dir / "config.yaml", cfg.to_yaml())
        if resume_from:
            logger.message(f"resuming from {resume_from} (step {start_step})" + "".join(f"\n  changed: {n}" for n in resume_notes))
        n_train = sum(p.numel() for p in trainable.values())
        logger.message(f"training {n_train:,} of {unet.num_parameters():,} UNet parameters on {world.world_size} process(es), "
                       f"{device.type}, {t_cfg.precision}; steps {start_step} -> {t_cfg.max_steps}")

    # ---------------------------------------------------------------- 5. the loop
    micro_batch = {"video": t_cfg.batch_size, "image": t_cfg.image_batch_size or t_cfg.batch_size}
    last_loss, last_ckpt = None, resume_from
    # Throughput counts training steps only (not checkpoints or samples).
    loss_sum, loss_steps, clips, busy = torch.zeros((), device=device), 0, 0, 0.0
    epochs = _epochs(data)
    step = start_step
    for step in range(start_step + 1, t_cfg.max_steps + 1):
        # Dropout draws from the global RNG: key it by (seed, step, rank) so a resumed run, or a data
        # loader that draws worker seeds from it, cannot shift it.
        t_step = time.perf_counter()
        torch.manual_seed(keyed_seed(t_cfg.seed, step, world.rank, _DROPOUT_STREAM))
        kind = step_kind(t_cfg.seed, step, cfg.cues.image_probability, data.has_images(), data.has_videos())
        step_loss = torch.zeros((), device=device)
        for micro in range(t_cfg.grad_accum):
            batch = data.next_batch(kind)
            inputs = conditioner(batch, step)
            t = draw_timesteps(sample_generators(t_cfg.seed, step, inputs.indices, "timestep"), t_high, t_low)
            noise = draw_noise(sample_generators(t_cfg.seed, step, inputs.indices, "noise"), tuple(inputs.latents.shape[1:]), cfg.cues.offset_noise)
            with no_gradient_sync(model, micro < t_cfg.grad_accum - 1):
                with _autocast(t_cfg.precision, device):
                    loss = loss_fns[kind](model, inputs.latents, t, noise, text=inputs.text, **inputs.cues.unet_kwargs()).mean()
                    if attribute_loss is not None:
                        loss = loss + attribute_loss(unwrap(model).text_resampler, inputs.text, batch.captions, inputs.dropped)
                    loss = loss / t_cfg.grad_accum
                (scaler.scale(loss) if scaler is not None else loss).backward()
            step_loss += loss.detach()
        if scaler is not None:
            scaler.unscale_(optimizer)
        scale_gradients(groups)
        grad_norm = _clip_gradients(list(trainable.values()), cfg.optim.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr_schedule.step()
        if ema is not None:
            ema.update(trainable)
        loss_sum += step_loss
        loss_steps += 1
        clips += micro_batch[kind] * t_cfg.grad_accum * world.world_size
        busy += time.perf_counter() - t_step

        # ------------------------------------------------------------ 6. log, samples, checkpoints
        if step % cfg.log.every == 0 or step == t_cfg.max_steps:
            last_loss = mean_over_ranks(loss_sum / loss_steps, world).item()
            metrics = {"loss": last_loss, "lr": lr_schedule.get_last_lr()[0], "grad_norm": grad_norm, "kind": kind,
                       "clips_per_s": clips / busy if busy > 0 else None, "time": time.time()}
            logger.log(step, metrics)
            logger.progress(loss_steps, last_loss, metrics["clips_per_s"])
            loss_sum.zero_()
            loss_steps, clips, busy = 0, 0, 0.0
            epochs = _report_epochs(data, epochs, logger, world)
        if cfg.sample.every and step % cfg.sample.every == 0:
            _write_samples(cfg, model, ema, components, output_dir / "samples", step, world, logger)
        if cfg.checkpoint.every and (step % cfg.checkpoint.every == 0 or step == t_cfg.max_steps):
            fault = _kill_self if step == cfg.debug.kill_during_checkpoint else None
            last_ckpt = _save(cfg, ckpt_root, step, model, optimizer, names, lr_schedule, scaler, ema, data, world, fault)
        if step == cfg.debug.kill_after_step:
            logger.close()
            _kill_self()

    # ---------------------------------------------------------------- 7. the model folder
    model_dir = None
    if cfg.checkpoint.export_model:
        model_dir = _export(cfg, model, ema, components, output_dir / "model", world, logger)
    skipped = _total_skips(data, world)
    if skipped:
        logger.message(f"skipped files over the run: {skipped}")
    return TrainResult(step=max(step, start_step), loss=last_loss, output_dir=output_dir, checkpoint=last_ckpt, model_dir=model_dir)


# ======================================================================================== helpers


def make_training_data(cfg: TrainConfig, world: World, components: Components | None = None):
    """The data layer's ``TrainingData`` for this rank; a latent cache must match ``components``' identity."""
    from higen.data import TrainingData

    cache_settings = None
    if cfg.data.source == "cache":
        from higen.training.cache import cache_settings_for_training

        cache_settings = cache_settings_for_training(cfg, components)
    return TrainingData(
        cfg.data, seed=cfg.train.seed, rank=world.rank, world_size=world.world_size, batch_size=cfg.train.batch_size,
        image_batch_size=cfg.train.image_batch_size or cfg.train.batch_size, num_workers=cfg.data.num_workers,
        cache_settings=cache_settings,
    )


def _check_precision(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.train.precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs a CUDA GPU (its gradient scaler is CUDA-only); use bf16 or fp32")
    if cfg.train.precision == "fp16" and cfg.distributed.strategy == "fsdp":
        raise ValueError("train.precision=fp16 is not supported with FSDP (no sharded gradient scaler); use bf16")


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _clip_gradients(params: list[torch.Tensor], max_norm: float) -> float:
    """The global gradient norm (before clipping); scales gradients down to ``max_norm`` when > 0."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = ckpt.full_tensor(torch.nn.utils.get_total_norm(grads)).item()
    if max_norm > 0 and norm > max_norm:
        torch._foreach_mul_(grads, max_norm / (norm + 1e-6))
    return norm


def _kill_self() -> None:
    """Fault injection (``debug.*``): die as a crash would, with no clean-up."""
    os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------- resume


def _flat_config(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "unet":
            out.update(_flat_config(value, name + "."))
        else:
            out[name] = value
    return out


def _check_resume(meta: dict, cfg: TrainConfig, unet_config, world: World) -> list[str]:
    """Refuse a checkpoint of another model or an incompatible run; return the harmless changes."""
    problems = [f"UNet {d}" for d in unet_differences(meta["unet_config"], unet_config)]
    if problems:
        raise ValueError("the checkpoint is of a different model: " + "; ".join(problems))
    then, now = _flat_config(meta["config"]), _flat_config(cfg.to_dict())
    changed = [k for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k) and k != "model.unet"]
    fatal = [k for k in changed if k in RESUME_MUST_MATCH]
    if meta["world_size"] != world.world_size:
        fatal.append(f"number of processes (checkpoint {meta['world_size']}, now {world.world_size})")
    if fatal:
        details = "; ".join(f"{k}: checkpoint {then.get(k)!r}, now {now.get(k)!r}" if k in then or k in now else k for k in fatal)
        raise ValueError(f"cannot resume exactly from this checkpoint, settings differ: {details}")
    notes = [f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in changed if not k.startswith(_RESUME_IGNORED)]
    if "train.max_steps" in changed and cfg.optim.decay_steps is None and cfg.optim.schedule == "cosine":
        notes.append("the cosine LR schedule now decays over the new train.max_steps (set optim.decay_steps to keep it)")
    return notes


def _restore(meta, tensors, optimizer, names, lr_schedule, scaler, ema, data, world: World) -> None:
    ckpt.load_optimizer_state(optimizer, names, tensors.get("optimizer", {}), meta["optimizer_groups"])
    lr_schedule.load_state_dict(meta["lr_schedule"])
    if scaler is not None and meta.get("grad_scaler"):
        scaler.load_state_dict(meta["grad_scaler"])
    if ema is not None:
        if "ema" not in tensors:
            raise ValueError("the checkpoint has no EMA weights; resume with ema.enabled=false or start a new run")
        shadow = {n: ckpt.distribute_like(tensors["ema"][n], ema.shadow[n]) for n in ema.shadow if n in tensors["ema"]}
        ema.load(shadow, meta["ema"])
    data.load_state_dict(meta["data"][world.rank])
    ckpt.set_rng_state(meta["rng"][world.rank], world.device)


# ---------------------------------------------------------------------------------- checkpoints


def _save(cfg, root, step, model, optimizer, names, lr_schedule, scaler, ema, data, world: World, fault) -> Path | None:
    """Gather the full state (collective), write it on rank 0, wait for it everywhere."""
    keep = world.is_main
    tensors = {"model": ckpt.model_state(model, keep)}
    if ema is not None:
        tensors["ema"] = ckpt.full_state(ema.shadow, keep)
    tensors["optimizer"], groups = ckpt.optimizer_state(optimizer, names, keep)
    rng = gather_objects(ckpt.rng_state(world.device), world)
    data_states = gather_objects(data.state_dict(), world)
    skipped = _total_skips(data, world)
    path = None
    if world.is_main:
        meta = {
            "step": step, "world_size": world.world_size, "unet_config": unwrap(model).config.to_dict(), "config": cfg.to_dict(),
            "lr_schedule": lr_schedule.state_dict(), "optimizer_groups": groups,
            "ema": ema.state()[1] if ema is not None else None,
            "grad_scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng, "data": data_states, "skipped": skipped, "time": time.time(),
        }
        path = ckpt.save_checkpoint(root, step, tensors, meta, cfg.checkpoint.keep_last, fault=fault)
    barrier(world)
    return path


def _total_skips(data, world: World) -> dict:
    """Files skipped so far, summed over ranks: ``{reason: count}``."""
    local = (data.skipped() or {}).get("total", {}) if hasattr(data, "skipped") else {}
    reasons = sorted({r for counts in gather_objects(sorted(local), world) for r in counts})
    counts = sum_over_ranks([int(local.get(r, 0)) for r in reasons], world)
    return {r: n for r, n in zip(reasons, counts) if n}


def _epochs(data) -> dict:
    """The data layer's epoch per stream, when its state says (for end-of-epoch skip reports)."""
    streams = data.state_dict().get("streams", {})
    return {k: v["epoch"] for k, v in streams.items() if isinstance(v, dict) and isinstance(v.get("epoch"), int)}


def _report_epochs(data, epochs: dict, logger: TrainLogger, world: World) -> dict:
    """At log steps: print the skip counts (summed over ranks) when a data epoch has ended since the last."""
    now = _epochs(data)
    finished = [k for k in now if k in epochs and now[k] > epochs[k]]
    if sum_over_ranks([len(finished)], world)[0]:  # agree first: the sum below is a collective
        skipped = _total_skips(data, world)
        for stream in finished:
            logger.message(f"data: {stream} epoch {now[stream] - 1} done; files skipped so far: {skipped or 'none'}")
    return now


# ------------------------------------------------------------------------------ samples, export


def _inference_unet(model: nn.Module, ema: EMA | None, use_ema: bool, world: World):
    """A plain UNet with the current (or EMA) weights, on rank 0 (None elsewhere). Collective under FSDP."""
    from higen.models.unet import HiGenUNet

    state = ckpt.model_state(model, world.is_main)
    if use_ema and ema is not None:
        state.update(ckpt.full_state(ema.shadow, world.is_main))
    if not world.is_main:
        return None
    with torch.device("meta"):
        unet = HiGenUNet(unwrap(model).config)
    unet.load_state_dict(state, assign=True)
    return unet.eval()


def _write_samples(cfg, model, ema, components: Components, folder: Path, step: int, world: World, logger: TrainLogger) -> None:
    s = cfg.sample
    unet = _inference_unet(model, ema, s.use_ema, world)
    if world.is_main:
        if components.autoencoder is None:
            logger.message("samples skipped: no autoencoder to decode them (set model.autoencoder)")
        else:
            from higen.io.video import write_video
            from higen.pipeline.pipeline import HiGenPipeline

            pipe = HiGenPipeline(unet.to(world.device), components.text_encoder, components.autoencoder, components.schedule,
                                 generation_defaults(cfg, components.defaults))
            folder.mkdir(parents=True, exist_ok=True)
            for i, prompt in enumerate(s.prompts):
                out = pipe(prompt, frames=s.frames or cfg.data.frames, height=s.height or cfg.data.height, width=s.width or cfg.data.width,
                           spatial_steps=s.steps, temporal_steps=s.steps, spatial_guidance=s.guidance, temporal_guidance=s.guidance,
                           seed=s.seed + i)
                write_video(folder / f"step_{step:07d}_{i}.mp4", out.video[0], fps=s.fps)
            logger.message(f"step {step}: wrote {len(s.prompts)} sample video(s) to {folder}")
    barrier(world)


def _export(cfg, model, ema, components: Components, target: Path, world: World, logger: TrainLogger) -> Path | None:
    """``output_dir/model/``: a model folder for ``higen generate --model`` (EMA weights when on)."""
    unet = _inference_unet(model, ema, cfg.checkpoint.export_ema, world)
    if world.is_main:
        from higen.pipeline.pipeline import write_model_folder

        write_model_folder(target, unet, components.text_encoder, components.autoencoder, components.schedule,
                           generation_defaults(cfg, components.defaults), replace=True)
        logger.message(f"model folder written: {target}" + ("" if components.autoencoder else " (no autoencoder: add one to generate)"))
    barrier(world)
    return target if world.is_main else None


__all__ = ["train", "TrainResult", "make_training_data", "RESUME_MUST_MATCH"]
