"""plume_lite.inspection on the tiny (untrained) model: shapes, alignment with the tokens,
and agreement with the model's own explicit read."""

import pytest
import torch
import torch.nn.functional as F

from plume_lite.inspection import (
    explicit_suffix_text,
    explicit_token_states,
    lm_head_probs,
    logit_lens,
    special_token_ids,
    top_tokens,
)
from plume_lite.tokens import EOT, GEN_EMB

ITEMS = [{"text": "a red circle"}, {"text": "two blue squares above a green triangle"}]
RATIONALES = ["The circle is red. It is alone.", "Two squares.</think>\n"]


def _n_tokens(model, text):
    return len(model.processor.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_explicit_suffix_closes_the_rationale_once():
    assert explicit_suffix_text("abc") == "abc</think>\n" + GEN_EMB
    assert explicit_suffix_text("abc</think>\n") == "abc</think>\n" + GEN_EMB


def test_explicit_token_states_have_one_row_per_written_token(tiny_model):
    states = explicit_token_states(tiny_model, ITEMS, RATIONALES)
    dim = tiny_model.backbone.config.text_config.hidden_size
    assert [tuple(s.shape) for s in states] == [
        (_n_tokens(tiny_model, explicit_suffix_text(r)), dim) for r in RATIONALES
    ]
    assert all(s.dtype == torch.float32 and s.device.type == "cpu" for s in states)


def test_explicit_token_states_do_not_depend_on_the_batch(tiny_model):
    # right padding of the shorter rationale must not leak into its states
    together = explicit_token_states(tiny_model, ITEMS, RATIONALES)
    alone = explicit_token_states(tiny_model, ITEMS, RATIONALES, batch_size=1)
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_the_last_explicit_state_is_the_models_own_gen_emb_read(tiny_model):
    # the training forward reads <gen_emb> after the same teacher-forced rationale
    states = explicit_token_states(tiny_model, ITEMS, RATIONALES)
    with torch.no_grad():
        out = tiny_model.forward_train(
            ITEMS, [explicit_suffix_text(r)[: -len(GEN_EMB)] for r in RATIONALES], 0, "explicit"
        )
    for b, s in enumerate(states):
        assert float(F.cosine_similarity(s[-1], out.gen_emb[b].float().cpu(), dim=0)) > 0.9999


def test_lm_head_probs_are_distributions_over_the_vocabulary(tiny_model):
    _, (trace,) = tiny_model.encode(ITEMS[:1], mode="latent", return_trace=True)
    probs = lm_head_probs(tiny_model, trace["latents"])
    vocab = tiny_model.backbone.lm_head.weight.shape[0]
    assert probs.shape == (tiny_model.config.latent_steps, vocab)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(probs)))
    assert lm_head_probs(tiny_model, trace["latents"][0]).shape == (1, vocab)  # one [D] state


def test_logit_lens_gives_k_top_words_per_latent_step(tiny_model):
    _, (trace,) = tiny_model.encode(ITEMS[:1], mode="latent", return_trace=True)
    lens = logit_lens(tiny_model, trace["latents"], k=3)
    assert len(lens) == tiny_model.config.latent_steps and all(len(row) == 3 for row in lens)
    for row in lens:
        words, probs = zip(*row)
        assert all(isinstance(w, str) for w in words)
        assert list(probs) == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    assert lens == top_tokens(tiny_model, lm_head_probs(tiny_model, trace["latents"]), k=3)


def test_words_only_leaves_out_chat_vision_and_plume_tokens(tiny_model):
    special = special_token_ids(tiny_model)
    assert tiny_model.token_ids[EOT] in special and tiny_model.token_ids[GEN_EMB] in special
    tok = tiny_model.processor.tokenizer
    probs = torch.zeros(1, tiny_model.backbone.lm_head.weight.shape[0])
    probs[0, tiny_model.token_ids[EOT]] = 0.9  # a special token on top ...
    probs[0, tok.convert_tokens_to_ids("a")] = 0.1  # ... and an ordinary one below it
    ((word, p),) = top_tokens(tiny_model, probs, k=1)[0]
    assert word == EOT and p == pytest.approx(0.9)
    assert top_tokens(tiny_model, probs, k=1, words_only=True)[0][0][0] == "a"


def test_written_vs_latent_lines_up_written_answers_with_latent_ranks():
    from types import SimpleNamespace

    from plume_lite.evaluation.written import written_vs_latent

    task = SimpleNamespace(
        name="qa",
        queries=[{"text": "which colour?", "image": "a.png"}, {"image": "b.png", "instruction": "classify"}],
        candidates=[{"text": "Red"}, {"text": "blue"}],
        qrels=[{"0": 1}, {"1": 1}],
    )
    explicit = {
        "tasks": {
            "qa": {
                "per_query": [
                    {"rank": 2, "written": "it is red</think> red", "written_correct": True},
                    {"rank": 1, "written": "hehehe", "written_correct": False},
                ]
            }
        }
    }
    latent = {"tasks": {"qa": {"per_query": [{"rank": 3}, {"rank": 1}]}}}
    rows = written_vs_latent(explicit, latent, [task])
    assert [(r["question"], r["rationale"], r["written answer"], r["true answer"]) for r in rows] == [
        ("which colour?", "it is red", "red", "red"),
        ("classify", "hehehe", None, "blue"),
    ]
    assert [(r["explicit written right"], r["latent right"], r["latent rank"]) for r in rows] == [
        (True, False, 3),
        (False, True, 1),
    ]
    no_written = {"tasks": {"qa": {"per_query": [{"rank": 1}, {"rank": 1}]}}}  # e.g. image answers
    assert written_vs_latent(no_written, latent, [task]) == []
