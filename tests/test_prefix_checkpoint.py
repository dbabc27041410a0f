"""checkpoint_prefix: the prefix pass recomputed in the backward gives the same loss and
gradients, keeps the KV cache, and keeps fewer tensors for the backward."""

import pytest
import torch

from plume_lite.errors import ConfigError
from plume_lite.train.config import RESUME_FREE, TrainConfig, resolve_config

K = 3
SUFFIXES = ["It is blue.</think>squares\n", "</think>\n", "A clip.</think>video\n", "Red.</think>red\n"]


@pytest.fixture(scope="module")
def model(tiny_model):
    # the session's tiny model (forward_train takes K as an argument), put back afterwards
    tiny_model.train()  # train: expert dropout on
    yield tiny_model
    tiny_model.zero_grad(set_to_none=True)
    tiny_model.eval()


def _items(media_files):
    return [
        {"text": "two blue squares"},
        {"image": media_files["image"], "instruction": "What is shown?"},
        {"video": media_files["video"]},
        {"text": "a red circle", "image": media_files["image"]},
    ]


def _loss_and_grads(model, items, checkpoint_prefix, mode="latent"):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout masks in both runs
    suffixes = SUFFIXES if mode == "latent" else None
    out = model.forward_train(
        items, suffixes, K if mode == "latent" else 0, mode, checkpoint_prefix=checkpoint_prefix
    )
    loss = out.disc_emb.pow(2).mean()
    if mode == "latent":
        loss = loss + out.ce_loss + out.balance_loss + out.gen_emb.pow(2).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("mode", ["latent", "direct"])
def test_same_loss_and_gradients_with_and_without(model, media_files, mode):
    items = _items(media_files)
    plain_loss, plain = _loss_and_grads(model, items, False, mode)
    ckpt_loss, ckpt = _loss_and_grads(model, items, True, mode)
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=1e-5, atol=1e-5)
    assert plain.keys() == ckpt.keys()
    # the vision tower, the decoder (through the cached KV) and the adapter all train
    for part in ("visual", "language_model.layers.0.self_attn.k_proj", "embed_tokens"):
        assert any(part in n and g.abs().sum() > 0 for n, g in plain.items()), part
    if mode == "latent":
        assert plain["adapter.router.weight"].abs().sum() > 0
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, rtol=1e-5, atol=1e-5, msg=name)


def _saved_activations(model, items, checkpoint_prefix) -> tuple[int, int]:
    """(count, bytes) of the distinct non-parameter tensors the forward keeps for the
    backward (a checkpointed region keeps none of its own: it recomputes them)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model.forward_train(items, SUFFIXES, K, "latent", checkpoint_prefix=checkpoint_prefix)
    (out.ce_loss + out.gen_emb.pow(2).mean()).backward()
    return len(seen), sum(seen.values())


def test_checkpointing_keeps_fewer_tensors_for_the_backward(model, media_files):
    items = _items(media_files)
    plain_n, plain_bytes = _saved_activations(model, items, False)
    ckpt_n, ckpt_bytes = _saved_activations(model, items, True)
    print(
        f"saved activations: {plain_n} tensors {plain_bytes} B plain, "
        f"{ckpt_n} tensors {ckpt_bytes} B checkpointed"
    )
    # the prefix (vision tower + decoder over the prompt) holds most of the activations
    assert ckpt_n < plain_n and ckpt_bytes < 0.5 * plain_bytes, (plain_n, ckpt_n, plain_bytes, ckpt_bytes)


def test_config_field_is_typed_documented_and_resume_free():
    assert TrainConfig().checkpoint_prefix is False
    assert resolve_config("tiny", overrides=["checkpoint_prefix=on"]).checkpoint_prefix is True
    assert "checkpoint_prefix" in RESUME_FREE and "checkpoint_prefix:" in TrainConfig.__doc__
    with pytest.raises(ConfigError, match="checkpoint_prefix must be bool"):
        resolve_config("tiny", overrides=["checkpoint_prefix=sometimes"])
    assert resolve_config("tiny", overrides=["fused_experts=on"]).fused_experts is True
    with pytest.raises(ConfigError, match="fused_experts needs adapter moe"):
        resolve_config("tiny", overrides=["fused_experts=on", "adapter=mlp"])


def test_the_cache_holds_the_same_kv_and_it_carries_gradients(model, media_files):
    from plume_lite.rollout import cache_tensors, run_prefix

    inputs, _ = model.batcher(_items(media_files), "latent", model.device)
    _, plain = run_prefix(model.vlm, inputs)
    _, ckpt = run_prefix(model.vlm, inputs, checkpoint_prefix=True)
    kv_plain, kv_ckpt = cache_tensors(plain.cache), cache_tensors(ckpt.cache)
    assert len(kv_ckpt) == len(kv_plain) == 2 * model.backbone.config.text_config.num_hidden_layers
    for a, b in zip(kv_plain, kv_ckpt):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        assert b.requires_grad
    with torch.no_grad():  # nothing to recompute without a graph: the plain pass
        _, frozen = run_prefix(model.vlm, inputs, checkpoint_prefix=True)
    assert not cache_tensors(frozen.cache)[0].requires_grad
