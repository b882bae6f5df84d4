"""The FID Inception: TensorFlow's Inception-v3 graph of 2015-12-05, whose 2,048-d pool features FID compares.

This is the network of the original FID code (Heusel et al. 2017, TTUR's ``fid.py``) and the one that
``pytorch-fid`` and ``torch-fidelity`` port to PyTorch. It is written here in PyTorch (both packages
need torchvision to import, which higen does not have) to the same layout, so that it loads their
weights file unchanged:

- every unit is a bias-free Conv2d, a BatchNorm with epsilon 1e-3, and a ReLU; units are named
  ``<block>.<unit>.conv`` / ``<block>.<unit>.bn`` as in the weights file;
- the stem: 3x3 stride 2, 3x3, 3x3 padded, max-pool 3x3 stride 2, 1x1, 3x3, max-pool 3x3 stride 2;
- eleven Inception blocks: three on the 35x35 grid (``Mixed_5b..d``), a reduction to 17x17
  (``Mixed_6a``), four 17x17 blocks with factorised 7x7 convolutions (``Mixed_6b..e``), a reduction
  to 8x8 (``Mixed_7a``) and two 8x8 blocks (``Mixed_7b``, ``Mixed_7c``);
- where this graph differs from the Inception-v3 of torchvision: the 3x3 average pools of the
  branches do not count the zero padding (TensorFlow's ``"SAME"`` average pool), and the pool branch
  of the last block (``Mixed_7c``) is a 3x3 *max* pool;
- the features are the mean over the final 8x8 grid (TensorFlow's ``pool_3``), 2,048 numbers per
  image. The 1,008-way classifier ``fc`` is in the file and is loaded, but FID does not use it.

Input (:func:`preprocess`): uint8 RGB of any size, resized to 299 x 299 without cropping by TF1's
legacy bilinear resize (:mod:`higen.evaluation.resize`, as the TF graph's ``ResizeBilinear`` does and
torch-fidelity reproduces), then scaled as ``(x - 128) / 128`` (the graph's ``Sub 128``, ``Mul 1/128``).

The weights are the PyTorch conversion of the TF graph that pytorch-fid publishes
(``pt_inception-2015-12-05-6726825d.pth``; torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``
is the same file). They are never downloaded here: the user gives the file, which is checked against
its sha256 before it is read (with ``torch.load(weights_only=True)``: tensors only, no code).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from higen.evaluation.i3d import sha256
from higen.evaluation.resize import resize_bilinear_tf1

WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_SOURCE = (f"download {WEIGHTS_NAME} from {WEIGHTS_URL} (pytorch-fid's release; torch-fidelity's "
                  "weights-inception-2015-12-05-6726825d.pth is the same file)")
WEIGHTS_HINT = f"{WEIGHTS_SOURCE}, sha256 {WEIGHTS_SHA256}"
RESOLUTION = (299, 299)
FEATURES = 2048
NUM_CLASSES = 1008  # the 2015 graph's classifier has 1,008 outputs
BN_EPSILON = 1e-3


# ------------------------------------------------------------------------------------------ layers
class Unit(nn.Module):
    """Conv2d (no bias) -> BatchNorm (epsilon 1e-3) -> ReLU.

    ``same``: pad to keep the size (TensorFlow "SAME"; symmetric, as the kernels are odd), else no
    padding ("VALID"). Default: "SAME" at stride 1, "VALID" at stride 2, as in the blocks."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int] = 1, stride: int = 1,
                 same: bool | None = None):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        same = stride == 1 if same is None else same
        padding = (kh // 2, kw // 2) if same else (0, 0)
        self.conv = nn.Conv2d(in_channels, out_channels, (kh, kw), stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's "SAME" 3x3 average pool: the padding is not counted in the mean."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


class _Block(nn.Module):
    """An Inception block built from a table of units ``name: (in, out, kernel, stride)``."""

    def __init__(self, units: dict[str, tuple]):
        super().__init__()
        for name, spec in units.items():
            self.add_module(name, Unit(*spec))

    def chain(self, x: torch.Tensor, *names: str) -> torch.Tensor:
        for name in names:
            x = self._modules[name](x)
        return x


class Block35(_Block):
    """35x35 block (``Mixed_5b..d``): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, in_channels: int, pool_channels: int):
        super().__init__({
            "branch1x1": (in_channels, 64),
            "branch5x5_1": (in_channels, 48), "branch5x5_2": (48, 64, 5),
            "branch3x3dbl_1": (in_channels, 64), "branch3x3dbl_2": (64, 96, 3), "branch3x3dbl_3": (96, 96, 3),
            "branch_pool": (in_channels, pool_channels),
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.chain(x, "branch1x1"), self.chain(x, "branch5x5_1", "branch5x5_2"),
                          self.chain(x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                          self.chain(_avg_pool_3x3(x), "branch_pool")], dim=1)


class Reduction35(_Block):
    """35x35 -> 17x17 (``Mixed_6a``): 3x3 stride 2 | 1x1 -> 3x3 -> 3x3 stride 2 | max pool stride 2."""

    def __init__(self, in_channels: int):
        super().__init__({
            "branch3x3": (in_channels, 384, 3, 2),
            "branch3x3dbl_1": (in_channels, 64), "branch3x3dbl_2": (64, 96, 3), "branch3x3dbl_3": (96, 96, 3, 2),
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.chain(x, "branch3x3"), self.chain(x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                          F.max_pool2d(x, 3, stride=2)], dim=1)


class Block17(_Block):
    """17x17 block (``Mixed_6b..e``) with 7x7 convolutions factorised into 1x7 and 7x1."""

    def __init__(self, in_channels: int, width: int):
        c = width
        super().__init__({
            "branch1x1": (in_channels, 192),
            "branch7x7_1": (in_channels, c), "branch7x7_2": (c, c, (1, 7)), "branch7x7_3": (c, 192, (7, 1)),
            "branch7x7dbl_1": (in_channels, c), "branch7x7dbl_2": (c, c, (7, 1)), "branch7x7dbl_3": (c, c, (1, 7)),
            "branch7x7dbl_4": (c, c, (7, 1)), "branch7x7dbl_5": (c, 192, (1, 7)),
            "branch_pool": (in_channels, 192),
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.chain(x, "branch1x1"), self.chain(x, "branch7x7_1", "branch7x7_2", "branch7x7_3"),
                          self.chain(x, *(f"branch7x7dbl_{i}" for i in range(1, 6))),
                          self.chain(_avg_pool_3x3(x), "branch_pool")], dim=1)


class Reduction17(_Block):
    """17x17 -> 8x8 (``Mixed_7a``): 1x1 -> 3x3 stride 2 | 1x1 -> 1x7 -> 7x1 -> 3x3 stride 2 | max pool stride 2."""

    def __init__(self, in_channels: int):
        super().__init__({
            "branch3x3_1": (in_channels, 192), "branch3x3_2": (192, 320, 3, 2),
            "branch7x7x3_1": (in_channels, 192), "branch7x7x3_2": (192, 192, (1, 7)),
            "branch7x7x3_3": (192, 192, (7, 1)), "branch7x7x3_4": (192, 192, 3, 2),
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.chain(x, "branch3x3_1", "branch3x3_2"),
                          self.chain(x, *(f"branch7x7x3_{i}" for i in range(1, 5))), F.max_pool2d(x, 3, stride=2)], dim=1)


class Block8(_Block):
    """8x8 block (``Mixed_7b``, ``Mixed_7c``): the 3x3 branches end in parallel 1x3 and 3x1 units.

    ``max_pool``: the pool branch max-pools instead of averaging (``Mixed_7c`` of the 2015 graph)."""

    def __init__(self, in_channels: int, max_pool: bool = False):
        super().__init__({
            "branch1x1": (in_channels, 320),
            "branch3x3_1": (in_channels, 384), "branch3x3_2a": (384, 384, (1, 3)), "branch3x3_2b": (384, 384, (3, 1)),
            "branch3x3dbl_1": (in_channels, 448), "branch3x3dbl_2": (448, 384, 3),
            "branch3x3dbl_3a": (384, 384, (1, 3)), "branch3x3dbl_3b": (384, 384, (3, 1)),
            "branch_pool": (in_channels, 192),
        })
        self.max_pool = max_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.chain(x, "branch3x3_1")
        d3 = self.chain(x, "branch3x3dbl_1", "branch3x3dbl_2")
        pooled = _max_pool_3x3(x) if self.max_pool else _avg_pool_3x3(x)
        return torch.cat([self.chain(x, "branch1x1"), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3), self.chain(pooled, "branch_pool")], dim=1)


# ------------------------------------------------------------------------------------------- model
class FIDInception(nn.Module):
    """``forward``: ``n 3 299 299`` images scaled by :func:`preprocess` -> ``n 2048`` pool features."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = Unit(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = Unit(32, 32, 3, same=False)
        self.Conv2d_2b_3x3 = Unit(32, 64, 3)
        self.Conv2d_3b_1x1 = Unit(64, 80)
        self.Conv2d_4a_3x3 = Unit(80, 192, 3, same=False)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = Block35(192, 32), Block35(256, 64), Block35(288, 64)
        self.Mixed_6a = Reduction35(288)
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = (Block17(768, w) for w in (128, 160, 160, 192))
        self.Mixed_7a = Reduction17(768)
        self.Mixed_7b, self.Mixed_7c = Block8(1280), Block8(2048, max_pool=True)
        self.fc = nn.Linear(FEATURES, NUM_CLASSES)  # the graph's classifier: loaded, unused by FID

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 299 -> 149 -> 147 -> 147
        x = F.max_pool2d(x, 3, stride=2)  # 73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # 73 -> 71
        x = F.max_pool2d(x, 3, stride=2)  # 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)  # 35 -> 17 (Mixed_6a) -> 8 (Mixed_7a)
        return x.mean(dim=(2, 3))  # pool_3: the 8x8 average, b 2048


# ---------------------------------------------------------------------------------- preprocessing
def preprocess(frames: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``n h w 3`` frames -> the network's input ``n 3 299 299``: TF1 bilinear resize, then ``(x - 128) / 128``."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be uint8 (n, height, width, 3); got {frames.dtype} {tuple(frames.shape)}")
    resized = resize_bilinear_tf1(frames.to(device), RESOLUTION)
    return ((resized - 128) / 128).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------- weights
def check_weights(path: str | os.PathLike | None, expected_sha256: str | None = None) -> Path:
    """``path`` if it is the expected file (default :data:`WEIGHTS_SHA256`); else one line saying where it comes from."""
    expected_sha256 = expected_sha256 or WEIGHTS_SHA256
    if path is None:
        raise FileNotFoundError(f"FID needs the Inception weights file: {WEIGHTS_HINT}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FID Inception weights not found at {path}; {WEIGHTS_HINT}")
    found = sha256(path)
    if found != expected_sha256:
        raise ValueError(f"{path} is not the FID Inception weights file (sha256 {found}, expected {expected_sha256}); {WEIGHTS_SOURCE}")
    return path


def load_fid_inception(path: str | os.PathLike, device: str | torch.device = "cpu",
                       expected_sha256: str | None = None) -> FIDInception:
    """The FID Inception with the checked weights, in eval mode. ``expected_sha256``: the file's hash (default
    the published file's, :data:`WEIGHTS_SHA256`; another value loads another file of the same layout, e.g. in tests)."""
    expected_sha256 = expected_sha256 or WEIGHTS_SHA256
    path = check_weights(path, expected_sha256)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = FIDInception()
    expected = model.state_dict()
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{path} is not laid out as the FID Inception: {len(missing)} tensors missing (e.g. {missing[:2]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(wrong)} of another shape (e.g. {wrong[:2]})")
    model.load_state_dict(state, strict=True)
    model.weights_sha256 = expected_sha256
    return model.eval().requires_grad_(False).to(device)
