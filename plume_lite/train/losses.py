"""Training objectives (docs/method.md §Training objective): symmetric InfoNCE with
in-batch negatives, and the
per-mode total built from the model's training outputs.

Distributed: each rank scores its own queries against every rank's candidates (and its
own candidates against every rank's queries) through an all-gather that carries
gradients. Each rank's loss is the mean over its local rows, so the mean over ranks
equals the single-process loss on the global batch; the all-gather's backward sums
the gradient that every rank sends to a row, and DDP then averages over ranks, which
gives exactly the gradient of that global loss."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from plume_lite.items import item_digest
from plume_lite.train.config import BALANCE_WEIGHT, LOGIT_SCALE


def _world():
    d = torch.distributed
    if d.is_available() and d.is_initialized() and d.get_world_size() > 1:
        return d.get_rank(), d.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor, gather: bool = True) -> tuple[torch.Tensor, int]:
    """(all ranks' rows concatenated in rank order, offset of this rank's rows)."""
    rank, world = _world()
    if world == 1 or not gather:
        return x, 0
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    torch.distributed.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        # all_gather needs equal shapes; the task-homogeneous sampler gives every rank B rows
        raise RuntimeError(
            f"InfoNCE all-gather needs the same batch size on every rank, got {[int(s) for s in sizes]}"
        )
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # torch 2.14 marks it deprecated in favour of a private API; it is still the
        # public autograd-aware all-gather, so keep it and keep the logs readable
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(x.contiguous())
    return torch.cat(parts), rank * x.shape[0]


def _gather_ids(ids: torch.Tensor, gather: bool = True) -> torch.Tensor:
    rank, world = _world()
    if world == 1 or not gather:
        return ids
    out = [torch.empty_like(ids) for _ in range(world)]
    torch.distributed.all_gather(out, ids.contiguous())
    return torch.cat(out)


def item_ids(items: list[dict], device=None) -> torch.Tensor:
    """A stable 63-bit id per item (same content → same id, in every process), used to
    keep duplicates in a batch (e.g. two queries whose positive is the same class
    label) from being scored as each other's negatives. Identity is items.item_digest."""
    ids = [int(item_digest(it, stamp_files=False)[:16], 16) >> 1 for it in items]
    return torch.tensor(ids, dtype=torch.long, device=device)


def _same_pair(q_ids_all, c_ids_all, offset: int, rows: int, device) -> torch.Tensor | None:
    """[rows, N] True where global pair j is interchangeable with local pair i (j != i):
    same query content or same candidate content. Such a column is no negative in
    either direction: when two queries share a positive (a class label), each query's
    candidate is correct for the other, and each candidate's query too."""
    if q_ids_all is None and c_ids_all is None:
        return None
    labels = torch.arange(rows, device=device) + offset
    same = None
    for ids in (q_ids_all, c_ids_all):
        if ids is not None:
            eq = ids[None, :] == ids[labels][:, None]
            same = eq if same is None else same | eq
    same[torch.arange(rows, device=device), labels] = False
    return same


def _directional(a, b_all, offset, same=None, scale=LOGIT_SCALE):
    """Mean CE of rows of `a` against all rows of `b_all`; the positive of row i is
    b_all[offset + i]; columns marked in `same` are masked out."""
    logits = scale * a @ b_all.t()
    labels = torch.arange(a.shape[0], device=a.device) + offset
    if same is not None:
        logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, labels)


def info_nce(
    q: torch.Tensor,
    c: torch.Tensor,
    scale: float = LOGIT_SCALE,
    q_ids: torch.Tensor | None = None,
    c_ids: torch.Tensor | None = None,
    gather: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE on L2-normalised embeddings: (q→c + c→q) / 2.

    q, c: [B, D] local rows (row i of q matches row i of c). Optional q_ids / c_ids
    [B] mark identical contents: a pair that shares its query or its candidate with
    pair i is no negative of pair i, in both directions. Under
    torch.distributed, rows of all ranks are the negatives unless gather=False."""
    q = F.normalize(q.float(), dim=-1)
    c = F.normalize(c.float(), dim=-1)
    q_all, offset = gather_with_grad(q, gather)
    c_all, _ = gather_with_grad(c, gather)
    c_ids_all = _gather_ids(c_ids, gather) if c_ids is not None else None
    q_ids_all = _gather_ids(q_ids, gather) if q_ids is not None else None
    same = _same_pair(q_ids_all, c_ids_all, offset, q.shape[0], q.device)
    return 0.5 * (
        _directional(q, c_all, offset, same, scale=scale) + _directional(c, q_all, offset, same, scale=scale)
    )


def plume_loss(
    mode: str,
    out_q,
    out_c,
    *,
    scale: float = LOGIT_SCALE,
    balance_weight: float = BALANCE_WEIGHT,
    contrastive_weight: float = 1.0,
    q_ids=None,
    c_ids=None,
):
    """Total loss and its parts (unweighted) for one batch of (query, positive) outputs.

    latent   = CE(q) + CE(c) + a · (InfoNCE(gen) + InfoNCE(disc)) + w · (balance_q + balance_c)
    explicit = CE(q) + CE(c) + a · (InfoNCE(gen) + InfoNCE(disc))
    direct   = a · InfoNCE(disc)
    a is `contrastive_weight` (1: the paper's sum; 0: the language-model loss alone, a
    control for what the contrastive terms cost the written answers). The balance term is
    the model's batch-level load-balance value, one per rollout (queries and candidates
    roll out separately), so both are added."""
    a = contrastive_weight
    parts = {"nce_disc": info_nce(out_q.disc_emb, out_c.disc_emb, scale, q_ids, c_ids)}
    total = a * parts["nce_disc"]
    if mode in ("latent", "explicit"):
        parts["ce_q"] = out_q.ce_loss
        parts["ce_c"] = out_c.ce_loss
        parts["nce_gen"] = info_nce(out_q.gen_emb, out_c.gen_emb, scale, q_ids, c_ids)
        total = total + parts["ce_q"] + parts["ce_c"] + a * parts["nce_gen"]
    elif mode != "direct":
        raise ValueError(f"mode must be latent, explicit or direct, got {mode!r}")
    if mode == "latent":
        parts["balance"] = _as_tensor(out_q.balance_loss, total) + _as_tensor(out_c.balance_loss, total)
        total = total + balance_weight * parts["balance"]
    parts["total"] = total
    return total, parts


def _as_tensor(value, like: torch.Tensor) -> torch.Tensor:
    if value is None:
        return like.new_zeros(())
    return value if torch.is_tensor(value) else like.new_tensor(float(value))
