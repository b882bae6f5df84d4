"""torch.distributed plumbing: process-group setup from torchrun's environment, DDP / FSDP wrapping,
rank-0-only helpers and cross-rank averaging. One process per device; launch with ``torchrun``."""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from higen.training.config import DistributedSection


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device=cuda but no CUDA GPU is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def setup(device_name: str, cfg: DistributedSection) -> World:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = cfg.backend if cfg.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=cfg.timeout_minutes),
                                device_id=device if device.type == "cuda" else None)
    return World(rank, world_size, local_rank, device)


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """The average of ``value`` over all ranks (every rank gets it)."""
    if not world.distributed:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world.world_size


def sum_over_ranks(values: list[int], world: World) -> list[int]:
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.int64, device=world.device if world.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [int(v) for v in t.tolist()]


def gather_objects(obj, world: World) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not world.distributed:
        return [obj]
    out: list = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap_model(model: nn.Module, world: World, cfg: DistributedSection, find_unused: bool) -> nn.Module:
    """DDP (default) or FSDP2 around the UNet; the bare model when running alone.

    ``find_unused``: image steps (F = 1) skip every temporal layer, so those parameters get no
    gradient; DDP must then look for unused parameters (they stay ``None`` and AdamW skips them,
    exactly as in a single process).
    """
    if not world.distributed:
        return model
    if cfg.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # Shard each encoder/decoder unit separately (their parameters are gathered only while used),
        # then the rest (embeddings, middle, head) as the root.
        for block in [*model.down, *model.up]:
            if any(p.requires_grad for p in block.parameters()):
                fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [world.device.index] if world.device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


def no_gradient_sync(model: nn.Module, enabled: bool):
    """Skip the gradient all-reduce on accumulation micro-steps (DDP ``no_sync`` / FSDP2 flag)."""
    if not enabled:
        return contextlib.nullcontext()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):
        return _fsdp_no_sync(model)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
