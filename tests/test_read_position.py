"""Where latent training reads <gen_emb>: after the text (the paper) or right after the
latents (where inference reads it), with the text predicted after it."""

import pytest
import torch
import torch.nn.functional as F

from plume_lite import PlumeModel
from plume_lite.curriculum import place_gen_emb
from plume_lite.errors import ConfigError, InputError
from plume_lite.tokens import EOT, GEN_EMB
from plume_lite.train.config import TrainConfig
from plume_lite.train.step import TrainStep

ITEMS = [{"text": "a red circle"}, {"text": "two blue squares", "instruction": "Count."}]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return PlumeModel.from_backbone("tiny", latent_steps=3).eval()  # eval: no expert dropout


def _labels_seen(monkeypatch, model, *args, **kwargs):
    """(TrainForward, the suffix texts that CE was computed on) for one forward_train."""
    seen = {}
    real = F.cross_entropy

    def spy(logits, labels, **kw):
        seen["labels"] = labels
        return real(logits, labels, **kw)

    monkeypatch.setattr(F, "cross_entropy", spy)
    with torch.no_grad():
        out = model.forward_train(*args, **kwargs)
    monkeypatch.undo()
    rows = seen["labels"].view(len(args[0]), -1)
    tok = model.processor.tokenizer
    return out, [tok.decode(r[r >= 0].tolist(), skip_special_tokens=False) for r in rows]


def test_place_gen_emb_layouts():
    assert place_gen_emb("It is red.</think>red\n", "after_text", "<g>") == "It is red.</think>red\n<g>"
    assert (
        place_gen_emb("It is red.</think>red\n", "after_latents", "<g>")
        == "</think>\n<g>It is red.</think>red\n"
    )
    # answer dropped, all latent: exactly the inference suffix, nothing after <gen_emb>
    assert place_gen_emb("</think>\n", "after_latents", "<g>") == "</think>\n<g>"
    with pytest.raises(InputError, match="read_position"):
        place_gen_emb("x", "before_text", "<g>")


def test_after_latents_reads_where_inference_reads_whatever_text_follows(model, monkeypatch):
    a, texts_a = _labels_seen(
        monkeypatch,
        model,
        ITEMS,
        ["It is red.</think>red\n", "Two.</think>two\n"],
        3,
        "latent",
        read_position="after_latents",
    )
    b, _ = _labels_seen(
        monkeypatch,
        model,
        ITEMS,
        ["Something else entirely.</think>blue\n", "</think>\n"],
        3,
        "latent",
        read_position="after_latents",
    )
    # causal attention: the text after <gen_emb> cannot change it
    assert torch.allclose(a.gen_emb, b.gen_emb, atol=1e-5)
    # and it is the embedding inference reads (K = 3, unnormalised hidden state at <gen_emb>)
    inferred = model.encode(ITEMS, mode="latent", steps=3, normalize_embeddings=False)
    assert torch.allclose(a.gen_emb, inferred, atol=1e-4)
    # CE covers the forced suffix, <gen_emb> and the text after it
    assert texts_a == [
        f"{EOT}</think>\n{GEN_EMB}It is red.</think>red\n",
        f"{EOT}</think>\n{GEN_EMB}Two.</think>two\n",
    ]
    assert not torch.isclose(a.ce_loss, b.ce_loss)


def test_after_text_is_the_papers_layout_and_reads_after_the_answer(model, monkeypatch):
    suffixes = ["It is red.</think>red\n", "Two.</think>two\n"]
    paper = dict(read_position="after_text")
    default, texts = _labels_seen(monkeypatch, model, ITEMS, suffixes, 3, "latent", **paper)
    assert texts == [f"{EOT}{s}{GEN_EMB}" for s in suffixes]
    other, _ = _labels_seen(
        monkeypatch, model, ITEMS, ["Other.</think>blue\n", "Two.</think>two\n"], 3, "latent", **paper
    )
    assert not torch.allclose(other.gen_emb[0], default.gen_emb[0], atol=1e-4)  # it sees the answer
    assert torch.allclose(other.gen_emb[1], default.gen_emb[1], atol=1e-5)  # rows stay independent


def test_the_default_is_after_latents_for_latent_and_after_text_for_explicit(model, monkeypatch):
    suffixes = ["It is red.</think>red\n", "Two.</think>two\n"]
    default, _ = _labels_seen(monkeypatch, model, ITEMS, suffixes, 3, "latent")
    named, _ = _labels_seen(monkeypatch, model, ITEMS, suffixes, 3, "latent", read_position="after_latents")
    assert torch.equal(default.gen_emb, named.gen_emb)
    _, texts = _labels_seen(monkeypatch, model, ITEMS, suffixes, 0, "explicit")
    assert texts == [f"{s}{GEN_EMB}" for s in suffixes]  # explicit: after its text, no latents
    assert TrainConfig().read_position == TrainStep(model, "latent").read_position == "after_latents"


def test_bad_read_positions_are_one_line_errors(model):
    with pytest.raises(InputError, match="read_position"):
        model.forward_train(ITEMS, ["</think>\n"] * 2, 3, "latent", read_position="middle")
    with pytest.raises(InputError, match="explicit mode reads"):
        model.forward_train(ITEMS, ["</think>\n"] * 2, 0, "explicit", read_position="after_latents")
    with pytest.raises(ConfigError, match="read_position must be one of after_text, after_latents"):
        TrainConfig(read_position="middle")


def test_train_step_passes_the_setting_in_latent_mode_only(model):
    assert TrainStep(model, "latent", read_position="after_latents").read_position == "after_latents"
    assert TrainStep(model, "explicit", read_position="after_latents").read_position == "after_text"
