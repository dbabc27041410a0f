"""The two baselines run as their harnesses ran them (spec ../shared/RELEASED_CHECKPOINTS.md
§4, §7 P1.8-P1.9; D20, D22, D23), against batch-1 references written from the spec
(tests/authors_checkpoints.py: ume_explicit_embed, ume_disc_embed, vlm2vec_embed):

- UME-R1: the prompt is the collator's template with nothing appended; explicit
  embeddings equal the reference at batch 1 and in a left-padded batch of 3, with the
  model's own greedy writing and with a scripted lm_head (a <gen_emb> read at j+1, a
  budget run out, a <gen_emb> then EOS); without <gen_emb> the read is the last token
  fed; disc mode reads <disc_emb>; loading adds, resizes and re-initialises nothing;
- VLM2Vec-V2: raw strings, 1-D positions, last-token pooling equal the reference per
  item in one batch; transformers' 3-D positions change image items and not text ones;
  a LoRA-only folder is merged into its base and equals the LoRA model's own forward;
- both score through plume_lite's `evaluate`.
"""

import json
import shutil

import pytest
import torch
from authors_checkpoints import (
    authors_prompt,
    build_authors_checkpoint,
    read_backbone_tensors,
    ume_disc_embed,
    ume_explicit_embed,
    ume_inputs,
    vlm2vec_embed,
)
from PIL import Image, ImageDraw

from plume_lite import CheckpointError, ConfigError, InputError
from plume_lite.baselines import BASELINES, load_baseline
from plume_lite.files import item_kind
from plume_lite.pixel_budget import pixel_budget
from plume_lite.ume_r1 import UmeR1Encoder, read_step, ume_r1_prompt
from plume_lite.vlm2vec import Vlm2VecEncoder, vlm2vec_text

TOL = 1e-5
BUDGET = 6  # generation budget in these tests (the authors': 8192)


def _image(w, h, seed=0):
    img = Image.new("RGB", (w, h), (235, 235, 235))
    d = ImageDraw.Draw(img)
    d.ellipse([2 + seed, 3, w // 2 + seed, h - 4], fill=(200, 40, 40))
    d.rectangle([w // 2, 2, w - 2, h // 2], fill=(30, 60, 210))
    return img


# media at qwen_vl_utils' fixed points (multiples of 28), as in test_released_protocol
UME_ITEMS = {
    "text": {"text": "two blue squares  ", "instruction": "  Find the picture."},
    "image": {"image": _image(56, 84), "text": "<|image_pad|> What is left of the blue square?"},
    "video": {"video": [_image(56, 56, i) for i in range(8)], "instruction": "Which object moved?"},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    return {kind: build_authors_checkpoint(root / kind, kind) for kind in ("ume", "vlm2vec")}


@pytest.fixture(scope="module")
def ume(folders):
    return UmeR1Encoder.from_pretrained(folders["ume"], max_new_tokens=BUDGET)


# ------------------------------------------------------------------ UME-R1 (P1.8)
def test_ume_prompt_is_the_collators_template_with_nothing_appended(ume):
    for name, item in UME_ITEMS.items():
        assert ume_r1_prompt(item, item_kind(item)) == authors_prompt(ume.processor, item), name
        inputs, _ = ume.batcher([item], "explicit", "cpu")
        ref = ume_inputs(ume.processor, item)
        assert torch.equal(inputs["input_ids"], ref["input_ids"]), name
        assert ume.tokenizer.decode(inputs["input_ids"][0]).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert pixel_budget(ume.processor) == (784, 2359296)  # their --resize_min/max_pixels


def test_ume_text_items_carry_the_blank_image(ume):
    inputs, _ = ume.batcher([UME_ITEMS["text"]], "explicit", "cpu")
    # the 56x56 blank under [784, 2359296] with 8-px patches, merge 2: a 56 -> 64 side, grid (1, 8, 8)
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_ume_explicit_equals_the_batch1_reference(ume, batch_size):
    items = list(UME_ITEMS.values())
    emb, traces = ume.encode(items, batch_size=batch_size, return_trace=True)
    for i, item in enumerate(items):
        ref, written = ume_explicit_embed(ume.backbone, ume.processor, item, BUDGET)
        assert (emb[i] - ref).abs().max() <= TOL, list(UME_ITEMS)[i]
        assert traces[i]["generated_tokens"] == len(written)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(items)), atol=1e-6)


class ScriptedHead(torch.nn.Module):
    """An lm_head whose argmax for batch row b at decoder call c is scripts[b][c] (the last
    entry repeated), whatever the hidden state."""

    def __init__(self, vocab: int, scripts: list[list[int]]):
        super().__init__()
        self.vocab, self.scripts, self.calls = vocab, scripts, 0

    def forward(self, hidden):
        c, self.calls = self.calls, self.calls + 1
        ids = torch.tensor([s[min(c, len(s) - 1)] for s in self.scripts])
        logits = torch.zeros(*hidden.shape[:-1], self.vocab)
        return logits.scatter(-1, ids.view(-1, *[1] * (hidden.dim() - 1)).expand(*hidden.shape[:-1], 1), 1.0)


@pytest.fixture()
def scripted(folders):
    """An UME-R1 encoder whose lm_head follows `scripts` (a fresh head per call)."""
    encoder = UmeR1Encoder.from_pretrained(folders["ume"], max_new_tokens=BUDGET)
    vocab = encoder.backbone.get_output_embeddings().weight.shape[0]

    def run(scripts):
        encoder.backbone.lm_head = ScriptedHead(vocab, scripts)
        return encoder

    return run


def test_ume_read_rule_by_hand():
    g, e, a = 7, 2, 5  # <gen_emb>, EOS, a plain token
    assert read_step([a, a, g, e], g) == 3  # j = 2: the step that feeds <gen_emb>
    assert read_step([g, e], g) == 1  # j + 1 = n - 1: the same step either way
    assert read_step([a, g], g) == 1  # <gen_emb> last (budget): n - 1, the last token fed
    assert read_step([g, a, g, e], g) == 3  # the last <gen_emb>
    assert read_step([a, a, a], g) == 2  # none: the last token fed
    assert read_step([e], g) == 0  # EOS at once: the prompt's last position


def test_ume_scripted_writing_batched_equals_the_reference_per_item(scripted):
    enc = scripted([[0]])
    tok = enc.tokenizer
    g, e, a, b = (tok.convert_tokens_to_ids(t) for t in ("<gen_emb>", "<|im_end|>", "a", "b"))
    # <gen_emb> at j=2; EOS before any <gen_emb> (read at its own last step, not the batch's);
    # <gen_emb> then EOS; no <gen_emb> until the budget runs out
    scripts = [[a, b, g, e], [a, e], [g, e], [a]]
    items = [*UME_ITEMS.values(), UME_ITEMS["image"]]
    emb, traces = scripted(scripts).encode(items, batch_size=4, return_trace=True)
    assert [t["read_step"] for t in traces] == [3, 1, 1, BUDGET - 1]
    assert [t["read_gen_emb"] for t in traces] == [True, False, True, False]
    assert [t["hit_max_new_tokens"] for t in traces] == [False, False, False, True]
    assert [t["generated_tokens"] for t in traces] == [4, 2, 2, BUDGET]
    for i, item in enumerate(items):
        enc = scripted([scripts[i]])
        ref, written = ume_explicit_embed(enc.backbone, enc.processor, item, BUDGET)
        assert written == (scripts[i] if len(scripts[i]) > 1 else scripts[i] * BUDGET)
        assert (emb[i] - ref).abs().max() <= TOL, i


@torch.no_grad()
def test_ume_without_gen_emb_the_read_is_the_last_token_fed(scripted):
    enc = scripted([[0]])
    a = enc.tokenizer.convert_tokens_to_ids("a")
    item = UME_ITEMS["image"]
    emb = scripted([[a]]).encode([item])[0]
    # independently: one forward over the prompt and the BUDGET - 1 tokens fed, last position
    inputs = ume_inputs(enc.processor, item)
    fed = torch.full((1, BUDGET - 1), a)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], fed], 1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(fed)], 1)
    inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(fed)], 1)
    enc.vlm.rope_deltas = None
    h = enc.vlm(**inputs).last_hidden_state[0, -1]
    assert (emb - torch.nn.functional.normalize(h, dim=-1)).abs().max() <= TOL


def test_ume_disc_reads_the_disc_emb(ume):
    items = list(UME_ITEMS.values())
    emb = ume.encode(items, mode="direct", batch_size=3)
    for i, item in enumerate(items):
        assert (emb[i] - ume_disc_embed(ume.backbone, ume.processor, item)).abs().max() <= TOL


def test_ume_loading_adds_and_changes_nothing(folders, ume):
    from transformers import AutoTokenizer

    saved = read_backbone_tensors(folders["ume"])["model.embed_tokens.weight"]
    tok = AutoTokenizer.from_pretrained(folders["ume"])
    assert len(ume.tokenizer) == len(tok) and ume.tokenizer.get_vocab() == tok.get_vocab()
    assert "<bot>" not in ume.tokenizer.get_vocab() and "<ct>" not in ume.tokenizer.get_vocab()
    assert ume.backbone.config.text_config.vocab_size == saved.shape[0] > len(tok)  # padded rows kept
    assert torch.equal(ume.backbone.get_input_embeddings().weight, saved)
    assert torch.equal(ume.backbone.get_output_embeddings().weight, saved)  # tied: rows >= len(tok) too
    assert ume.gen_id == tok.convert_tokens_to_ids("<gen_emb>") == len(tok) - 2


def test_ume_refusals_are_one_line(ume, folders, tmp_path):
    with pytest.raises(InputError, match="ume_r1 runs mode 'explicit' or 'direct', got 'latent'"):
        ume.encode([UME_ITEMS["text"]], mode="latent")
    with pytest.raises(CheckpointError, match=r"lacks \['<gen_emb>', '<disc_emb>'\]; not a UME-R1"):
        UmeR1Encoder.from_pretrained(folders["vlm2vec"])
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(folders["ume"])}))
    with pytest.raises(CheckpointError, match="LoRA adapter folder; this baseline loads full weights only"):
        UmeR1Encoder.from_pretrained(lora)


def test_a_hub_id_goes_through_snapshot_download(folders, monkeypatch):
    import huggingface_hub

    asked = []
    monkeypatch.setattr(
        huggingface_hub,
        "snapshot_download",
        lambda repo_id, **kw: asked.append(repo_id) or str(folders["ume"]),
    )
    enc = UmeR1Encoder.from_pretrained("zhibinlan/UME-R1-2B", max_new_tokens=2)
    assert asked == ["zhibinlan/UME-R1-2B"] and enc.max_new_tokens == 2


# ------------------------------------------------------------------ VLM2Vec-V2 (P1.9)
# (item, the raw string T the harness feeds, its image or frames)
V_IMAGE = _image(48, 72)
V_SMALL = _image(20, 36, 1)  # under 28 px on a side: 56x56
V_FRAMES = [_image(56, 56, i) for i in range(8)]
V_CASES = {
    "image": (
        {"text": "<|image_pad|>\nRepresent the given image for classification\n", "image": V_IMAGE},
        "<|image_pad|>\nRepresent the given image for classification\n",
    ),
    "small": (
        {"image": V_SMALL, "instruction": "Find a picture.", "text": "a ball"},
        "<|image_pad|> Find a picture. a ball",
    ),
    "text": ({"text": "a red ball"}, "a red ball"),
    "video": (
        {"video": V_FRAMES, "text": "<|video_pad|> Understand the content of the provided video."},
        "<|video_pad|> Understand the content of the provided video.",
    ),
}


def _vlm2vec_ref(model, processor, name, positions="1d"):
    item, text = V_CASES[name]
    return vlm2vec_embed(model, processor, text, item.get("image"), item.get("video"), positions)


@pytest.fixture(scope="module")
def vlm2vec(folders):
    return Vlm2VecEncoder.from_pretrained(folders["vlm2vec"])


def test_vlm2vec_strings_are_raw(vlm2vec):
    for name, (item, text) in V_CASES.items():
        assert vlm2vec_text(item, item_kind(item)) == text, name
    ids = vlm2vec.batch_inputs([V_CASES["image"][0]])["input_ids"][0].tolist()
    tok = vlm2vec.tokenizer
    assert tok.convert_tokens_to_ids("<|vision_start|>") not in ids  # bare pads
    assert tok.decode(ids[-1:]) == "\n"  # nothing stripped: the trailing newline is pooled
    assert "pixel_values" not in vlm2vec.batch_inputs([V_CASES["text"][0]])  # text: no image
    assert pixel_budget(vlm2vec.processor) == (3136, 1003520)


def test_vlm2vec_small_images_become_56x56(vlm2vec):
    grid = vlm2vec.batch_inputs([V_CASES["small"][0]])["image_grid_thw"].tolist()
    assert grid == [[1, 8, 8]]  # 56x56 -> 64x64 under [3136, 1003520] with 8-px patches


def test_vlm2vec_batched_equals_the_batch1_reference(vlm2vec):
    names = list(V_CASES)
    emb = vlm2vec.encode([V_CASES[n][0] for n in names], batch_size=len(names))
    for i, name in enumerate(names):
        assert (emb[i] - _vlm2vec_ref(vlm2vec.backbone, vlm2vec.processor, name)).abs().max() <= TOL, name


def test_vlm2vec_transformers_positions_differ_on_media_only(folders, vlm2vec):
    mrope = Vlm2VecEncoder.from_pretrained(folders["vlm2vec"], positions="mrope")
    names = list(V_CASES)
    ours = vlm2vec.encode([V_CASES[n][0] for n in names], batch_size=len(names))
    theirs = mrope.encode([V_CASES[n][0] for n in names], batch_size=len(names))
    for i, name in enumerate(names):
        ref = _vlm2vec_ref(mrope.backbone, mrope.processor, name, positions="hf")
        assert (theirs[i] - ref).abs().max() <= TOL, name
        gap = (ours[i] - theirs[i]).abs().max()
        assert gap <= TOL if name == "text" else gap > 1e-3, name


def test_vlm2vec_refuses_a_media_token_without_media(vlm2vec):
    with pytest.raises(InputError, match=r"item 0: its text holds 1 <\|image_pad\|> for 0 image"):
        vlm2vec.encode([{"text": "<|image_pad|> a cat"}])
    with pytest.raises(InputError, match="vlm2vec runs mode 'direct', got 'latent'"):
        vlm2vec.encode([{"text": "a cat"}], mode="latent")


@pytest.fixture(scope="module")
def lora(folders, tmp_path_factory):
    """A LoRA-only folder on the vlm2vec fixture (random, non-zero B), and the PEFT model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(folders["vlm2vec"], dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    torch.manual_seed(0)
    model = get_peft_model(base, config).eval()
    out = tmp_path_factory.mktemp("lora") / "vlm2vec-lora"
    model.save_pretrained(out)
    data = json.loads((out / "adapter_config.json").read_text())
    data["base_model_name_or_path"] = str(folders["vlm2vec"])
    (out / "adapter_config.json").write_text(json.dumps(data))
    return out, model


def test_a_lora_folder_is_merged_into_its_base(lora, vlm2vec):
    folder, peft_model = lora
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".json") == ["adapter_config.json"]
    merged = Vlm2VecEncoder.from_pretrained(folder)
    names = list(V_CASES)
    emb = merged.encode([V_CASES[n][0] for n in names], batch_size=len(names))
    for i, name in enumerate(names):
        ref = _vlm2vec_ref(peft_model.base_model.model, merged.processor, name)  # LoRA applied, unmerged
        assert (emb[i] - ref).abs().max() <= TOL, name
        assert (emb[i] - _vlm2vec_ref(vlm2vec.backbone, vlm2vec.processor, name)).abs().max() > 1e-3


def test_a_lora_folder_with_a_missing_base_is_one_line(lora, tmp_path):
    folder = tmp_path / "lora"
    shutil.copytree(lora[0], folder)
    data = json.loads((folder / "adapter_config.json").read_text())
    data["base_model_name_or_path"] = str(tmp_path / "nowhere")
    (folder / "adapter_config.json").write_text(json.dumps(data))
    with pytest.raises(
        CheckpointError, match=r"adapter_config.json: its base model .*nowhere is not a folder"
    ):
        Vlm2VecEncoder.from_pretrained(folder)


# ------------------------------------------------------------------ through plume_lite's evaluation
def test_both_score_through_evaluate(ume, vlm2vec):
    from plume_lite.data.formats import EvalTask
    from plume_lite.evaluation.protocol import evaluate

    queries = [{"image": V_IMAGE, "text": "what is this?"}, {"text": "a red ball"}]
    candidates = [{"text": "a ball"}, {"text": "a square"}, {"image": V_SMALL}]
    task = EvalTask(
        "toy", "image", "retrieval", "global", "hit@1", queries, candidates, None, [{0: 1}, {2: 1}]
    )
    for encoder, mode in ((vlm2vec, "direct"), (ume, "explicit"), (ume, "direct")):
        result = evaluate(encoder, [task], mode=mode, batch_size=2, progress=False)
        assert result["complete"] and result["setting"]["checkpoint"] == encoder.checkpoint_id
        q, c = encoder.encode(queries, mode=mode), encoder.encode(candidates, mode=mode)
        hits = [float((q[i] @ c.T).argmax() == gold) for i, gold in enumerate((0, 2))]
        assert result["tasks"]["toy"]["score"] == pytest.approx(100 * sum(hits) / 2)


def _edit_lora(src, dst, edit):
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    path = dst / "adapter_model.safetensors"
    save_file(edit(load_file(str(path))), str(path), metadata={"format": "pt"})
    return dst


def test_a_lora_with_transformers4_names_merges_the_same(lora, tmp_path):
    folder, peft_model = lora

    def legacy(state):  # how a LoRA trained under transformers 4.4x names the modules
        out = {k.replace("model.model.language_model.", "model.model."): v for k, v in state.items()}
        assert len(out) == len(state) and any(k.startswith("base_model.model.model.layers.") for k in out)
        return out

    merged = Vlm2VecEncoder.from_pretrained(_edit_lora(folder, tmp_path / "legacy", legacy))
    for name in ("image", "text"):
        ref = _vlm2vec_ref(peft_model.base_model.model, merged.processor, name)
        assert (merged.encode([V_CASES[name][0]])[0] - ref).abs().max() <= TOL, name


def test_a_lora_that_does_not_fit_is_refused_by_name(lora, tmp_path):
    folder, _ = lora
    drop = lambda state: {k: v for k, v in state.items() if "layers.1.self_attn.v_proj.lora_B" not in k}
    with pytest.raises(
        CheckpointError, match=r"1 LoRA tensors missing, e\.g\. .*layers\.1\.self_attn\.v_proj\.lora_B"
    ):
        Vlm2VecEncoder.from_pretrained(_edit_lora(folder, tmp_path / "short", drop))
    extra = lambda state: {
        **state,
        "base_model.model.model.language_model.layers.9.mlp.lora_A.weight": torch.zeros(4, 8),
    }
    with pytest.raises(
        CheckpointError, match=r"1 tensors fit no module of the base, e\.g\. .*layers\.9\.mlp"
    ):
        Vlm2VecEncoder.from_pretrained(_edit_lora(folder, tmp_path / "extra", extra))


def test_baselines_by_name(folders):
    assert BASELINES == ("ume_r1", "vlm2vec")
    enc = load_baseline("vlm2vec", folders["vlm2vec"], positions="mrope")
    assert isinstance(enc, Vlm2VecEncoder) and enc.positions == "mrope" and enc.default_mode == "direct"
    assert isinstance(load_baseline("ume_r1", folders["ume"], max_new_tokens=3), UmeR1Encoder)
    with pytest.raises(ConfigError, match="baseline must be one of ume_r1, vlm2vec, got 'e5'"):
        load_baseline("e5", folders["ume"])


def _eval_args(tmp_path, monkeypatch, *extra):
    """`plume-lite eval` parsed, on a one-task fake loader that records what it was asked."""
    import argparse
    import sys
    import types

    from plume_lite.data.formats import EvalTask
    from plume_lite.evaluation import cli as eval_cli

    asked = {}
    queries = [{"text": "a red circle"}, {"text": "a blue square"}]
    task = EvalTask("T_cls", "image", "classification", "local", "hit@1", queries, queries, [[0, 1], [1, 0]],
                    [{0: 1.0}, {1: 1.0}])  # fmt: skip
    fake = types.ModuleType("plume_lite.data.mmeb")
    fake.load_eval_tasks = lambda src, tasks=None, split="test", **kw: asked.update(kw) or [task]
    monkeypatch.setitem(sys.modules, "plume_lite.data.mmeb", fake)
    parser = argparse.ArgumentParser()
    eval_cli.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--data", "x", "--out", str(tmp_path / "e.json"), *extra])
    return args, asked


def test_cli_scores_a_baseline_with_its_own_mode_and_texts(folders, tmp_path, monkeypatch, capsys):
    baseline = ["--baseline", "vlm2vec", "--checkpoint", str(folders["vlm2vec"])]
    args, asked = _eval_args(tmp_path, monkeypatch, *baseline)
    assert args.func(args) == 0
    assert asked == {"text_protocol": "vlm2vec"}  # the harness's MMEB strings by default
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["setting"]["mode"] == "direct" and "T_cls" in result["tasks"]
    assert json.loads((tmp_path / "e.vlm2vec.json").read_text())["metadata"]["model_name"] == "vlm2vec"
    args, _ = _eval_args(tmp_path, monkeypatch, *baseline, "--mode", "latent")
    with pytest.raises(InputError, match="--baseline vlm2vec runs --mode direct, not latent"):
        args.func(args)
