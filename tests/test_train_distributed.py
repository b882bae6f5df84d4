"""Several processes (gloo on CPU): two ranks with batch 1 train like one process with batch 2, with
DDP and with FSDP2 (including an FSDP checkpoint resumed by FSDP)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from higen.training.config import load_config
from higen.training.logging import read_log
from higen.training.synthetic import TINY_RUN, synthetic_factory, tiny_components
from higen.training.trainer import train

# Dropout off (its masks follow the global RNG per process) and Adam's eps large: see EQUIVALENCE in
# test_training.py. Image steps on, so DDP must cope with the temporal layers' missing gradients.
# decay_steps fixed: a resumed run that extends max_steps keeps the same LR schedule.
RUN = (*TINY_RUN, "optim.eps=1e-3", "optim.grad_clip=0", "log.every=1", "cues.image_probability=0.4", "train.max_steps=3",
       "optim.decay_steps=3")
WEIGHT_TOLERANCE = 1e-6  # a few float32 ulps at weights near 1: only the order of the gradient sums differs


def run(out: Path, *overrides: str):
    cfg = load_config(None, [*RUN, f"train.output_dir={out}", *overrides])
    return train(cfg, tiny_components(dropout=0.0), synthetic_factory(length=16))


def _rank(rank: int, world_size: int, port: int, out: str, overrides: tuple[str, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    run(Path(out), *overrides)


def run_ranks(out: Path, *overrides: str, world_size: int = 2) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(world_size, port, str(out), overrides), nprocs=world_size, join=True)


def weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


def assert_equivalent(a: Path, b: Path, step: int) -> None:
    wa, wb = weights(a, step), weights(b, step)
    assert wa.keys() == wb.keys()
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst < WEIGHT_TOLERANCE, worst
    la, lb = read_log(a / "log.jsonl"), read_log(b / "log.jsonl")
    assert [r["step"] for r in la] == [r["step"] for r in lb] and [r["kind"] for r in la] == [r["kind"] for r in lb]
    np.testing.assert_allclose([r["loss"] for r in la], [r["loss"] for r in lb], rtol=1e-5)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    run(out, "train.batch_size=2")
    return out


def test_two_ddp_ranks_with_batch_one_equal_one_process_with_batch_two(tmp_path, one_process):
    out = tmp_path / "ddp"
    run_ranks(out, "train.batch_size=1")
    assert_equivalent(out, one_process, 3)
    # Every rank drew the same image/video step kinds; the kinds include both.
    assert {r["kind"] for r in read_log(out / "log.jsonl")} == {"image", "video"}
    assert (out / "model" / "model_index.json").is_file()


@pytest.mark.slow  # about 50 s: two launches of two FSDP ranks whose every block all-gathers over gloo
def test_fsdp_trains_saves_full_state_and_resumes(tmp_path, one_process):
    out = tmp_path / "fsdp"
    run_ranks(out, "train.batch_size=1", "distributed.strategy=fsdp", "train.max_steps=2", "checkpoint.export_model=false")
    # The checkpoint holds full (gathered) tensors, loadable without FSDP.
    assert weights(out, 2).keys() == weights(one_process, 3).keys()
    assert all(weights(out, 2)[k].shape == v.shape for k, v in weights(one_process, 3).items())
    run_ranks(out, "train.batch_size=1", "distributed.strategy=fsdp", "train.resume=auto")
    assert_equivalent(out, one_process, 3)
