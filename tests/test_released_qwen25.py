"""The authors' released layout on a Qwen2.5-VL backbone (spec ../shared/RELEASED_CHECKPOINTS.md
§1.1: their code switches to Qwen2.5-VL for a "qwen2.5" path; D1 accepts `qwen2_5_vl`).

A tiny Qwen2.5-VL (window-attention vision tower, tests/authors_checkpoints.py
make_qwen25_backbone) in the PLUME layout is detected, loads strictly (every adapter tensor
bitwise after the rename, the backbone as saved), keeps the checkpoint's token ids, and a
batched mixed text + image + video latent encode equals the batch-1 reference
`authors_latent_embed` per item, video frame spacing (second_per_grid_ts) included.
"""

import pytest
import torch
from authors_checkpoints import (
    MARKER,
    PLUME_ALL_TOKENS,
    authors_latent_embed,
    build_authors_checkpoint,
    read_authors_adapter,
    read_backbone_tensors,
    scene_image,
)
from safetensors import safe_open
from safetensors.torch import save_file
from test_released_load import package_key

from plume_lite import CheckpointError, PlumeModel
from plume_lite.released import is_authors_layout
from plume_lite.rollout import rope_positions

TOL = 1e-5


# sizes fixed by qwen_vl_utils' first resize (multiples of 28); 8 frames: all are sampled
ITEMS = {
    "text": {"text": "two blue squares  ", "instruction": "  Find the picture."},
    "image": {"image": scene_image(56, 84), "text": "What is left of the blue square?"},
    "video": {"video": [scene_image(56, 56, i) for i in range(8)], "instruction": "Which object moved?"},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_authors_checkpoint(tmp_path_factory.mktemp("q25") / "ckpt", "plume", backbone="qwen2_5_vl")


@pytest.fixture(scope="module")
def model(folder):
    return PlumeModel.from_pretrained(folder, post_suffix_decode=0).eval()


def test_the_qwen25_layout_is_detected_and_loads_as_qwen25(folder, model):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    assert is_authors_layout(folder)
    assert isinstance(model.backbone, Qwen2_5_VLForConditionalGeneration)
    assert isinstance(model.processor, Qwen2_5_VLProcessor)
    vision = model.backbone.config.vision_config
    assert (vision.window_size, list(vision.fullatt_block_indexes), vision.out_hidden_size) == (32, [1], 128)


def test_every_adapter_tensor_and_the_backbone_are_the_checkpoints(folder, model):
    stored = read_authors_adapter(folder)
    assert len(stored) == 25 and all(t.dtype == torch.bfloat16 for t in stored.values())
    state = model.adapter.state_dict()
    assert sorted(state) == sorted(package_key(k) for k in stored)
    for name, tensor in stored.items():
        assert torch.equal(state[package_key(name)], tensor.to(torch.float32)), name
    saved = read_backbone_tensors(folder)
    current = model.backbone.state_dict()
    assert any(k.startswith("visual.blocks.1.mlp.gate_proj") for k in saved)  # Qwen2.5's gated vision MLP
    for name, tensor in saved.items():  # legacy names, as transformers 5 names them in memory
        key = "model." + name if name.startswith("visual.") else "model.language_model." + name[6:]
        assert torch.equal(current[key], tensor), name


def test_a_missing_adapter_tensor_is_named(folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    path = copy / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != MARKER + "experts.2.fc2.bias"}
    save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"latent_moe_transition\.experts\.2\.fc2\.bias is missing"):
        PlumeModel.from_pretrained(copy)


def test_token_ids_are_the_checkpoints(folder, model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    assert model.token_ids == {t: tok.convert_tokens_to_ids(t) for t in PLUME_ALL_TOKENS}
    assert len(model.processor.tokenizer) == len(tok)  # nothing added
    rows = read_backbone_tensors(folder)["model.embed_tokens.weight"]
    assert rows.shape[0] == len(tok)
    assert torch.equal(model.backbone.get_input_embeddings().weight, rows)


@torch.no_grad()
def test_video_positions_follow_the_frame_spacing(model):
    # 8 frames of 56x56, which the tiny processor (patch 8, factor 16) rounds to 64x64:
    # grid (4, 8, 8), 4x4 after the merge. Qwen2.5-VL's temporal position of patch t is
    # int(t * tokens_per_second * second_per_grid_ts) = int(t * 2 * 2/24) = 0 for t < 4
    # (the processor's default 24 fps for a frame list); without the spacing it is 2t.
    inputs, _ = model.batcher([ITEMS["video"]], "latent", "cpu")
    assert inputs["video_grid_thw"].tolist() == [[4, 8, 8]]
    assert torch.allclose(inputs["second_per_grid_ts"], torch.tensor([2 / 24]))
    pos = rope_positions(model.vlm, inputs)[:, 0]
    video = inputs["input_ids"][0] == model.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    start = int(pos[0, video.nonzero()[0]])
    assert pos[0, video].unique().tolist() == [start]  # one temporal position for all 64 tokens
    unspaced = dict(inputs, second_per_grid_ts=None)
    t = rope_positions(model.vlm, unspaced)[0, 0, video].view(4, 16)[:, 0]
    assert (t - start).tolist() == [0, 2, 4, 6]


@torch.no_grad()
def test_batched_mixed_encode_equals_the_authors_batch1_reference(model, folder):
    state = read_authors_adapter(folder)
    items = list(ITEMS.values())
    emb = model.encode(items, batch_size=len(items))
    for i, item in enumerate(items):
        ref = authors_latent_embed(model.backbone, model.processor, state, item, K=8)
        assert (emb[i] - ref).abs().max() <= TOL, list(ITEMS)[i]
    static = model.encode(items, batch_size=len(items), engine="static")
    assert (static - emb).abs().max() <= TOL  # the static-cache engine too
