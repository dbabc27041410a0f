"""Metric cross-checks: sklearn on tie-free inputs, brute force over tie orders with ties."""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from plume_lite.evaluation import metrics


def _dcg(rels, k):
    return sum(r / math.log2(i + 2) for i, r in enumerate(rels[:k]))


def _orders_consistent_with_scores(scores):
    """Every ranking a tie-breaker could produce: all orders with scores non-increasing."""
    idx = range(len(scores))
    for perm in itertools.permutations(idx):
        if all(scores[perm[i]] >= scores[perm[i + 1]] for i in range(len(perm) - 1)):
            yield perm


def _brute_ndcg(scores, rel, k):
    """Pessimistic = worst DCG over all tie-breaks, normalised by the ideal DCG."""
    ideal = _dcg(sorted(rel, reverse=True), k)
    if ideal == 0:
        return 0.0
    return min(_dcg([rel[j] for j in p], k) for p in _orders_consistent_with_scores(scores)) / ideal


def _brute_hit(scores, pos, k):
    """Pessimistic = a hit only if every tie-break puts a positive in the top k."""
    if not pos:
        return 0.0
    return float(all(any(j in pos for j in p[:k]) for p in _orders_consistent_with_scores(scores)))


def test_ndcg_matches_sklearn_without_ties():
    rng = np.random.default_rng(0)
    for n_cand, k in [(7, 5), (20, 5), (4, 5), (30, 10), (12, 1)]:
        scores = rng.normal(size=(25, n_cand))
        rel = rng.integers(0, 4, size=(25, n_cand)).astype(float)
        rel[0] = 0  # a query with nothing relevant: 0 in both
        ours = metrics.ndcg_at_k(scores, rel, k)
        ref = [ndcg_score(rel[i : i + 1], scores[i : i + 1], k=k) for i in range(len(rel))]
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
        # sklearn's own mean over queries agrees too
        assert ours.mean() == pytest.approx(ndcg_score(rel, scores, k=k), abs=1e-12)


def test_ndcg_with_mask_equals_sklearn_on_the_subset():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(15, 12))
    rel = rng.integers(0, 3, size=(15, 12)).astype(float)
    mask = rng.random((15, 12)) < 0.6
    mask[:, 0] = True
    ours = metrics.ndcg_at_k(torch.tensor(scores), rel, 5, mask=torch.tensor(mask))
    for i in range(15):
        sub = mask[i]
        if sub.sum() == 1:  # sklearn refuses a single document
            continue
        ref = ndcg_score(rel[i : i + 1, sub], scores[i : i + 1, sub], k=5)
        assert ours[i] == pytest.approx(ref, abs=1e-12)


def test_ndcg_pessimistic_ties_match_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(300):
        n = int(rng.integers(1, 7))
        scores = rng.integers(0, 3, size=n).astype(float)  # few levels -> many ties
        rel = rng.integers(0, 3, size=n).astype(float)
        k = int(rng.integers(1, 6))
        ours = metrics.ndcg_at_k(scores[None], rel[None], k)[0]
        assert ours == pytest.approx(_brute_ndcg(list(scores), list(rel), k), abs=1e-12)


def test_hit_pessimistic_ties_match_brute_force_with_masks():
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 7))
        scores = rng.integers(0, 3, size=n).astype(float)
        mask = rng.random(n) < 0.8
        pos = {j for j in range(n) if rng.random() < 0.3}
        k = int(rng.integers(1, 4))
        ours = metrics.hit_at_k(scores[None], [pos], k, mask=mask[None])[0]
        valid = [j for j in range(n) if mask[j]]
        expect = _brute_hit([scores[j] for j in valid], {valid.index(j) for j in pos if mask[j]}, k)
        assert ours == expect


def test_hit_matches_brute_force_topk_without_ties():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(50, 9)).astype(np.float32)
    positives = [set(rng.choice(9, size=int(rng.integers(1, 3)), replace=False)) for _ in range(50)]
    for k in (1, 2, 5):
        ours = metrics.hit_at_k(scores, positives, k)
        top = np.argsort(-scores, axis=1)[:, :k]
        ref = [float(bool(set(top[i]) & positives[i])) for i in range(50)]
        np.testing.assert_array_equal(ours, ref)


def test_tie_rule_examples():
    # a positive tied with a negative is not at rank 1
    assert metrics.hit_at_k([[1.0, 1.0, 0.0]], [[0]], 1)[0] == 0.0
    assert metrics.positive_rank([[1.0, 1.0, 0.0]], [[0]])[0] == 2
    # two tied positives on top: still a hit (ties among positives cost nothing)
    assert metrics.hit_at_k([[1.0, 1.0, 0.0]], [[0, 1]], 1)[0] == 1.0
    # constant scores (collapsed embeddings): the positive lands last
    assert metrics.positive_rank(np.zeros((1, 4)), [[2]])[0] == 4
    # NaN counts as -inf; a query without positives never hits
    assert metrics.hit_at_k([[np.nan, 0.0]], [[0]], 1)[0] == 0.0
    assert metrics.positive_rank([[1.0, 0.0]], [[]])[0] == np.inf
    # masked-out negatives do not count, masked-out positives are not positives
    assert metrics.hit_at_k([[0.5, 0.9, 0.1]], [[0]], 1, mask=[[True, False, True]])[0] == 1.0
    assert metrics.hit_at_k([[0.5, 0.9, 0.1]], [[1]], 1, mask=[[True, False, True]])[0] == 0.0


def test_ndcg_linear_gain_and_graded_dicts():
    # grades 2 and 1; model puts the grade-1 doc first: (1 + 2/log2 3) / (2 + 1/log2 3)
    got = metrics.ndcg_at_k([[0.9, 0.5, 0.1]], [{0: 1, 1: 2}], 5)[0]
    assert got == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    # only the first k ranks count
    assert metrics.ndcg_at_k([[0.9, 0.5, 0.1]], [{2: 1}], 2)[0] == 0.0


def test_compute_dispatch_and_errors():
    s = [[0.2, 0.9]]
    assert metrics.compute("hit@1", s, [[1]])[0] == 1.0
    assert metrics.compute("NDCG@5", s, [{0: 1}])[0] == pytest.approx(1 / math.log2(3))
    for bad in ("map@5", "hit@", "recall"):
        with pytest.raises(ValueError):
            metrics.compute(bad, s, [[1]])
    with pytest.raises(ValueError):
        metrics.hit_at_k(s, [[1]], 0)
    with pytest.raises(ValueError):
        metrics.ndcg_at_k(s, [[1], [0]], 5)
