"""Transition adapter: turns the last hidden state z_j into the next input embedding.

    u    = LayerNorm(z)
    gate = softmax(W_r [z + a ; step_emb[j]])          a = semantic anchor (<disc_emb>)
    z'   = z + Shared(u) + sum_{e in top-k} gate_e Expert_e(u)   (top-k NOT renormalised)

The post-norm hidden state is not on the scale of input embeddings; the LayerNorm and
the residual are what let a small model keep learning through the loop (docs/method.md
§Transition adapter).
Variants: moe (the paper), moe_no_anchor (router ignores a), mlp (one expert, no
router), none (raw feedback x = z, pure Coconut).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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
    ):
        super().__init__()
        self.kind, self.num_experts, self.top_k = kind, num_experts, top_k
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
        z32 = z.float()
        u = self.norm(z32)
        out = z32 + self.shared(u)
        if self.kind == "mlp":
            return AdapterStep(out.to(z.dtype), None, None)
        steer = z32 + anchor.float() if self.kind == "moe" else z32
        step_vec = self.step_emb.weight[step].expand_as(steer)
        gate = torch.softmax(self.router(torch.cat([steer, step_vec], dim=-1)), dim=-1)
        top_p, top_i = gate.topk(self.top_k, dim=-1)
        # Dense expert evaluation: E is 4 and B small, so this is simpler and as fast
        # as a gather/scatter dispatch; weights outside the top-k are zero.
        weights = torch.zeros_like(gate).scatter(-1, top_i, top_p)
        expert_out = torch.stack([e(u) for e in self.experts], dim=1)  # [B, E, D]
        out = out + (weights.unsqueeze(-1) * expert_out).sum(1)
        return AdapterStep(out.to(z.dtype), gate, top_i)


def balance_loss(gates: list[torch.Tensor]) -> torch.Tensor | None:
    """Batch-level load balance, averaged over latent steps: mean_e (mean_b gate - 1/E)^2.

    With the batched rollout the batch mean is over all samples of the step (per process)."""
    if not gates:
        return None
    terms = [((g.mean(0) - 1.0 / g.shape[-1]) ** 2).mean() for g in gates]
    return torch.stack(terms).mean()
