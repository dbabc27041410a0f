"""TransitionAdapter(fused=True): the batched-matmul experts equal the per-expert loop."""

import copy

import pytest
import torch

from plume_lite.adapter import TransitionAdapter

DIM, B = 32, 5


def _pair(kind: str, dropout: float):
    torch.manual_seed(0)
    loop = TransitionAdapter(DIM, kind, num_experts=4, top_k=2, dropout=dropout)
    for p in loop.parameters():  # biases start at zero; make every term count
        torch.nn.init.normal_(p, std=0.2)
    fused = copy.deepcopy(loop)
    fused.fused = True
    return loop, fused


def _close(actual, expected, tol=1e-6):
    """Equal to `tol` relative to the tensor's largest entry (fp32 sums in another order)."""
    err, scale = (actual - expected).abs().max().item(), max(1.0, expected.abs().max().item())
    assert err <= tol * scale, f"max abs difference {err:.3g} > {tol} * {scale:.3g}"


def _run(adapter, z, anchor):
    out = adapter(z, 3, anchor)
    (out.x * torch.linspace(-1, 1, DIM)).sum().backward()
    return out


@pytest.mark.parametrize("kind", ["moe", "moe_no_anchor"])
@pytest.mark.parametrize("train", [False, True])
def test_fused_equals_per_expert_outputs_and_gradients(kind, train):
    loop, fused = _pair(kind, dropout=0.1 if not train else 0.0)
    loop.train(train), fused.train(train)
    z = torch.randn(B, DIM)
    anchor = torch.randn(B, DIM)
    za, zb = z.clone().requires_grad_(), z.clone().requires_grad_()
    a, b = _run(loop, za, anchor), _run(fused, zb, anchor)
    _close(b.x, a.x)
    assert torch.equal(a.chosen, b.chosen) and torch.equal(a.gate, b.gate)
    _close(zb.grad, za.grad)
    named = dict(fused.named_parameters())
    checked = 0
    for name, p in loop.named_parameters():
        if p.grad is None:  # step_emb rows other than step 3 still get a (zero) grad
            continue
        _close(named[name].grad, p.grad)
        checked += "experts." in name and p.grad.abs().sum() > 0
    assert checked >= 8  # the chosen experts' weights really received gradients


def test_fused_reads_the_weights_at_call_time_and_keeps_the_state_dict():
    loop, fused = _pair("moe", dropout=0.0)
    assert list(fused.state_dict()) == list(loop.state_dict())  # checkpoints load either way
    loop.eval(), fused.eval()
    z, anchor = torch.randn(B, DIM), torch.randn(B, DIM)
    with torch.no_grad():
        for adapter in (loop, fused):  # knock expert 1 out in place, as a notebook does
            adapter.experts[1][3].weight.zero_()
            adapter.experts[1][3].bias.zero_()
        _close(fused(z, 0, anchor).x, loop(z, 0, anchor).x)
        before = fused(z, 0, anchor).x
        fused.experts[0][3].weight.mul_(2.0)
        assert not torch.allclose(fused(z, 0, anchor).x, before)


def test_fused_dropout_is_random_in_training_and_identity_in_eval():
    _, fused = _pair("moe", dropout=0.5)
    z, anchor = torch.randn(B, DIM), torch.randn(B, DIM)
    fused.train()
    with torch.no_grad():
        first, second = fused(z, 0, anchor).x, fused(z, 0, anchor).x
        assert not torch.allclose(first, second)  # masks drawn per call
        fused.eval()
        torch.testing.assert_close(fused(z, 0, anchor).x, fused(z, 0, anchor).x, rtol=0, atol=0)
