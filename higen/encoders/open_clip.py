"""The OpenCLIP checkpoint layout, mapped onto transformers' CLIP models (no ``open_clip`` import).

The release's ``open_clip_pytorch_model.bin`` (OpenCLIP ViT-H-14) holds both towers in one flat state
dict: the text tower at the top level (``token_embedding``, ``positional_embedding``,
``transformer.resblocks.N``, ``ln_final``, ``text_projection``) and the visual tower under ``visual.``.
Both towers are stacks of the same pre-LayerNorm residual block with a packed ``nn.MultiheadAttention``
projection; transformers' ``CLIPEncoderLayer`` computes the same block with separate q/k/v projections.
This module holds what the text encoder and the image embedder share: splitting the file into towers,
the expected key shapes of a block, the block's key mapping, and OpenCLIP's BPE vocabulary.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from pathlib import Path
from typing import Mapping

import torch

# Tensors of the file that belong to neither tower's forward: the contrastive temperature, and the
# causal mask that some OpenCLIP versions stored although it is derived from the context length.
NOT_TOWER_KEYS = ("logit_scale", "attn_mask")
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# OpenCLIP reads this many merges (after the header line) of its vocabulary file: its 49408 tokens are
# 2 x 256 byte symbols (with and without the end-of-word marker) + 48894 merges + 2 special tokens.
OPEN_CLIP_NUM_MERGES = 49152 - 256 - 2


def text_tower(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("visual.") and k not in NOT_TOWER_KEYS}


def visual_tower(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors with the prefix removed."""
    return {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}


def require(state: Mapping[str, torch.Tensor], key: str, source: str, tower: str) -> torch.Tensor:
    """A tensor the tower's size is read from; a clear error when the file has no such tower."""
    from higen.io.checkpoint import CheckpointError

    if key not in state:
        raise CheckpointError(f"{source} has no OpenCLIP {tower} tower ({key!r} is missing)")
    return state[key]


def count_blocks(state: Mapping[str, torch.Tensor], prefix: str = "transformer.resblocks.") -> int:
    """Number of residual blocks: one more than the highest block index present."""
    indices = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(indices) + 1 if indices else 0


def block_shapes(prefix: str, width: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of one OpenCLIP residual block (``nn.MultiheadAttention`` packs q, k, v)."""
    return {
        f"{prefix}ln_1.weight": (width,), f"{prefix}ln_1.bias": (width,),
        f"{prefix}attn.in_proj_weight": (3 * width, width), f"{prefix}attn.in_proj_bias": (3 * width,),
        f"{prefix}attn.out_proj.weight": (width, width), f"{prefix}attn.out_proj.bias": (width,),
        f"{prefix}ln_2.weight": (width,), f"{prefix}ln_2.bias": (width,),
        f"{prefix}mlp.c_fc.weight": (hidden, width), f"{prefix}mlp.c_fc.bias": (hidden,),
        f"{prefix}mlp.c_proj.weight": (width, hidden), f"{prefix}mlp.c_proj.bias": (width,),
    }


def tower_shapes(width: int, hidden: int, layers: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        shapes.update(block_shapes(f"transformer.resblocks.{i}.", width, hidden))
    return shapes


def block_to_hf(state: Mapping[str, torch.Tensor], src: str, dst: str) -> dict[str, torch.Tensor]:
    """One OpenCLIP block (keys under ``src``) -> a transformers ``CLIPEncoderLayer`` (under ``dst``)."""
    q, k, v = state[f"{src}attn.in_proj_weight"].chunk(3, dim=0)  # packed in q, k, v order
    qb, kb, vb = state[f"{src}attn.in_proj_bias"].chunk(3, dim=0)
    renamed = {
        "layer_norm1": "ln_1", "self_attn.out_proj": "attn.out_proj", "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
    }
    out = {f"{dst}self_attn.{n}_proj.weight": w for n, w in (("q", q), ("k", k), ("v", v))}
    out.update({f"{dst}self_attn.{n}_proj.bias": b for n, b in (("q", qb), ("k", kb), ("v", vb))})
    for hf, oc in renamed.items():
        out[f"{dst}{hf}.weight"] = state[f"{src}{oc}.weight"]
        out[f"{dst}{hf}.bias"] = state[f"{src}{oc}.bias"]
    return out


def blocks_to_hf(state: Mapping[str, torch.Tensor], layers: int, dst: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for i in range(layers):
        out.update(block_to_hf(state, f"transformer.resblocks.{i}.", f"{dst}{i}."))
    return out


# ------------------------------------------------------------------------------------------ tokenizer
def byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE, in OpenCLIP's (and GPT-2's) order.

    Bytes that are printable, non-space Latin-1 characters stand for themselves and come first; the
    remaining 68 bytes are given the code points 256, 257, ... in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(rest))]


def read_bpe_merges(path: str | Path) -> list[tuple[str, str]]:
    """The merges of an OpenCLIP ``bpe_simple_vocab_16e6.txt.gz``: line 1 is a header, then ``a b`` pairs."""
    path = Path(path)
    try:
        lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path} as a gzip BPE vocabulary: {err}") from None
    merges = []
    for n, line in enumerate(lines[1 : OPEN_CLIP_NUM_MERGES + 1], 2):
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}: line {n} is not a BPE merge 'a b': {line!r}")
        merges.append((parts[0], parts[1]))
    if not merges:
        raise ValueError(f"{path} holds no BPE merges")
    return merges


def vocabulary(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id exactly as OpenCLIP derives it from the merges.

    Byte symbols, the same with the end-of-word marker ``</w>``, one token per merge, then
    ``<|startoftext|>`` and ``<|endoftext|>`` (49406 and 49407 for the full vocabulary).
    """
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def tokenizer_from_bpe_file(path: str | Path):
    """A transformers ``CLIPTokenizer`` equivalent to OpenCLIP's, built from its BPE vocabulary file."""
    from transformers import CLIPTokenizer

    merges = read_bpe_merges(path)
    return CLIPTokenizer(vocab=vocabulary(merges), merges=merges)


def find_open_clip_vocab() -> Path | None:
    """The vocabulary file inside an installed ``open_clip`` package (found without importing it)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / VOCAB_FILE
        if candidate.is_file():
            return candidate
    return None


def load_clip_tokenizer(source: str | Path | None):
    """A ``CLIPTokenizer`` from a ``save_pretrained`` folder or a BPE ``.txt.gz``; ``None`` means open_clip's."""
    from transformers import CLIPTokenizer

    if source is None:
        source = find_open_clip_vocab()
        if source is None:
            raise FileNotFoundError(
                f"no CLIP tokenizer given and the open_clip package (which ships {VOCAB_FILE}) is not installed; "
                f"pass --tokenizer with {VOCAB_FILE} or a CLIPTokenizer folder"
            )
    source = Path(source)
    if source.is_dir():
        if not (source / "tokenizer_config.json").is_file() and not (source / "vocab.json").is_file():
            raise FileNotFoundError(f"{source} is not a CLIPTokenizer folder (no tokenizer_config.json or vocab.json)")
        return CLIPTokenizer.from_pretrained(str(source), local_files_only=True)
    if not source.is_file():
        raise FileNotFoundError(f"tokenizer not found: {source}")
    return tokenizer_from_bpe_file(source)

