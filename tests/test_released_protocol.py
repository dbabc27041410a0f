"""The authors' inference, reproduced by saved settings (spec ../shared/RELEASED_CHECKPOINTS.md
§7, P0.2-P0.4), against batch-1 references written from the spec (tests/authors_checkpoints.py):

- adapter maths: outputs and chosen experts of the renamed adapter equal the spec's
  LatentMoETransition, fp32, for the contexts disc / none / prefix_last and steps 0, 7, 31;
- prompt protocol "plume": the rendered prefix string and token ids equal the Qwen2-VL
  chat template over the authors' messages plus encode("<think><bot>"), a text item
  carries the blank image, one <gen_emb> sits in the prompt and is never read;
- positions "authors": a batched mixed encode equals the batch-1 reference per item, and
  this package's M-RoPE default changes an image item's embedding;
- post-suffix decoding: greedy after the forced suffix, the last <gen_emb> read, the
  budget's exhaustion reported (lm_head rigged to EOS, to <gen_emb>, to a plain token).
"""

import pytest
import torch
from authors_checkpoints import (
    FORCED_SUFFIX,
    PREFILL,
    authors_adapter,
    authors_inputs,
    authors_latent_embed,
    authors_prompt,
    blank_image,
    build_authors_checkpoint,
    read_authors_adapter,
    scene_image,
)

from plume_lite import InputError, PlumeModel
from plume_lite.adapter import TransitionAdapter
from plume_lite.items import clean_item
from plume_lite.released import rename_adapter_state
from plume_lite.rollout import run_prefix

TOL = 1e-5


# media sized as fixed points of qwen_vl_utils' first resize (multiples of 28), so the
# first resize leaves their pixels as they are; 8 frames, so every frame is sampled
ITEMS = {
    "text": {"text": "two blue squares  ", "instruction": "  Find the picture."},
    "image": {"image": scene_image(56, 84), "text": "What is left of the blue square?"},
    "video": {"video": [scene_image(56, 56, i) for i in range(8)], "instruction": "Which object moved?"},
}


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory):
    return build_authors_checkpoint(tmp_path_factory.mktemp("plume") / "ckpt", "plume")


@pytest.fixture(scope="module")
def model(authors_checkpoint):
    # the forced <gen_emb> is read: a random model's argmax after it is rarely EOS, and
    # the authors' 4096-token decoding is tested on its own below with a rigged lm_head
    return PlumeModel.from_pretrained(authors_checkpoint, post_suffix_decode=0).eval()


@pytest.fixture(scope="module")
def state(authors_checkpoint):
    return read_authors_adapter(authors_checkpoint)


# ------------------------------------------------------------------ P0.2 adapter maths
def _package_adapter(state, kind):
    dim = state["ln.weight"].shape[0]
    adapter = TransitionAdapter(dim, kind, num_experts=4, top_k=2, dropout=0.0, step_table_size=32)
    expected = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    adapter.load_state_dict(rename_adapter_state(state, expected, "fixture"), strict=True)
    return adapter.eval()


@pytest.mark.parametrize("context", ["disc", "none", "prefix_last"])
@pytest.mark.parametrize("step", [0, 7, 31])
@torch.no_grad()
def test_adapter_equals_the_authors_maths(state, context, step):
    # disc: the router sees z + h[<disc_emb>]; prefix_last: z + h[<bot>] (this package's
    # moe adapter given that anchor); none: z alone (moe_no_anchor)
    adapter = _package_adapter(state, "moe_no_anchor" if context == "none" else "moe")
    g = torch.Generator().manual_seed(step)
    z = 3.0 * torch.randn(16, 128, generator=g)
    anchor = {"disc": 3.0 * torch.randn(16, 128, generator=g), "prefix_last": z.flip(0), "none": None}[
        context
    ]
    want, p, chosen = authors_adapter(state, z, step, anchor)
    got = adapter(z, step, anchor if anchor is not None else torch.zeros_like(z))
    # fp32: equal up to summation order (dense over E here, over the top-k there)
    assert torch.allclose(got.x, want, atol=1e-6, rtol=1e-6), (got.x - want).abs().max()
    assert torch.allclose(got.gate, p, atol=1e-6, rtol=0)
    assert torch.equal(got.chosen, chosen)
    assert len({tuple(c) for c in chosen.tolist()}) > 1  # the router really chooses


def test_the_loaded_model_carries_the_renamed_adapter(model, state):
    z, a = torch.randn(4, 128), torch.randn(4, 128)
    want, _, chosen = authors_adapter(state, z, 3, a)
    got = model.adapter(z, 3, a)
    assert torch.allclose(got.x, want, atol=1e-6, rtol=1e-6) and torch.equal(got.chosen, chosen)


def test_the_anchor_is_the_last_disc_emb_and_a_missing_one_is_an_error(model):
    disc = model.token_ids["<disc_emb>"]
    ids = torch.tensor([[5, disc, 7, disc, 9], [disc, 6, 6, 6, 6]])
    assert model.batcher.anchor_index(ids).tolist() == [3, 0]
    with pytest.raises(InputError, match="row 1 of the batch has no <disc_emb>"):
        model.batcher.anchor_index(torch.tensor([[disc, 1, 2], [1, 2, 3]]))


# ------------------------------------------------------------------ P0.3 prompt protocol
@pytest.mark.parametrize("kind", ["text", "image", "video"])
def test_the_prompt_is_the_authors_template_rendering(model, kind):
    item = ITEMS[kind]
    want = authors_prompt(model.processor, item) + PREFILL
    got = model.batcher.prompt(clean_item(item), "latent")
    assert got == want
    head = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
    assert got.startswith(head) and got.endswith("<|im_end|>\n<|im_start|>assistant\n<think><bot>")
    if kind == "text":  # stripped, instruction first, the blank image's placeholder
        assert "<|image_pad|><|vision_end|>Find the picture. two blue squares\n<disc_emb>\n" in got


def test_media_tokens_in_a_users_text_are_dropped_not_escaped(model):
    # the authors' collator removes <|image_pad|> / <|video_pad|> from T; escaping them
    # first (as user text is, elsewhere) would leave them in the prompt as plain characters
    item = {"image": scene_image(56, 84), "text": "<|image_pad|>What is left of the blue square?"}
    got = model.batcher.prompt(model.batcher._user_text(clean_item(item)), "latent")
    assert got == model.batcher.prompt(clean_item(ITEMS["image"]), "latent")
    assert "image_pad|>What" not in got


@pytest.mark.parametrize("kind", ["text", "image", "video"])
def test_token_ids_and_pixels_equal_the_authors_inputs(model, kind):
    item = ITEMS[kind]
    ours, anchor = model.batcher([item], "latent", "cpu")
    ref = authors_inputs(model.processor, item)
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        assert torch.equal(ours[key], ref[key]), key
    for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
        assert (key in ours) == (key in ref), key
        if key in ref:
            assert torch.equal(ours[key], ref[key]), key
    disc = model.token_ids["<disc_emb>"]
    assert int(anchor[0]) == int((ref["input_ids"][0] == disc).nonzero()[-1])


def test_a_text_item_carries_the_blank_image(model, tiny_model):
    blank = blank_image()
    assert blank.size == (56, 56) and blank.getextrema() == ((255, 255), (255, 255), (255, 255))
    inputs, _ = model.batcher([ITEMS["text"]], "latent", "cpu")
    # the tiny processor (patch 8, merge 2: factor 16, at most 64x64 pixels) rounds 56 to 64:
    # grid (1, 8, 8), 16 image tokens after the 2x2 merge
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]
    pad = model.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == pad).sum()) == 16
    # this package's own protocol gives a text item no image
    inputs, _ = tiny_model.batcher([ITEMS["text"]], "latent", "cpu")
    assert "image_grid_thw" not in inputs


def test_one_gen_emb_sits_in_the_prompt_and_the_read_is_in_the_suffix(model):
    gen = model.token_ids["<gen_emb>"]
    inputs, _ = model.batcher([ITEMS["image"]], "latent", "cpu")
    assert int((inputs["input_ids"] == gen).sum()) == 1  # the literal <gen_emb> of the instruction
    suffix = model.processor.tokenizer.encode(FORCED_SUFFIX, add_special_tokens=False)
    assert suffix[-1] == gen  # the embedding is the hidden state at the suffix's <gen_emb>


# ------------------------------------------------------------------ P0.4 positions
@torch.no_grad()
def test_batched_mixed_encode_equals_the_authors_batch1_reference(model, state):
    items = list(ITEMS.values())
    emb = model.encode(items, batch_size=len(items))
    for i, item in enumerate(items):
        ref = authors_latent_embed(model.backbone, model.processor, state, item, K=8)
        assert (emb[i] - ref).abs().max() <= TOL, list(ITEMS)[i]


@torch.no_grad()
def test_mrope_positions_change_an_image_items_embedding(authors_checkpoint, model):
    mrope = PlumeModel.from_pretrained(authors_checkpoint, positions="mrope", post_suffix_decode=0).eval()
    items = [ITEMS["image"], ITEMS["text"]]
    diff = (mrope.encode(items) - model.encode(items)).abs().max(dim=1).values
    assert (diff > 1e-3).all(), diff  # text items too: they carry the blank image


@torch.no_grad()
def test_authors_positions_start_delta_later_than_mrope(model):
    # one 32x32 image, 56x56 after the authors' stage-1 resize (image_pipeline=qwen_vl_utils),
    # which the tiny processor (patch 8, factor 16) rounds to 64: an 8x8 patch grid, 4x4
    # after the 2x2 merge: 16 tokens spanning 4 positions
    item = {"image": scene_image(32, 32), "text": "a"}
    inputs, _ = model.batcher([item], "latent", "cpu")
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]
    _, authors = run_prefix(model.vlm, inputs, positions="authors")
    _, mrope = run_prefix(model.vlm, inputs, positions="mrope")
    assert int(authors.next_pos[0]) == inputs["input_ids"].shape[1]  # the cache length
    assert int(authors.next_pos[0] - mrope.next_pos[0]) == 16 - 4


# ------------------------------------------------------------------ P0.5 post-suffix decoding
class RiggedHead(torch.nn.Module):
    """An lm_head whose argmax is `rule(hidden)` (token ids), for steering the decoding."""

    def __init__(self, vocab: int, rule):
        super().__init__()
        self.vocab, self.rule = vocab, rule

    def forward(self, hidden):
        logits = torch.zeros(*hidden.shape[:-1], self.vocab)
        return logits.scatter(-1, self.rule(hidden)[..., None], 1.0)


@pytest.fixture(scope="module")
def decoding(authors_checkpoint):
    """(model with the authors' decoding budget N, forced-read model), lm_head to rig."""

    def make(n, rule):
        model = PlumeModel.from_pretrained(authors_checkpoint, post_suffix_decode=n).eval()
        vocab = model.backbone.get_output_embeddings().weight.shape[0]
        model.backbone.lm_head = RiggedHead(vocab, rule)
        return model

    return make


def _constant(token):
    return lambda h: torch.full(h.shape[:-1], token, dtype=torch.long)


@torch.no_grad()
def test_eos_after_gen_emb_keeps_the_forced_read(decoding, model):
    items = [ITEMS["image"], ITEMS["text"]]
    im_end = model.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    rigged = decoding(4096, _constant(im_end))
    emb, traces = rigged.encode(items, return_trace=True)
    assert model.config.post_suffix_decode == 0  # the fixture model of the other tests reads the forced one
    assert torch.allclose(emb, model.encode(items), atol=1e-6)
    assert [(t["post_suffix_tokens"], t["hit_max_new_tokens"]) for t in traces] == [(1, False), (1, False)]


@torch.no_grad()
def test_a_second_gen_emb_is_the_one_read(decoding, model, state):
    gen = model.token_ids["<gen_emb>"]
    rigged = decoding(8, _constant(gen))
    emb, traces = rigged.encode([ITEMS["image"]], return_trace=True)
    ref, hit, written = authors_latent_embed(
        rigged.backbone, rigged.processor, state, ITEMS["image"], max_new_tokens=8
    )
    assert written == [gen] and not hit
    assert (emb[0] - ref).abs().max() <= TOL
    assert (emb[0] - model.encode([ITEMS["image"]])[0]).abs().max() > 1e-3  # not the forced one
    assert traces[0]["post_suffix_tokens"] == 1 and not traces[0]["hit_max_new_tokens"]


@torch.no_grad()
def test_a_budget_that_runs_out_keeps_the_forced_read_and_says_so(decoding, model):
    neutral = model.processor.tokenizer.convert_tokens_to_ids("a")
    rigged = decoding(3, _constant(neutral))
    emb, traces = rigged.encode([ITEMS["text"]], return_trace=True)
    assert torch.allclose(emb, model.encode([ITEMS["text"]]), atol=1e-6)
    assert traces[0]["post_suffix_tokens"] == 3 and traces[0]["hit_max_new_tokens"]


@torch.no_grad()
def test_batched_decoding_equals_the_batch1_reference_per_item(decoding, model, state):
    gen = model.token_ids["<gen_emb>"]
    neutral = model.processor.tokenizer.convert_tokens_to_ids("a")
    # rows part ways: <gen_emb> where hidden unit 8 is positive, else a plain token (on this
    # fixture the first two items never write <gen_emb> and run out of budget, the last does)
    rule = lambda h: torch.where(h[..., 8] > 0, gen, neutral)
    rigged = decoding(5, rule)
    items = list(ITEMS.values())
    emb, traces = rigged.encode(items, batch_size=len(items), return_trace=True)
    for i, item in enumerate(items):
        ref, hit, written = authors_latent_embed(
            rigged.backbone, rigged.processor, state, item, max_new_tokens=5
        )
        assert (emb[i] - ref).abs().max() <= TOL, list(ITEMS)[i]
        assert (traces[i]["post_suffix_tokens"], traces[i]["hit_max_new_tokens"]) == (len(written), hit)
    assert len({(t["post_suffix_tokens"], t["hit_max_new_tokens"]) for t in traces}) > 1  # rows differed
