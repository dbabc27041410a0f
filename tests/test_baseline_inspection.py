"""Notebooks 03-05's analyses on the released baselines (gpu-2b's explicit and direct
models), on the fake UME-R1 / VLM2Vec checkpoints of tests/authors_checkpoints.py:

- `inspection.explicit_token_states` on UME-R1: one row per written token fed up to the
  read step (ume_r1.read_step), equal to an independent batch-1 forward over the prompt
  and those tokens; the last row is the explicit embedding; batching changes nothing;
  VLM2Vec (which writes nothing) is refused in one line;
- `evaluation.written.written_answer` / `written_rationale` read UME-R1's
  `<think>R</think><answer>A</answer><gen_emb><|im_end|>` and leave a PlumeModel's text
  as before;
- `experiments.bench.time_mode` times both baselines.
"""

import pytest
import torch
import torch.nn.functional as F
from authors_checkpoints import build_authors_checkpoint, ume_inputs
from PIL import Image, ImageDraw

from plume_lite import InputError
from plume_lite.evaluation.written import written_answer, written_rationale
from plume_lite.experiments.bench import time_mode
from plume_lite.inspection import explicit_token_states
from plume_lite.ume_r1 import UmeR1Encoder
from plume_lite.vlm2vec import Vlm2VecEncoder

TOL = 1e-5
BUDGET = 6


def _image(w, h, seed=0):
    img = Image.new("RGB", (w, h), (235, 235, 235))
    d = ImageDraw.Draw(img)
    d.ellipse([2 + seed, 3, w // 2 + seed, h - 4], fill=(200, 40, 40))
    d.rectangle([w // 2, 2, w - 2, h // 2], fill=(30, 60, 210))
    return img


ITEMS = [
    {"text": "two blue squares", "instruction": "Find the picture."},
    {"image": _image(56, 84), "text": "<|image_pad|> What is left of the blue square?"},
    {"video": [_image(56, 56, i) for i in range(8)], "instruction": "Which object moved?"},
    {"image": _image(84, 56, 3), "text": "What colour is the disc?"},
]


class ScriptedHead(torch.nn.Module):
    """An lm_head whose argmax for batch row b at decoder call c is scripts[b][c] (the last
    entry repeated): what UME-R1 writes is then known exactly."""

    def __init__(self, vocab: int, scripts: list[list[int]]):
        super().__init__()
        self.vocab, self.scripts, self.calls = vocab, scripts, 0

    def forward(self, hidden):
        c, self.calls = self.calls, self.calls + 1
        ids = torch.tensor([s[min(c, len(s) - 1)] for s in self.scripts])
        logits = torch.zeros(*hidden.shape[:-1], self.vocab)
        return logits.scatter(-1, ids.view(-1, *[1] * (hidden.dim() - 1)).expand(*hidden.shape[:-1], 1), 1.0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline_inspection")
    return {kind: build_authors_checkpoint(root / kind, kind) for kind in ("ume", "vlm2vec")}


@pytest.fixture(scope="module")
def ume(folders):
    return UmeR1Encoder.from_pretrained(folders["ume"], max_new_tokens=BUDGET)


def _ids(ume, *texts):
    ids = [ume.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert all(len(i) == 1 for i in ids), texts  # one token each, so the scripts are exact
    return [i[0] for i in ids]


@pytest.fixture(scope="module")
def scripted_run(ume):
    """UME-R1 writing these scripts: <gen_emb> at j = 2 (read at step 3); EOS before any
    <gen_emb> (step 1); <gen_emb> then EOS (step 1); EOS at once (step 0); no EOS until
    the budget runs out (step BUDGET - 1)."""
    red, blue, g, e = _ids(ume, " red", " blue", "<gen_emb>", "<|im_end|>")
    scripts = [[red, blue, g, e], [red, e], [g, e], [e], [blue, red]]
    items = [*ITEMS, ITEMS[1]]
    vocab = ume.backbone.get_output_embeddings().weight.shape[0]
    own_head = ume.backbone.lm_head
    ume.backbone.lm_head = ScriptedHead(vocab, scripts)
    try:
        emb, traces = ume.encode(items, batch_size=len(items), return_trace=True)
    finally:
        ume.backbone.lm_head = own_head
    assert [t["read_step"] for t in traces] == [3, 1, 1, 0, BUDGET - 1]
    return items, scripts, emb, traces


def test_ume_states_have_one_row_per_token_fed_up_to_the_read_step(ume, scripted_run):
    items, _, _, traces = scripted_run
    states = explicit_token_states(ume, items, [t["text"] for t in traces])
    dim = ume.backbone.config.text_config.hidden_size
    # steps 1..s (a row per written token fed); step 0 alone when EOS came at once
    assert [tuple(s.shape) for s in states] == [(3, dim), (1, dim), (1, dim), (1, dim), (BUDGET - 1, dim)]
    assert all(s.dtype == torch.float32 and s.device.type == "cpu" for s in states)


def test_ume_last_state_is_the_explicit_embedding(ume, scripted_run):
    items, _, emb, traces = scripted_run
    states = explicit_token_states(ume, items, [t["text"] for t in traces])
    for i, s in enumerate(states):
        assert (F.normalize(s[-1], dim=0) - emb[i]).abs().max() <= TOL, i


@torch.no_grad()
def test_ume_states_equal_a_batch1_forward_over_prompt_and_written_tokens(ume, scripted_run):
    items, scripts, _, traces = scripted_run
    states = explicit_token_states(ume, items, [t["text"] for t in traces])
    for i, (item, script, trace) in enumerate(zip(items, scripts, traces)):
        written = (script + script[-1:] * BUDGET)[:BUDGET]  # the head repeats its last entry
        fed = torch.tensor([written[: trace["read_step"]]], dtype=torch.long)  # step s feeds token s - 1
        inputs = ume_inputs(ume.processor, item)
        prompt_len = inputs["input_ids"].shape[1]
        inputs["input_ids"] = torch.cat([inputs["input_ids"], fed], 1)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(fed)], 1)
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(fed)], 1)
        ume.vlm.rope_deltas = None
        h = ume.vlm(**inputs).last_hidden_state[0]
        expected = h[prompt_len:] if fed.shape[1] else h[prompt_len - 1 :]
        assert (states[i] - expected).abs().max() <= TOL, i


def test_ume_states_do_not_depend_on_the_batch(ume, scripted_run):
    items, _, _, traces = scripted_run
    texts = [t["text"] for t in traces]
    together = explicit_token_states(ume, items, texts)
    alone = explicit_token_states(ume, items, texts, batch_size=1)
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


def test_ume_states_of_its_own_greedy_writing(ume):
    # what the random weights write greedily (six "\n" here) re-tokenises to the same tokens
    emb, traces = ume.encode(ITEMS[:3], return_trace=True)
    states = explicit_token_states(ume, ITEMS[:3], [t["text"] for t in traces])
    for i, (s, t) in enumerate(zip(states, traces)):
        assert len(ume.tokenizer(t["text"], add_special_tokens=False)["input_ids"]) == t["generated_tokens"]
        assert s.shape[0] == max(1, t["read_step"])
        assert (F.normalize(s[-1], dim=0) - emb[i]).abs().max() <= TOL, i


def test_a_model_that_writes_nothing_is_refused_in_one_line(folders):
    vlm2vec = Vlm2VecEncoder.from_pretrained(folders["vlm2vec"])
    with pytest.raises(InputError, match=r"^explicit_token_states needs a PlumeModel or the UME-R1") as e:
        explicit_token_states(vlm2vec, ITEMS[:1], ["a"])
    assert "Vlm2VecEncoder" in str(e.value) and "\n" not in str(e.value)


def test_unequal_items_and_rationales_are_refused(ume):
    with pytest.raises(InputError, match="2 items but 1 rationales"):
        explicit_token_states(ume, ITEMS[:2], ["a"])
    with pytest.raises(InputError, match="rationale 1 is empty"):  # no token: no read step
        explicit_token_states(ume, ITEMS[:2], ["a", ""], batch_size=1)


def test_written_answer_reads_ume_r1s_answer_tags():
    text = "<think>The disc is red.</think><answer> Red  disc</answer><gen_emb><|im_end|>"
    assert written_answer(text) == "red disc"
    assert written_rationale(text) == "The disc is red."
    assert written_answer("<think>x</think> blue <gen_emb> green") == "blue"  # cut at <gen_emb>
    assert written_answer("<think>x</think><answer>two</answer><|im_end|>") == "two"  # no <gen_emb>
    assert written_answer("<think>x</think> three<|im_end|>") == "three"  # no tags
    assert written_answer("<think>no end<gen_emb><|im_end|>") is None


def test_written_answer_of_a_plume_model_is_unchanged():
    # a PlumeModel's explicit text: the prefilled <think> is not in it, it stops before <gen_emb>
    assert written_answer("Two squares.</think> Pink  Triangle\n") == "pink triangle"
    assert written_rationale("  Two squares. </think>x") == "Two squares."
    assert written_answer("never closed") is None


@pytest.mark.parametrize("kind, mode", [("ume", "explicit"), ("ume", "direct"), ("vlm2vec", "direct")])
def test_time_mode_runs_on_the_baselines(folders, ume, kind, mode):
    model = ume if kind == "ume" else Vlm2VecEncoder.from_pretrained(folders["vlm2vec"])
    row = time_mode(model, mode, 2, 0, 1, 56)
    assert row["mode"] == mode and row["batch_size"] == 2 and row["steps"] == 0 and row["repeats"] == 1
    assert row["ms_per_query"] > 0 and row["queries_per_s"] == pytest.approx(2000 / row["ms_per_call"])
    if mode == "explicit":
        assert 1 <= row["generated_tokens"] <= BUDGET
    else:
        assert "generated_tokens" not in row
