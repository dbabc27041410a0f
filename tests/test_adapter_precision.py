"""adapter_precision="authors": the transition adapter computes as the authors' bf16
autocast evaluation does (spec ../shared/RELEASED_CHECKPOINTS.md §2.5, D6; §7 P0.2).

The expected values come from `authors_bf16`, a restatement of §2.5's bullets on the
authors' tensor names (§1.3), not from plume_lite's code: the outputs and chosen experts
equal it for steps 0, 7 and 31, and differ from the float32 default by more than float32
rounding and less than 1e-2 relative. The setting is a PlumeConfig field: validated in one
line, absent from old config files (which load the float32 default).
"""

import json

import pytest
import torch
import torch.nn.functional as F
from authors_checkpoints import random_authors_adapter

from plume_lite import ConfigError
from plume_lite.adapter import TransitionAdapter
from plume_lite.config import PlumeConfig
from plume_lite.released import COMPAT_SETTINGS, rename_adapter_state

BF16 = torch.bfloat16
D = 128


def authors_bf16(state: dict, z, step: int, context=None, top_k: int = 2):
    """LatentMoETransition (spec §1.3) under bf16 autocast (spec §2.5), as explicit casts:
    weights and activations bf16; LayerNorm in fp32 on the upcast input and weights, then
    bf16; router Linear bf16, softmax fp32; the top-k probabilities cast to bf16 before
    mixing; the sums in bf16, out = z + (shared(u) + (p_1 e_1 + p_2 e_2)) (the grouping of
    the cited lines 118-140). Returns (out bf16, probabilities fp32, indices)."""
    s = {k: v.to(BF16) for k, v in state.items()}
    z = z.to(BF16)
    ctx = torch.zeros_like(z) if context is None else context.to(BF16)
    step_row = s["step_embed.weight"][min(max(step, 0), s["step_embed.weight"].shape[0] - 1)]
    logits = F.linear(torch.cat([z + ctx, step_row.expand_as(z)], -1), s["router.weight"], s["router.bias"])
    assert logits.dtype == BF16
    p = torch.softmax(logits.float(), dim=-1)
    prob, idx = torch.topk(p, top_k, dim=-1)
    u = F.layer_norm(z.float(), (z.shape[-1],), s["ln.weight"].float(), s["ln.bias"].float(), eps=1e-5)
    u = u.to(BF16)

    def mlp(name, x):  # bf16 Linear -> exact GELU -> bf16 Linear
        h = F.gelu(F.linear(x, s[f"{name}.fc1.weight"], s[f"{name}.fc1.bias"]))
        return F.linear(h, s[f"{name}.fc2.weight"], s[f"{name}.fc2.bias"])

    everyone = {e: mlp(f"experts.{e}", u) for e in range(s["router.weight"].shape[0])}
    mix = torch.zeros_like(u)
    for slot in range(top_k):
        chosen = torch.stack([everyone[int(e)][b] for b, e in enumerate(idx[:, slot])])
        mix = mix + prob[:, slot : slot + 1].to(BF16) * chosen
    return z + (mlp("shared_expert", u) + mix), p, idx


@pytest.fixture(scope="module")
def state():
    return random_authors_adapter(D, seed=5)


def _adapter(state, kind, precision):
    adapter = TransitionAdapter(D, kind, 4, 2, dropout=0.0, step_table_size=32, precision=precision)
    expected = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    adapter.load_state_dict(rename_adapter_state(state, expected, "test"), strict=True)
    return adapter.eval()


def _inputs(step):
    g = torch.Generator().manual_seed(100 + step)
    return (3.0 * torch.randn(32, D, generator=g)).to(BF16), (3.0 * torch.randn(32, D, generator=g)).to(BF16)


@pytest.mark.parametrize("kind", ["moe", "moe_no_anchor"])  # contexts disc and none
@pytest.mark.parametrize("step", [0, 7, 31])
@torch.no_grad()
def test_authors_precision_equals_the_bf16_emulation(state, kind, step):
    z, anchor = _inputs(step)
    want, p, idx = authors_bf16(state, z, step, anchor if kind == "moe" else None)
    got = _adapter(state, kind, "authors")(z, step, anchor)
    assert got.x.dtype == BF16
    assert torch.equal(got.x, want), (got.x.float() - want.float()).abs().max()
    assert torch.equal(got.chosen, idx) and torch.equal(got.gate, p)
    assert len({tuple(c) for c in idx.tolist()}) > 1  # the router really chooses


@pytest.mark.parametrize("step", [0, 7, 31])
@torch.no_grad()
def test_authors_precision_differs_from_float32_by_bf16_rounding_only(state, step):
    z, anchor = _inputs(step)
    authors = _adapter(state, "moe", "authors")(z, step, anchor)
    exact = _adapter(state, "moe", "float32")(z.float(), step, anchor.float())
    rel = (authors.x.float() - exact.x).norm() / exact.x.norm()
    assert 1e-5 < rel < 1e-2, rel  # far above float32 noise (~1e-7), below 1e-2
    agree = (authors.chosen.sort(1).values == exact.chosen.sort(1).values).all(1).float().mean()
    assert agree >= 0.9  # the same experts, but for near ties


@torch.no_grad()
def test_a_float32_input_gets_the_bf16_values_back_in_float32(state):
    z, anchor = _inputs(7)
    adapter = _adapter(state, "moe", "authors")
    got = adapter(z.float(), 7, anchor.float())
    assert got.x.dtype == torch.float32
    assert torch.equal(got.x, adapter(z, 7, anchor).x.float())


def test_the_setting_is_validated_and_old_configs_load_the_default(tmp_path):
    one_line = r"^adapter_precision must be one of \('float32', 'authors'\), got 'bf16'$"
    with pytest.raises(ConfigError, match=one_line):
        PlumeConfig(adapter_precision="bf16")
    with pytest.raises(ConfigError, match="adapter_precision must be str"):
        PlumeConfig(adapter_precision=16)
    old = PlumeConfig().to_dict()
    del old["adapter_precision"]  # a plume_config.json written before the setting existed
    path = tmp_path / "plume_config.json"
    path.write_text(json.dumps(old))
    assert PlumeConfig.load(path).adapter_precision == "float32"
    PlumeConfig(adapter_precision="authors").save(path)
    assert PlumeConfig.load(path).adapter_precision == "authors"
    with pytest.raises(ValueError, match="precision must be one of"):
        TransitionAdapter(D, precision="fp16")


def test_the_released_loader_keeps_float32_adapter_numerics():
    # spec D6: "default stays fp32"; the compat settings (§1.4) do not list it
    assert "adapter_precision" not in COMPAT_SETTINGS


def test_a_plume_model_runs_the_adapter_precision_of_its_config(tiny_model, tmp_path):
    from plume_lite import PlumeModel

    assert tiny_model.adapter.precision == "float32"
    authors = PlumeModel.from_backbone("tiny", adapter_precision="authors")
    assert authors.adapter.precision == "authors"
    authors.save_pretrained(tmp_path / "m")
    assert PlumeModel.from_pretrained(tmp_path / "m").adapter.precision == "authors"
