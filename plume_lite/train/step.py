"""One training forward as an nn.Module, so accelerate's wrapper (DDP, FSDP,
DeepSpeed) sees a real `forward` call: DDP only prepares its gradient reduction
inside `forward`, and PlumeModel's training entry point is `forward_train`."""

from __future__ import annotations

import torch
from torch import nn

from plume_lite.curriculum import DEFAULT_READ_POSITION
from plume_lite.train.config import BALANCE_WEIGHT, LOGIT_SCALE
from plume_lite.train.losses import item_ids, plume_loss


class TrainStep(nn.Module):
    def __init__(
        self,
        model,
        mode: str,
        logit_scale: float = LOGIT_SCALE,
        balance_weight: float = BALANCE_WEIGHT,
        mask_duplicates: bool = True,
        read_position: str = DEFAULT_READ_POSITION,
        checkpoint_prefix: bool = False,
        contrastive_weight: float = 1.0,
    ):
        super().__init__()
        self.model = model
        self.mode, self.logit_scale, self.balance_weight = mode, logit_scale, balance_weight
        self.mask_duplicates = mask_duplicates
        self.contrastive_weight = contrastive_weight
        # only latent mode has a choice: explicit reads after its text, as at inference
        self.read_position = read_position if mode == "latent" else "after_text"
        self.checkpoint_prefix = checkpoint_prefix  # recompute the prefix pass in the backward

    def forward(self, batch, rows: slice | None = None):
        """(total loss, {part: tensor}, {stat: tensor}) for one `train_data.Batch`; with
        `rows`, the outputs of those pairs only (GradCache: train/grad_cache.py)."""
        where = dict(read_position=self.read_position, checkpoint_prefix=self.checkpoint_prefix)
        if rows is not None:
            return self.chunk_outputs(batch, rows, where)
        out_q = self.model.forward_train(
            batch.queries, batch.query_suffix, batch.n_latent, self.mode, **where
        )
        out_c = self.model.forward_train(
            batch.positives, batch.positive_suffix, batch.n_latent, self.mode, **where
        )
        ids = {}
        if self.mask_duplicates:
            device = out_q.disc_emb.device
            ids = dict(q_ids=item_ids(batch.queries, device), c_ids=item_ids(batch.positives, device))
        total, parts = plume_loss(
            self.mode,
            out_q,
            out_c,
            scale=self.logit_scale,
            balance_weight=self.balance_weight,
            contrastive_weight=self.contrastive_weight,
            **ids,
        )
        return total, parts, router_stats(out_q.gates, out_c.gates, top_k=self.model.config.top_k)

    def chunk_outputs(self, batch, rows: slice, where: dict) -> dict:
        """{"q_disc", "q_gen", "q_ce", "q_gates", "c_...": tensor} of pairs `rows` (keys
        whose output the mode has not are left out)."""
        out = {}
        for side, items, suffix in (
            ("q", batch.queries, batch.query_suffix),
            ("c", batch.positives, batch.positive_suffix),
        ):
            o = self.model.forward_train(
                items[rows], None if suffix is None else suffix[rows], batch.n_latent, self.mode, **where
            )
            values = {"disc": o.disc_emb, "gen": o.gen_emb, "ce": o.ce_loss, "gates": o.gates}
            out.update({f"{side}_{k}": v for k, v in values.items() if v is not None})
        return out


@torch.no_grad()
def router_stats(*gates_list, top_k: int = 2) -> dict:
    """Mean router entropy (nats) and the share of top-k picks per expert, over the
    queries' and candidates' latent steps; empty without a router or latent steps."""
    gates = [g for g in gates_list if g is not None and g.numel()]
    if not gates:
        return {}
    g = torch.cat([x.reshape(-1, x.shape[-1]) for x in gates]).float()  # [N, E]
    entropy = -(g * g.clamp_min(1e-12).log()).sum(-1).mean()
    picks = torch.zeros_like(g).scatter(-1, g.topk(min(top_k, g.shape[-1]), dim=-1).indices, 1.0)
    return {"router_entropy": entropy, "expert_load": picks.sum(0) / picks.sum()}
