"""Checkpoints: atomic layout, pruning, crash leftovers, state round trips, exact resume after SIGKILL
(also in the middle of writing a checkpoint), and refusal of incompatible resumes."""

from __future__ import annotations

import json
import multiprocessing
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from higen.training import checkpoint as ckpt
from higen.training.config import load_config
from higen.training.logging import read_log
from higen.training.synthetic import TINY_RUN, synthetic_factory, tiny_components
from higen.training.trainer import train

# Image steps and dropout on, so resume must restore the step kinds, the data position and the dropout RNG.
RUN = (*TINY_RUN, "train.max_steps=6", "checkpoint.every=2", "log.every=1", "cues.image_probability=0.3",
       "checkpoint.export_model=false", "train.batch_size=2")


def run(out: Path, *overrides: str):
    cfg = load_config(None, [*RUN, f"train.output_dir={out}", *overrides])
    return train(cfg, tiny_components(dropout=0.1), synthetic_factory(length=16))


def _child(out: str, overrides: tuple[str, ...], threads: int) -> None:
    torch.set_num_threads(threads)  # the same CPU kernels' thread split as the parent: bitwise comparable
    run(Path(out), *overrides)


def run_until_killed(out: Path, *overrides: str) -> int:
    """Run in a child process that the fault injection SIGKILLs; return its exit code."""
    process = multiprocessing.get_context("spawn").Process(target=_child, args=(str(out), overrides, torch.get_num_threads()))
    process.start()
    process.join(timeout=300)
    return process.exitcode


def state(out: Path, step: int) -> dict[str, dict[str, torch.Tensor]]:
    folder = out / "checkpoints" / ckpt.checkpoint_name(step)
    return {stem: load_file(str(folder / f"{stem}.safetensors")) for stem in ("model", "ema", "optimizer")}


def assert_bitwise_equal(a: dict, b: dict) -> None:
    for stem in a:
        assert a[stem].keys() == b[stem].keys(), stem
        for key in a[stem]:
            assert torch.equal(a[stem][key], b[stem][key]), f"{stem}: {key}"


def log_without_timing(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time", "clips_per_s")} for r in read_log(out / "log.jsonl")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run(out)
    return out


# ------------------------------------------------------------------------------------- exact resume


def test_sigkill_after_a_step_then_resume_is_bitwise_identical(tmp_path, uninterrupted):
    out = tmp_path / "run"
    assert run_until_killed(out, "debug.kill_after_step=3") == -signal.SIGKILL
    # Killed after step 3: the last checkpoint is step 2; step 3 is lost and done again.
    assert ckpt.find_latest(out / "checkpoints").name == "step_0000002"
    assert [r["step"] for r in read_log(out / "log.jsonl")] == [1, 2, 3]
    result = run(out, "train.resume=auto")
    assert result.step == 6
    assert_bitwise_equal(state(out, 6), state(uninterrupted, 6))
    assert log_without_timing(out) == log_without_timing(uninterrupted)


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, uninterrupted):
    out = tmp_path / "run"
    assert run_until_killed(out, "debug.kill_during_checkpoint=4") == -signal.SIGKILL
    root = out / "checkpoints"
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers and leftovers[0].startswith(".tmp-step_0000004")
    assert (root / "latest").read_text().strip() == "step_0000002"
    assert ckpt.find_latest(root).name == "step_0000002"
    run(out, "train.resume=auto")
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]  # the crash's leftovers are gone
    assert_bitwise_equal(state(out, 6), state(uninterrupted, 6))


# ----------------------------------------------------------------------------------- refusals


def test_incompatible_resumes_are_refused(tmp_path, uninterrupted):
    with pytest.raises(ValueError, match="already holds checkpoints"):
        run(uninterrupted)
    with pytest.raises(ValueError, match=r"train\.batch_size: checkpoint 2, now 1"):
        run(tmp_path / "b", f"train.resume={uninterrupted}", "train.batch_size=1")
    with pytest.raises(ValueError, match="optim.param_groups"):
        run(tmp_path / "c", f"train.resume={uninterrupted}", "optim.param_groups=[{pattern: temporal, freeze: true}]")
    with pytest.raises(ValueError, match="different model.*base_channels: checkpoint 32, now 64"):
        cfg = load_config(None, [*RUN, f"train.output_dir={tmp_path / 'd'}", f"train.resume={uninterrupted}"])
        train(cfg, tiny_components(base_channels=64), synthetic_factory(length=16))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        run(tmp_path / "e", f"train.resume={tmp_path / 'nowhere'}")
    # Another run's folder resolves to its latest checkpoint; harmless changes are allowed.
    out = tmp_path / "f"
    result = run(out, f"train.resume={uninterrupted}", "train.max_steps=7", "optim.lr=5e-4")
    assert result.step == 7 and [r["step"] for r in read_log(out / "log.jsonl")] == [7]


# ------------------------------------------------------------------------------------ file layout


def test_save_is_atomic_pruned_and_points_at_the_latest(tmp_path):
    root = tmp_path / "checkpoints"
    tensors = {"model": {"w": torch.arange(4.0)}}
    for step in (1, 2, 3):
        ckpt.save_checkpoint(root, step, tensors, {"step": step}, keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000002", "step_0000003"]
    assert ckpt.find_latest(root).name == "step_0000003"
    loaded, meta = ckpt.load_checkpoint(root / "step_0000003")
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0)) and meta["step"] == 3

    class Crash(Exception):
        pass

    def crash():
        raise Crash

    with pytest.raises(Crash):
        ckpt.save_checkpoint(root, 4, {"model": tensors["model"], "ema": tensors["model"]}, {"step": 4}, keep_last=2, fault=crash)
    # A failed write leaves nothing: no step 4, the pointer unchanged.
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000002", "step_0000003"]
    # A dangling pointer or a half-written folder falls back to the newest complete checkpoint.
    (root / "latest").write_text("step_0000009\n")
    (root / "step_0000005").mkdir()
    (root / ".tmp-step_0000006-x").mkdir()
    assert ckpt.find_latest(root).name == "step_0000003"
    assert [p.name for p in ckpt.clean_partial(root)] == [".tmp-step_0000006-x"]


def test_optimizer_state_round_trips_by_name():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    names = {p: n for n, p in model.named_parameters()}
    groups = lambda m: [{"params": [m[0].weight, m[0].bias]}, {"params": [m[1].weight, m[1].bias], "lr": 2e-3}]  # noqa: E731
    opt = torch.optim.AdamW(groups(model), lr=1e-3)
    for _ in range(2):
        model(torch.randn(5, 3)).square().mean().backward()
        opt.step()
    tensors, saved_groups = ckpt.optimizer_state(opt, names)
    assert set(tensors) == {f"{n}::{k}" for n in names.values() for k in ("step", "exp_avg", "exp_avg_sq")}
    json.dumps(saved_groups)  # JSON-able
    fresh = torch.optim.AdamW(groups(model), lr=1e-3)
    ckpt.load_optimizer_state(fresh, names, tensors, json.loads(json.dumps(saved_groups)))
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for key in a["state"][i]:
            assert torch.equal(a["state"][i][key], b["state"][i][key])
    other = torch.optim.AdamW([{"params": list(model.parameters())}], lr=1e-3)
    with pytest.raises(ValueError, match="other parameters"):
        ckpt.load_optimizer_state(other, names, tensors, saved_groups)


def test_rng_state_round_trips():
    saved = json.loads(json.dumps(ckpt.rng_state(torch.device("cpu"))))
    first = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(3)
    ckpt.set_rng_state(saved, torch.device("cpu"))
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])
