"""The pre-training corpus, `plume-lite pretrain`, and the shipped pre-trained tiny backbone."""

import json
import re

import pytest
import torch

from plume_lite.data import captions
from plume_lite.data.scenes import NUMBERS, ORDINALS


def test_row_captions_state_order_and_ordinal_positions():
    import random

    rng = random.Random(1)
    for _ in range(20):
        s = captions.row(rng)
        listed = re.search(r"From left to right they are (.*?)\. The", s.target).group(1)
        shapes = re.findall(r"(?:a|an) \w+ (\w+)", listed)
        k = NUMBERS.index(re.search(r"shows (\w+) shapes", s.target).group(1))
        assert len(shapes) == k
        for i, shape in enumerate(shapes):  # the ordinal clause agrees with the listed order
            assert f"The {shape} is the {ORDINALS[i]} shape from the left." in s.target


def test_by_shape_ordinals_bind_each_ordinal_to_its_shape_in_a_fixed_order():
    import random

    from plume_lite.data.scenes import SHAPES

    for seed in range(20):
        plain, bound = captions.row(random.Random(seed)), captions.row(random.Random(seed), "by_shape")
        clause = r"The (\w+) is the (\w+) shape from the left\."
        clauses = re.findall(clause, bound.target)
        assert sorted(clauses) == sorted(re.findall(clause, plain.target))
        assert [shape for shape, _ in clauses] == sorted((c[0] for c in clauses), key=SHAPES.index)
        assert bound.image.tobytes() == plain.image.tobytes()  # the same scene, only the order differs
    with pytest.raises(ValueError, match="unknown ordinals order"):
        captions.draw(random.Random(0), "row", ordinals="shuffled")


def test_an_unknown_ordinals_order_fails_before_anything_is_built(tmp_path):
    from plume_lite.errors import ConfigError
    from plume_lite.train.pretrain import pretrain

    with pytest.raises(ConfigError, match="--ordinals must be one of left_to_right, by_shape"):
        pretrain(tmp_path / "bb", steps=1, ordinals="shuffled")
    assert not (tmp_path / "bb").exists()


def test_neighbour_clauses_name_the_shape_just_left_of_every_shape_but_the_leftmost():
    import random

    for seed in range(20):
        s = captions.row(random.Random(seed), "by_shape", neighbours=True)
        listed = re.search(r"From left to right they are (.*?)\. The", s.target).group(1)
        objects = re.findall(r"(?:a|an) (\w+ \w+)", listed)
        said = dict(re.findall(r"The shape just left of the (\w+) is the (\w+ \w+)\.", s.target))
        assert said == {objects[i].split()[1]: objects[i - 1] for i in range(1, len(objects))}


def test_scatter_counts_add_up_and_lookup_answers_follow_the_link():
    import random

    rng = random.Random(2)
    for _ in range(20):
        s = captions.scatter(rng)
        total = NUMBERS.index(re.search(r"shows (\w+) shapes", s.target).group(1))
        counts = [NUMBERS.index(n) for n in re.findall(r"There (?:is|are) (\w+) \w+ shape", s.target)]
        assert sum(counts) == total and 2 <= len(counts) <= 4
        q = captions.lookup(rng, n_facts=rng.randint(2, 8))
        links = dict(re.findall(r"(\w+) to (\w+)\.", q.prompt))
        asked = re.search(r"Ask: (\w+) to\?", q.prompt).group(1)
        assert q.target == f"{links[asked]}."


def test_stream_is_deterministic_mixed_or_by_kind_and_lookups_grow():
    a, b = captions.CaptionStream(0), captions.CaptionStream(0)
    for _ in range(5):
        x, y = a.batch(4, mixed=False), b.batch(4, mixed=False)
        assert [s.target for s in x] == [s.target for s in y]
        assert len({s.kind for s in x}) == 1
    mixed = captions.CaptionStream(1).batch(64)
    assert {s.kind for s in mixed} == set(captions.KINDS)

    def facts(progress):
        return len(
            re.findall(r"\w+ to \w+\.", captions.draw(captions.random.Random(0), "lookup", progress).prompt)
        )

    assert (facts(0.0), facts(0.25), facts(0.9)) == (2, 5, 8)


def test_held_out_samples_are_not_training_samples():
    train = [s for _ in range(40) for s in captions.CaptionStream(0).batch(8) if s.image is not None]
    train_pixels = {s.image.tobytes() for s in train}
    for kind in captions.CAPTION_KINDS:
        assert not {s.image.tobytes() for s in captions.held_out(kind, 16)} & train_pixels


def test_labels_cover_the_answer_and_its_end_token_only():
    from plume_lite.backbone import make_backbone
    from plume_lite.train.pretrain import END, lm_batch

    _, processor = make_backbone(vocab_text=captions.VOCAB)
    samples = captions.CaptionStream(3).batch(3) + captions.CaptionStream(4).batch(2)
    inputs = lm_batch(processor, samples)
    for row, s in zip(range(len(samples)), samples):
        labels = inputs["labels"][row]
        assert processor.tokenizer.decode(labels[labels != -100]) == s.target + END


def test_pretrain_runs_a_few_steps_and_writes_a_loadable_backbone(tmp_path):
    from plume_lite.backbone import load_backbone
    from plume_lite.train.pretrain import pretrain

    record = pretrain(tmp_path / "bb", steps=2, batch_size=4, gate_queries=1, command="test")
    saved = json.loads((tmp_path / "bb" / "pretrain.json").read_text())
    assert saved == record and saved["steps"] == 2
    assert set(saved["gate"]["exact_match"]) == set(captions.KINDS)
    model, processor = load_backbone(str(tmp_path / "bb"))
    assert model.config.model_type == "qwen2_vl"
    assert len(processor.tokenizer) == model.config.text_config.vocab_size


# The shipped backbone's quality gate: whole greedy captions exactly right on held-out
# scenes of every kind (lookup is reported, not gated: PRETRAIN_PROBE.md §4).
CAPTION_GATE = 80.0


def test_shipped_pretrained_backbone_loads_and_passes_its_gate():
    from plume_lite.backbone import load_backbone, pretrained_tiny_path
    from plume_lite.train.pretrain import caption_gate

    record = json.loads((pretrained_tiny_path() / "pretrain.json").read_text())
    model, processor = load_backbone("tiny-pretrained")
    torch.set_num_threads(1)
    n = record["gate"]["queries_per_kind"]
    scores = caption_gate(model, processor, n=n, seed=record["seed"])
    for kind, recorded in record["gate"]["exact_match"].items():
        assert scores[kind] == pytest.approx(recorded, abs=2 * 100 / n), kind  # float noise: 2 samples
        if kind in captions.CAPTION_KINDS:  # a kind below the gate is reported (README), never hidden
            assert (scores[kind] >= CAPTION_GATE) == (recorded >= CAPTION_GATE), kind
