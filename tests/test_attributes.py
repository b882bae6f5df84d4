"""The attribute context (model.unet.attribute_values, loss.attribute_weight): a factorised text context for
the procedural world, not in the release."""

from __future__ import annotations

import pytest
import torch

from higen.models.config import tiny_unet_config
from higen.models.layers import AttributeContext
from higen.models.unet import HiGenUNet
from higen.models.vgen import unet_to_vgen_state_dict
from higen.tiny import seeded
from higen.training.loss import AttributeLoss
from higen.training.synthetic import tiny_components
from higen.world.captions import ATTRIBUTE_VALUES, attribute_labels
from tests.test_training import run

WORLD = tuple(len(v) for v in ATTRIBUTE_VALUES.values())


def test_attribute_labels_read_what_the_caption_states():
    labels = attribute_labels(["a small crimson disk drifting slowly to the left over a navy backdrop", ""])
    said = dict(zip(ATTRIBUTE_VALUES, labels[0]))
    values = {name: ATTRIBUTE_VALUES[name][i] if i < len(ATTRIBUTE_VALUES[name]) else None for name, i in said.items()}
    assert values == {"colour": "red", "shape": "circle", "direction": "left", "speed": "slow", "size": "small",
                      "background": "navy", "change": None, "end_colour": None}
    assert labels[1] == list(WORLD)  # the empty caption states nothing


def test_attribute_context_mixes_one_embedding_per_value_and_ignores_padding():
    with seeded(0):
        context = AttributeContext(text_dim=8, context_dim=12, values=(3, 2))
    text = torch.randn(2, 5, 8)
    text[:, 3:] = 0  # padding, as MiniLM zeroes it
    tokens = context(text)
    assert tokens.shape == (2, 2, 12)
    logits = context.logits(text)
    assert [tuple(x.shape) for x in logits] == [(2, 4), (2, 3)]
    torch.testing.assert_close(tokens[:, 0], logits[0].softmax(-1) @ context.tables[0])
    padded_more = torch.cat([text, torch.zeros(2, 4, 8)], dim=1)
    torch.testing.assert_close(context(padded_more), tokens)
    assert torch.isfinite(context(torch.zeros(2, 5, 8))).all()  # an all-zero text pools without NaNs


def test_unet_with_an_attribute_context_runs_and_has_no_release_form():
    with seeded(0):
        unet = HiGenUNet(tiny_unet_config(attribute_values=(3, 2)))
    assert isinstance(unet.text_resampler, AttributeContext)
    out = unet(torch.randn(2, 4, 3, 8, 8), torch.tensor([10, 900]), torch.randn(2, 5, 16))
    assert out.shape == (2, 4, 3, 8, 8)
    with pytest.raises(ValueError, match="attribute context"):
        unet_to_vgen_state_dict(unet)
    with pytest.raises(ValueError, match="at least one value"):
        tiny_unet_config(attribute_values=(3, 0))


def test_attribute_loss_is_the_cross_entropy_of_the_stated_attributes():
    with seeded(0):
        context = AttributeContext(text_dim=8, context_dim=4, values=WORLD)
    text = torch.randn(2, 5, 8)
    captions = ["a red square moving left", "a blue star standing still"]
    loss = AttributeLoss(WORLD, 0.5)(context, text, captions, [False, True])
    labels = torch.tensor(attribute_labels(captions))
    labels[1] = torch.tensor(WORLD)  # the dropped caption states nothing
    expected = sum(torch.nn.functional.cross_entropy(logit, labels[:, k]) for k, logit in enumerate(context.logits(text)))
    torch.testing.assert_close(loss, 0.5 * expected)
    with pytest.raises(ValueError, match="attribute_values"):
        AttributeLoss((3, 2), 1.0)


def test_training_with_the_attribute_loss_teaches_the_parser(tmp_path):
    components = tiny_components(attribute_values=WORLD)
    captions = ["a red square moving left", "a blue square moving up", "a green square standing still"]
    loss = AttributeLoss(WORLD, 1.0)
    encode = lambda: components.text_encoder.encode(captions).float()  # noqa: E731
    with torch.no_grad():
        before = loss(components.unet.text_resampler, encode(), captions, [False] * 3).item()
    run(tmp_path / "run", "train.max_steps=30", "loss.attribute_weight=1", "checkpoint.export_model=false",
        "cues.image_probability=1", "train.image_batch_size=8", components=components)
    with torch.no_grad():
        after = loss(components.unet.text_resampler, encode(), captions, [False] * 3).item()
    assert after < 0.5 * before
    with pytest.raises(ValueError, match="attribute_values"):  # the world's vocabulary, or a clear error
        run(tmp_path / "bad", "loss.attribute_weight=1", components=tiny_components())
