"""PlumeModel: the three modes, adapter variants, save/load round trips, clear errors."""

import filecmp

import pytest
import torch

from plume_lite import CheckpointError, ConfigError, InputError, PlumeModel, build_tiny_backbone

TEXTS = [
    {"text": "two blue squares"},
    {"text": "a yellow star above a green ring", "instruction": "Find it."},
]


def test_tiny_backbone_is_deterministic(tmp_path):
    a = build_tiny_backbone(tmp_path / "a", seed=3, hidden_size=32, intermediate_size=64)
    b = build_tiny_backbone(tmp_path / "b", seed=3, hidden_size=32, intermediate_size=64)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert filecmp.cmp(a / name, b / name, shallow=False), name


def test_tiny_tokenizer_encodes_any_text(tiny_model):
    tok = tiny_model.processor.tokenizer
    text = "Zürich ☃ 42 <not a token>"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    for token in ("<disc_emb>", "<bot>", "<ct>", "<eot>", "<gen_emb>", "<|image_pad|>", "<|video_pad|>"):
        assert len(tok(token, add_special_tokens=False)["input_ids"]) == 1, token


def test_plume_token_rows_copied_not_random(tiny_model):
    from plume_lite.tokens import INIT_FROM

    fresh = PlumeModel.from_backbone("tiny")
    emb = fresh.backbone.get_input_embeddings().weight
    tok = fresh.processor.tokenizer
    for token, source in INIT_FROM.items():
        assert torch.equal(emb[tok.convert_tokens_to_ids(token)], emb[tok.convert_tokens_to_ids(source)])


@pytest.mark.parametrize("mode", ["latent", "explicit", "direct"])
def test_modes_return_normalised_float32(tiny_model, mode):
    emb, traces = tiny_model.encode(TEXTS, mode=mode, return_trace=True)
    assert emb.dtype == torch.float32 and emb.shape == (2, tiny_model.backbone.config.text_config.hidden_size)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert len(traces) == 2 and traces[0]["mode"] == mode
    if mode == "explicit":
        assert (
            isinstance(traces[0]["text"], str)
            and traces[0]["generated_tokens"] <= tiny_model.config.max_new_tokens
        )


@pytest.mark.parametrize("adapter", ["moe", "moe_no_anchor", "mlp", "none"])
def test_adapter_variants_run_and_trace(adapter):
    torch.manual_seed(0)
    model = PlumeModel.from_backbone("tiny", adapter=adapter, latent_steps=4).eval()
    emb, traces = model.encode(TEXTS, mode="latent", return_trace=True)
    assert torch.isfinite(emb).all()
    assert len(traces[0]["latents"]) == 4
    if adapter.startswith("moe"):
        gates, chosen = traces[0]["gates"], traces[0]["chosen"]
        assert gates.shape == (4, 4) and chosen.shape == (4, 2)
        assert torch.allclose(gates.sum(-1), torch.ones(4), atol=1e-5)
    else:
        assert "gates" not in traces[0]


def test_anchor_steers_router_only_with_anchor():
    torch.manual_seed(0)
    model = PlumeModel.from_backbone("tiny", adapter="moe").eval()
    z, a = torch.randn(3, 128), torch.randn(3, 128)
    with_anchor = model.adapter(z, 0, a).gate
    assert not torch.allclose(with_anchor, model.adapter(z, 0, torch.zeros_like(a)).gate)
    model.adapter.kind = "moe_no_anchor"
    assert torch.allclose(model.adapter(z, 0, a).gate, model.adapter(z, 0, torch.zeros_like(a)).gate)


def test_forward_train_gives_losses_and_gradients(tiny_model):
    model = PlumeModel.from_backbone("tiny", latent_steps=3)
    out = model.forward_train(
        TEXTS, ["It is blue.</think>squares\n", "</think>\n"], n_latent=3, mode="latent"
    )
    loss = out.ce_loss + out.gen_emb.sum() * 0 + out.balance_loss + out.disc_emb.pow(2).mean()
    loss.backward()
    assert out.gates.shape == (2, 3, 4)
    assert model.adapter.router.weight.grad is not None and model.adapter.router.weight.grad.abs().sum() > 0
    explicit = model.forward_train(TEXTS, ["It is blue.</think>squares\n"] * 2, n_latent=0, mode="explicit")
    assert explicit.ce_loss.item() > 0 and explicit.gen_emb.shape == out.gen_emb.shape


def test_save_load_full_roundtrip(tiny_model, media_files, tmp_path):
    items = TEXTS + [{"image": media_files["image"]}, {"pdf": media_files["pdf"], "page": 0}]
    tiny_model.save_pretrained(tmp_path / "ckpt")
    loaded = PlumeModel.from_pretrained(tmp_path / "ckpt").eval()
    for mode in ("latent", "direct"):
        assert torch.equal(tiny_model.encode(items, mode=mode), loaded.encode(items, mode=mode))
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in (tmp_path / "ckpt").rglob("*"))


def test_save_load_lora_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = PlumeModel.from_backbone("tiny")
    model.enable_lora(r=4, alpha=8)
    for name, p in model.backbone.named_parameters():  # make LoRA matter: B starts at zero
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    model.eval()
    model.save_pretrained(tmp_path / "lora_ckpt")
    assert (tmp_path / "lora_ckpt" / "lora").is_dir() and not (tmp_path / "lora_ckpt" / "backbone").exists()
    loaded = PlumeModel.from_pretrained(tmp_path / "lora_ckpt").eval()
    assert torch.allclose(model.encode(TEXTS), loaded.encode(TEXTS), atol=1e-6)


def test_clear_errors(tiny_model, tmp_path):
    with pytest.raises(InputError, match="unknown key"):
        tiny_model.encode([{"txt": "typo"}])
    with pytest.raises(InputError, match="not found"):
        tiny_model.encode([{"image": str(tmp_path / "missing.png")}])
    with pytest.raises(InputError, match="unsupported mode"):
        tiny_model.encode(TEXTS, mode="fast")
    with pytest.raises(CheckpointError, match="not found"):
        PlumeModel.from_pretrained(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(CheckpointError, match="missing"):
        PlumeModel.from_pretrained(tmp_path / "half")
    with pytest.raises(ConfigError, match="latent_steps"):
        PlumeModel.from_backbone("tiny", latent_step=4)
