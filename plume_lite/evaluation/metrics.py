"""Retrieval metrics on score matrices: pessimistic rank, Hit@k, NDCG@k.

All functions take `scores` [Q, C] (numpy or torch; higher = better) and an
optional boolean `mask` [Q, C] saying which candidates each query ranks (a local
task gives every query its own subset; default: all). They return one value per
query as a float64 numpy array, so callers can keep per-query results and average.

Tie rule (pessimistic): ties are broken against the model. A positive sits above
a negative only if its score is strictly greater; among tied candidates the less
relevant ones come first. So a constant scorer gets Hit@1 = 0, never a lucky 1,
and a model cannot gain from collapsing embeddings. NaN scores count as -inf.
"""

from __future__ import annotations

import numpy as np


def _scores(scores) -> np.ndarray:
    if hasattr(scores, "detach"):  # torch tensor, without importing torch here
        scores = scores.detach().cpu().numpy()
    s = np.asarray(scores, dtype=np.float64)  # float32 -> float64 is exact: ties stay ties
    if s.ndim != 2:
        raise ValueError(f"scores must be [queries, candidates], got shape {s.shape}")
    return np.where(np.isnan(s), -np.inf, s)


def _mask(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"mask shape {m.shape} != scores shape {shape}")
    return m


def relevance_matrix(relevance, shape) -> np.ndarray:
    """[Q, C] float relevance from a dense matrix, a bool matrix, or a per-query list
    of {candidate index: grade} dicts / iterables of positive indices (grade 1)."""
    if hasattr(relevance, "detach"):
        relevance = relevance.detach().cpu().numpy()
    if isinstance(relevance, np.ndarray):
        rel = relevance.astype(np.float64)
        if rel.shape != shape:
            raise ValueError(f"relevance shape {rel.shape} != scores shape {shape}")
        return rel
    if len(relevance) != shape[0]:
        raise ValueError(f"{len(relevance)} relevance rows for {shape[0]} queries")
    rel = np.zeros(shape, dtype=np.float64)
    for i, row in enumerate(relevance):
        items = row.items() if isinstance(row, dict) else ((j, 1.0) for j in row)
        for j, grade in items:
            rel[i, int(j)] = float(grade)
    return rel


def positive_rank(scores, positives, mask=None) -> np.ndarray:
    """1-based pessimistic rank of each query's best positive among its candidates:
    1 + number of valid negatives scoring >= the best positive. Queries with no
    valid positive get rank inf."""
    s = _scores(scores)
    m = _mask(mask, s.shape)
    pos = (relevance_matrix(positives, s.shape) > 0) & m
    neg = m & ~pos
    best = np.where(pos, s, -np.inf).max(axis=1, initial=-np.inf)
    beaten_by = (neg & (s >= best[:, None])).sum(axis=1)
    rank = 1.0 + beaten_by
    rank[~pos.any(axis=1)] = np.inf
    return rank


def hit_at_k(scores, positives, k: int, mask=None) -> np.ndarray:
    """Per query 1.0 if a positive is in the top k under the pessimistic tie rule."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return (positive_rank(scores, positives, mask) <= k).astype(np.float64)


def _dcg(rel_sorted: np.ndarray, k: int) -> np.ndarray:
    top = rel_sorted[:, :k]
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    return (top * discount).sum(axis=1)


def ndcg_at_k(scores, relevance, k: int, mask=None) -> np.ndarray:
    """Per-query NDCG@k with linear gain (gain = grade, as sklearn.metrics.ndcg_score)
    and log2(rank + 1) discount; graded relevance. Ties are ordered least relevant
    first (pessimistic). The ideal ranking uses the query's valid candidates only;
    a query with no relevant valid candidate scores 0 (as sklearn)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s = _scores(scores)
    m = _mask(mask, s.shape)
    rel = np.where(m, relevance_matrix(relevance, s.shape), 0.0)
    if (rel < 0).any():
        raise ValueError("relevance grades must be >= 0")
    # lexsort: last key is primary -> valid first, then score desc, then grade asc
    order = np.lexsort((rel, -s, ~m), axis=-1)
    got = _dcg(np.take_along_axis(rel, order, axis=1), k)
    ideal = _dcg(-np.sort(-rel, axis=1), k)
    out = np.zeros(s.shape[0], dtype=np.float64)
    ok = ideal > 0
    out[ok] = got[ok] / ideal[ok]
    return out


def compute(metric: str, scores, relevance, mask=None) -> np.ndarray:
    """Dispatch on an EvalTask.metric name such as 'hit@1' or 'ndcg@10'."""
    name, _, k = metric.lower().partition("@")
    if name not in ("hit", "ndcg") or not k.isdigit():
        raise ValueError(f"unknown metric {metric!r}: expected hit@K or ndcg@K")
    fn = hit_at_k if name == "hit" else ndcg_at_k
    return fn(scores, relevance, int(k), mask)
