"""Transition adapter: turns the last hidden state z_j into the next input embedding.

    u    = LayerNorm(z)
    gate = softmax(W_r [z + a ; step_emb[j]])          a = semantic anchor (<disc_emb>)
    z'   = z + Shared(u) + sum_{e in top-k} gate_e Expert_e(u)   (top-k NOT renormalised)

The post-norm hidden state is not on the scale of input embeddings; the LayerNorm and
the residual are what let a small model keep learning through the loop (docs/method.md
§Transition adapter).
Variants: moe (the paper), moe_no_anchor (router ignores a), mlp (one expert, no
router), none (raw feedback x = z, pure Coconut).

`fused=True` evaluates the shared and routed experts of a MoE adapter as one matmul
per layer over their weights concatenated at call time, instead of two small matmuls
per expert: the same maths (equal to ~1e-6 in fp32), fewer kernel launches, but a copy
of the expert weights (and of their gradients) per call: on CPU it is faster at the
tiny width and slower at 1536 (README numbers). Dropout
draws other random masks than the per-expert loop (independent per expert either
way), so a training run with dropout > 0 follows another random path; off by default.

`precision="authors"` (PlumeConfig.adapter_precision) computes as the authors' bf16
evaluation does under torch.autocast (spec §2.5, D6), written as explicit casts: z,
the anchor and every weight in bf16; the LayerNorm in float32, its output cast to bf16;
the router Linear in bf16, its softmax in float32 (the returned gate); the top-k
probabilities cast to bf16 before they scale the bf16 experts; all sums in bf16,
grouped as theirs: z + (shared(u) + (p_1 e_1(u) + p_2 e_2(u) + ...)), slots in top-k
order. The output holds bf16 values, returned in z's dtype. The default "float32"
computes everything in float32 (safer: no top-k flips on near ties); the two differ by
about 2e-3 relative (tests/test_adapter_precision.py). `fused` is ignored under "authors".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PRECISIONS = ("float32", "authors")  # PlumeConfig.ADAPTER_PRECISIONS


def expert(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))


@dataclass
class AdapterStep:
    x: torch.Tensor  # [B, D] next input embedding
    gate: torch.Tensor | None  # [B, E] router probabilities
    chosen: torch.Tensor | None  # [B, k] indices of the experts used


class TransitionAdapter(nn.Module):
    def __init__(
        self,
        dim: int,
        kind: str = "moe",
        num_experts: int = 4,
        top_k: int = 2,
        dropout: float = 0.1,
        step_table_size: int = 32,
        fused: bool = False,
        precision: str = "float32",
    ):
        super().__init__()
        self.kind, self.num_experts, self.top_k = kind, num_experts, top_k
        self.fused = fused  # a plain attribute: no parameter or buffer, checkpoints unchanged
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision  # a plain attribute too
        if kind == "none":
            return
        self.norm = nn.LayerNorm(dim)
        self.shared = expert(dim, dropout)
        if kind in ("moe", "moe_no_anchor"):
            self.experts = nn.ModuleList(expert(dim, dropout) for _ in range(num_experts))
            self.step_emb = nn.Embedding(step_table_size, dim)
            self.router = nn.Linear(2 * dim, num_experts)
            nn.init.normal_(self.step_emb.weight, std=0.02)

    def forward(self, z: torch.Tensor, step: int, anchor: torch.Tensor | None = None) -> AdapterStep:
        if self.kind == "none":
            return AdapterStep(z, None, None)
        if self.precision == "authors":
            return self._authors_forward(z, step, anchor)
        z32 = z.float()
        u = self.norm(z32)
        if self.kind == "mlp":
            return AdapterStep((z32 + self.shared(u)).to(z.dtype), None, None)
        steer = z32 + anchor.float() if self.kind == "moe" else z32
        step_vec = self.step_emb.weight[step].expand_as(steer)
        gate = torch.softmax(self.router(torch.cat([steer, step_vec], dim=-1)), dim=-1)
        top_p, top_i = gate.topk(self.top_k, dim=-1)
        # Dense expert evaluation: E is 4 and B small, so this is simpler and as fast
        # as a gather/scatter dispatch; weights outside the top-k are zero. The shared
        # expert joins the fused matmuls with weight 1.
        weights = torch.zeros_like(gate).scatter(-1, top_i, top_p)
        if self.fused:
            out = z32 + fused_experts([self.shared, *self.experts], u, F.pad(weights, (1, 0), value=1.0))
        else:
            out = z32 + self.shared(u)
            expert_out = torch.stack([e(u) for e in self.experts], dim=1)  # [B, E, D]
            out = out + (weights.unsqueeze(-1) * expert_out).sum(1)
        return AdapterStep(out.to(z.dtype), gate, top_i)

    def _authors_forward(self, z: torch.Tensor, step: int, anchor: torch.Tensor | None) -> AdapterStep:
        """forward() with the authors' bf16 autocast casts (module docstring)."""
        bf16 = torch.bfloat16
        zb = z.to(bf16)
        w = self.norm.weight.to(bf16).float()  # their LayerNorm holds bf16 weights, run in fp32
        b = self.norm.bias.to(bf16).float()
        u = F.layer_norm(zb.float(), w.shape, w, b, self.norm.eps).to(bf16)
        if self.kind == "mlp":
            return AdapterStep((zb + bf16_expert(self.shared, u)).to(z.dtype), None, None)
        steer = zb + anchor.to(bf16) if self.kind == "moe" else zb
        step_vec = self.step_emb.weight[step].to(bf16).expand_as(steer)
        router = torch.cat([steer, step_vec], dim=-1)
        logits = F.linear(router, self.router.weight.to(bf16), self.router.bias.to(bf16))
        gate = torch.softmax(logits.float(), dim=-1)
        top_p, top_i = gate.topk(self.top_k, dim=-1)
        expert_out = torch.stack([bf16_expert(e, u) for e in self.experts], dim=1)  # [B, E, D] bf16
        rows = torch.arange(z.shape[0], device=z.device)
        mix = torch.zeros_like(u)
        for slot in range(self.top_k):
            mix = mix + top_p[:, slot : slot + 1].to(bf16) * expert_out[rows, top_i[:, slot]]
        out = zb + (bf16_expert(self.shared, u) + mix)
        return AdapterStep(out.to(z.dtype), gate, top_i)


def bf16_expert(block: nn.Sequential, u: torch.Tensor) -> torch.Tensor:
    """An `expert()` block on bf16 `u` with its weights cast to bf16 (GELU and dropout in bf16)."""
    fc1, act, drop, fc2 = block
    h = F.linear(u, fc1.weight.to(u.dtype), fc1.bias.to(u.dtype))
    h = F.dropout(F.gelu(h, approximate=act.approximate), drop.p, training=drop.training)
    return F.linear(h, fc2.weight.to(u.dtype), fc2.bias.to(u.dtype))


def fused_experts(experts, u: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_e weights[:, e] * experts[e](u) for `expert()` blocks, as two matmuls.

    u [B, D], weights [B, E] -> [B, D]. Every expert reads the same u, so the first
    layers are one Linear over their weights concatenated [E*2D, D]; the mixing weights
    scale each expert's hidden block before the second layers, which are then one
    Linear over [D, E*2D]. The weights are concatenated from the Linear modules on
    every call (never cached), so an in-place edit of one expert's weights counts at
    once, and gradients flow back to those modules' parameters."""
    _, act, drop, _ = experts[0]
    w1 = torch.cat([e[0].weight for e in experts])  # [E*2D, D]
    b1 = torch.cat([e[0].bias for e in experts])  # [E*2D]
    w2 = torch.cat([e[3].weight for e in experts], dim=1)  # [D, E*2D]
    b2 = torch.stack([e[3].bias for e in experts])  # [E, D]
    h = F.gelu(F.linear(u, w1, b1), approximate=act.approximate)
    # one mask over [B, E*2D]: each expert's units drop independently, as in the loop
    h = F.dropout(h, drop.p, training=drop.training)
    h = h.view(u.shape[0], len(experts), -1) * weights.unsqueeze(-1).to(h.dtype)
    return F.linear(h.flatten(1), w2) + weights.to(b2.dtype) @ b2


def balance_loss(gates: list[torch.Tensor]) -> torch.Tensor | None:
    """Batch-level load balance, averaged over latent steps: mean_e (mean_b gate - 1/E)^2.

    With the batched rollout the batch mean is over all samples of the step (per process)."""
    if not gates:
        return None
    terms = [((g.mean(0) - 1.0 / g.shape[-1]) ** 2).mean() for g in gates]
    return torch.stack(terms).mean()
