"""The tiny profile's explicit budget covers every training target of the shipped data,
so a writer that learned its targets is never cut before `</think>` and the answer."""

from plume_lite.backbone import load_backbone
from plume_lite.curriculum import explicit_suffix
from plume_lite.data.mmeb import load_train_pairs
from plume_lite.data.synth import default_data
from plume_lite.train.config import resolve_config


def test_tiny_budget_covers_the_longest_explicit_target():
    config = resolve_config("tiny", mode="explicit")
    _, processor = load_backbone(config.backbone)
    pairs = load_train_pairs(default_data("tiny"))  # SynthMMEB tiny, in the cache folder
    targets = [
        explicit_suffix(rationale, answer)
        for p in pairs
        for rationale, answer in (
            (p.query_rationale, p.query_answer),
            (p.positive_rationale, p.positive_answer),
        )
    ]
    assert pairs and all(t.count("</think>") == 1 for t in targets)
    tok = processor.tokenizer
    # + 1: generation also spends a token on writing <gen_emb>, where it stops
    longest = max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in targets) + 1
    assert longest > 64  # the old budget did not cover it
    assert config.max_new_tokens >= longest
    assert config.model_kwargs()["max_new_tokens"] == config.max_new_tokens  # the model gets it


def test_the_writing_budget_of_a_plume_model_and_of_a_baseline(tiny_model):
    from types import SimpleNamespace

    from plume_lite.explicit import writing_budget

    assert writing_budget(tiny_model) == tiny_model.config.max_new_tokens
    assert writing_budget(SimpleNamespace(max_new_tokens=8192)) == 8192  # UME-R1's own budget
