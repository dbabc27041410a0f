"""The batched latent rollout equals the same computation without a cache, positions
continue the text positions after vision tokens, and batching does not change an item."""

import pytest
import torch

from plume_lite.rollout import full_sequence_forward, latent_rollout, rope_positions
from plume_lite.tokens import CT, EOT, GEN_EMB, INFERENCE_SUFFIX

K = 8


def _items(media):
    return {
        "text": {"text": "three red bars above the line", "instruction": "Find the chart."},
        "image": {"image": media["image"], "text": "What is left of the blue square?"},
        "video": {"video": media["video"], "instruction": "Which object moved last?"},
        "pdf": {"pdf": media["pdf"], "page": 1, "text": "page"},
    }


def _rollout(model, items, steps=K):
    inputs, anchor = model.batcher(items, "latent", model.device)
    suffix = model.batcher.suffix_ids([EOT + INFERENCE_SUFFIX + GEN_EMB] * len(items), model.device)
    return inputs, suffix, latent_rollout(model.vlm, model.adapter, inputs, anchor, steps, *suffix)


@pytest.mark.parametrize("kind", ["text", "image", "video", "pdf"])
@torch.no_grad()
def test_cached_rollout_equals_full_recompute(tiny_model, media_files, kind):
    items = [_items(media_files)[kind]]
    inputs, (sid, smask), r = _rollout(tiny_model, items)
    full = full_sequence_forward(tiny_model.vlm, inputs, r.inputs, sid, smask, tiny_model.token_ids[CT])
    L = inputs["input_ids"].shape[1]
    assert torch.allclose(full[:, L : L + K], torch.stack(r.latents, 1), atol=1e-4)
    assert torch.allclose(full[:, L + K :], r.suffix_hidden, atol=1e-4)
    assert torch.allclose(full[:, L - 1], r.z0, atol=1e-4)


@torch.no_grad()
def test_mixed_batch_with_padding_equals_full_recompute(tiny_model, media_files):
    items = list(_items(media_files).values())
    inputs, (sid, smask), r = _rollout(tiny_model, items)
    assert (inputs["attention_mask"] == 0).any(), "rows of different lengths must be left-padded"
    full = full_sequence_forward(tiny_model.vlm, inputs, r.inputs, sid, smask, tiny_model.token_ids[CT])
    L = inputs["input_ids"].shape[1]
    assert torch.allclose(full[:, L + K :], r.suffix_hidden, atol=1e-4)


@torch.no_grad()
def test_latent_positions_continue_text_positions_after_image(tiny_model, media_files):
    item = _items(media_files)["image"]
    inputs, _ = tiny_model.batcher([item], "latent", tiny_model.device)
    positions = rope_positions(tiny_model.vlm, inputs)
    n_tokens = inputs["input_ids"].shape[1]
    p_bot = int(positions[:, 0, -1].max())
    # M-RoPE compresses the image: the text position of <bot> is below its column index
    assert p_bot < n_tokens - 1
    assert positions[0, 0, -1] == positions[1, 0, -1] == positions[2, 0, -1]  # text: same on all axes
    # the no-cache reference derives latent positions from get_rope_index over the full
    # sequence: they are p_bot + 1 + j, which is what the cached steps use
    slots = torch.full((1, K), tiny_model.token_ids[CT])
    full = dict(
        inputs,
        input_ids=torch.cat([inputs["input_ids"], slots], 1),
        attention_mask=torch.cat([inputs["attention_mask"], torch.ones_like(slots)], 1),
        mm_token_type_ids=torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(slots)], 1),
    )
    full_positions = rope_positions(tiny_model.vlm, full)
    expected = torch.arange(p_bot + 1, p_bot + 1 + K)
    for axis in range(3):
        assert torch.equal(full_positions[axis, 0, n_tokens:], expected)


@pytest.mark.parametrize("mode", ["latent", "direct", "explicit"])
def test_item_embedding_same_alone_and_in_mixed_batch(tiny_model, media_files, mode):
    items = list(_items(media_files).values())
    batch = tiny_model.encode(items, mode=mode, batch_size=len(items))
    for i, item in enumerate(items):
        alone = tiny_model.encode([item], mode=mode)
        assert torch.allclose(alone[0], batch[i], atol=1e-5), (mode, i)
