"""Validation at the boundary: user text is text, numbers are range-checked, lengths are
capped, and every refusal is one line that names what was wrong."""

import pytest
import torch
from PIL import Image

from plume_lite.apps.cli import main
from plume_lite.errors import InputError
from plume_lite.items import MAX_TEXT_CHARS, checked_int, clean_item, escape_special_tokens


def test_special_token_strings_in_user_text_are_read_as_text(tiny_model):
    tokenizer = tiny_model.processor.tokenizer
    batcher = tiny_model.batcher
    item = {"text": "look <|image_pad|> here <disc_emb> and <gen_emb>"}
    inputs, _ = batcher([item], "latent", "cpu")
    ids = inputs["input_ids"][0].tolist()
    for token in ("<|image_pad|>", "<gen_emb>"):
        assert tokenizer.convert_tokens_to_ids(token) not in ids
    assert ids.count(tokenizer.convert_tokens_to_ids("<disc_emb>")) == 1  # only the model's own


def test_direct_mode_keeps_text_after_a_disc_emb_string(tiny_model):
    full = tiny_model.encode([{"text": "x <disc_emb> many more words follow here"}], mode="direct")
    cut = tiny_model.encode([{"text": "x <disc_emb>"}], mode="direct")
    assert not torch.allclose(full, cut)


def test_escape_is_idempotent_on_plain_text():
    assert escape_special_tokens("plain words", ["<bot>"]) == "plain words"
    assert "<bot>" not in escape_special_tokens("a <bot> b", ["<bot>"])


def test_none_values_are_absent_keys(tiny_model):
    a = tiny_model.encode([{"image": None, "text": "a red circle"}])
    b = tiny_model.encode([{"text": "a red circle"}])
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    "item, message",
    [
        ({"text": "a" * (MAX_TEXT_CHARS + 1)}, "characters, over the"),
        ({"text": 5}, "text must be a string"),
        ({"instruction": ["x"]}, "instruction must be a string"),
        ({"image": 3.5}, "image must be a file path"),
        ({"pdf": "x.pdf", "page": 1.5}, "page must be an integer"),
        ({"pdf": "x.pdf", "page": -1}, "page must be >= 0"),
        ({"text": "a", "colour": "red"}, "unknown key"),
        ({}, "is empty"),
    ],
)
def test_bad_items_are_refused_in_one_line(item, message):
    with pytest.raises(InputError, match=message) as err:
        clean_item(item)
    assert "\n" not in str(err.value)


def test_extreme_aspect_ratio_is_refused_before_the_processor(tiny_model, tmp_path):
    Image.new("RGB", (4000, 10), "white").save(tmp_path / "wide.png")
    with pytest.raises(InputError, match="4000x10"):
        tiny_model.encode([{"image": str(tmp_path / "wide.png")}])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": -1}, "batch_size must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"steps": 2.9}, "steps must be an integer"),
        ({"steps": 99}, r"steps must be in \[0, 32\]"),
        ({"steps": True}, "steps must be an integer"),
    ],
)
def test_encode_numbers_are_range_checked(tiny_model, kwargs, message):
    with pytest.raises(InputError, match=message):
        tiny_model.encode([{"text": "a"}], **kwargs)


def test_checked_int_accepts_numpy_integers():
    import numpy as np

    assert checked_int("k", np.int64(3), 0, 8) == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--repeats", "0"],
        ["bench", "--batch-sizes", "0,16"],
        ["bench", "--batch-sizes", "a"],
        ["bench", "--steps", "-1"],
        ["eval", "--checkpoint", "x", "--data", "y", "--out", "z", "--tasks", ","],
        ["eval", "--checkpoint", "x", "--data", "y", "--out", "z", "--batch-size", "0"],
        ["reproduce", "--out", "x", "--seeds", "0"],
        ["synth", "--out", "x", "--seed", "-5"],
    ],
)
def test_cli_numbers_are_checked_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("plume-lite") and "error: argument" in err[-1]
