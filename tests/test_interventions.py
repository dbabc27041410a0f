"""plume_lite.interventions (expert knock-out, anchor masking) on the tiny untrained
model, and plume_lite.probes on synthetic features whose answer is known."""

from contextlib import nullcontext

import numpy as np
import pytest
import torch

from plume_lite.errors import InputError
from plume_lite.interventions import knock_out_expert, mask_anchor, rollout_change
from plume_lite.probes import held_out_split, probe_accuracy, rationale_fact, step_probe_table

ITEMS = [{"text": "a red circle left of a blue square"}, {"text": "three green triangles"}]


def _adapter_state(model):
    return {k: v.clone() for k, v in model.adapter.state_dict().items()}


def test_knock_out_changes_the_embedding_and_restores_the_weights_exactly(tiny_model):
    before = _adapter_state(tiny_model)
    base = tiny_model.encode(ITEMS, mode="latent")
    _, (trace,) = tiny_model.encode(ITEMS[:1], mode="latent", return_trace=True)
    chosen = int(trace["chosen"][0, 0])  # an expert the first step does use
    with knock_out_expert(tiny_model.adapter, chosen) as adapter:
        last = adapter.experts[chosen][-1]
        assert not last.weight.any() and not last.bias.any()
        knocked = tiny_model.encode(ITEMS, mode="latent")
    assert not torch.allclose(base, knocked, atol=1e-6)
    after = _adapter_state(tiny_model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    torch.testing.assert_close(tiny_model.encode(ITEMS, mode="latent"), base, atol=0, rtol=0)


def test_knock_out_restores_the_weights_after_an_error(tiny_model):
    before = _adapter_state(tiny_model)
    with pytest.raises(RuntimeError), knock_out_expert(tiny_model.adapter, 1):
        raise RuntimeError("inside the block")
    after = _adapter_state(tiny_model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_knock_out_refuses_an_expert_that_does_not_exist(tiny_model):
    with pytest.raises(InputError, match="out of range"), knock_out_expert(tiny_model.adapter, 99):
        pass


def test_anchor_masking_changes_the_router_gates_and_restores_the_adapter(tiny_model):
    _, base = tiny_model.encode(ITEMS, mode="latent", return_trace=True)
    with mask_anchor(tiny_model.adapter):
        assert "forward" in vars(tiny_model.adapter)
        _, masked = tiny_model.encode(ITEMS, mode="latent", return_trace=True)
    assert "forward" not in vars(tiny_model.adapter)
    assert not torch.allclose(base[0]["gates"], masked[0]["gates"], atol=1e-6)
    _, again = tiny_model.encode(ITEMS, mode="latent", return_trace=True)
    for a, b in zip(base, again):
        torch.testing.assert_close(a["gates"], b["gates"], atol=0, rtol=0)


def test_anchor_masking_zeroes_only_the_anchor(tiny_model):
    adapter = tiny_model.adapter
    dim = adapter.norm.normalized_shape[0]
    z, anchor = torch.randn(2, dim), torch.randn(2, dim)
    with mask_anchor(adapter):
        masked = adapter(z, 0, anchor)
    zero = type(adapter).forward(adapter, z, 0, torch.zeros_like(anchor))
    torch.testing.assert_close(masked.gate, zero.gate)
    torch.testing.assert_close(masked.x, zero.x)


def test_probe_beats_the_majority_on_a_separable_case():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=240)
    centres = rng.normal(size=(3, 16)) * 3
    features = centres[labels] + rng.normal(size=(240, 16))
    train_idx, test_idx = held_out_split(240, seed=1)
    result = probe_accuracy(features, labels, train_idx, test_idx)
    assert 0 <= result["majority"] <= result["accuracy"] <= 1
    assert result["accuracy"] > 0.9 and result["majority"] < 0.5
    assert result["n_train"] + result["n_test"] == 240 and not set(train_idx) & set(test_idx)


def test_probe_on_random_labels_is_near_the_majority():
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(400, 16)), rng.integers(0, 2, size=400)
    train_idx, test_idx = held_out_split(400, seed=0)
    result = probe_accuracy(features, labels, train_idx, test_idx)
    assert abs(result["accuracy"] - result["majority"]) < 0.12


def test_step_probe_table_rows_per_label_and_state():
    rng = np.random.default_rng(0)
    answer = rng.integers(0, 2, size=60)
    states = {"anchor": rng.normal(size=(60, 8)), "z1": answer[:, None] * 4.0 + rng.normal(size=(60, 8))}
    fact = [None if i % 5 == 0 else str(answer[i]) for i in range(60)]  # unstated: left out
    rows = step_probe_table(states, {"answer": answer.tolist(), "fact": fact})
    assert [(r["label"], r["state"]) for r in rows] == [
        ("answer", "anchor"),
        ("answer", "z1"),
        ("fact", "anchor"),
        ("fact", "z1"),
    ]
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["majority"] <= 1 for r in rows)
    assert rows[1]["accuracy"] > rows[1]["majority"]  # z1 carries the answer
    assert rows[2]["n_train"] + rows[2]["n_test"] == 48


def test_rationale_facts_are_read_from_synthmmeb_rationales():
    text = (
        "The image shows four shapes in a row. From left to right they are a green circle, an orange "
        "square, a red triangle and a pink circle. The triangle is the third shape from the left."
    )
    assert rationale_fact("img_qa_leftof", "shapes in the row", text) == "four"
    assert rationale_fact("img_qa_leftof", "position of the named shape", text) == "third"
    assert rationale_fact("img_qa_leftof", "shapes in the row", "no such sentence") is None
    with pytest.raises(InputError, match="no rationale fact"):
        rationale_fact("img_qa_leftof", "colour of the sky", text)


def test_rollout_change_is_nil_without_an_intervention_and_seen_with_one(tiny_model):
    same = rollout_change(tiny_model, ITEMS, nullcontext)
    assert same["embedding_cosine"] == pytest.approx(1.0, abs=1e-5) and same["changed_choices"] == 0
    masked = rollout_change(tiny_model, ITEMS, lambda: mask_anchor(tiny_model.adapter))
    assert masked["embedding_cosine"] < 1 - 1e-6 and 0 <= masked["changed_choices"] <= 1
