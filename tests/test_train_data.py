"""Task-homogeneous batches, their checkpointable position, and per-mode suffixes."""

import pytest

from plume_lite.curriculum import Curriculum
from plume_lite.data.formats import TrainPair
from plume_lite.errors import ConfigError
from plume_lite.train.batches import TaskBatchSampler, make_batch

TASKS = ["a"] * 40 + ["b"] * 23 + ["c"] * 3


def drain(sampler, n):
    return [sampler.next_batch() for _ in range(n)]


def test_batches_are_single_task_full_and_cover_an_epoch():
    s = TaskBatchSampler(TASKS, batch_size=8, seed=0)
    assert s.skipped == ["c"]  # too small for one batch: never drawn
    assert s.batches_per_epoch == 40 // 8 + 23 // 8
    batches = drain(s, s.batches_per_epoch)
    for b in batches:
        assert len(b) == 8 and len({TASKS[i] for i in b}) == 1
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))  # no pair twice in an epoch
    assert {TASKS[i] for i in flat} == {"a", "b"}


def test_ranks_split_one_global_batch_of_one_task():
    ranks = [TaskBatchSampler(TASKS, batch_size=4, num_processes=2, rank=r, seed=3) for r in (0, 1)]
    for _ in range(10):
        b0, b1 = (s.next_batch() for s in ranks)
        assert len(b0) == len(b1) == 4 and not set(b0) & set(b1)
        assert len({TASKS[i] for i in b0 + b1}) == 1


def test_order_is_seeded_and_resumes_from_its_state():
    a, b = TaskBatchSampler(TASKS, 8, seed=1), TaskBatchSampler(TASKS, 8, seed=1)
    assert drain(a, 12) == drain(b, 12)  # crosses an epoch boundary
    assert drain(TaskBatchSampler(TASKS, 8, seed=2), 7) != drain(TaskBatchSampler(TASKS, 8, seed=1), 7)
    c = TaskBatchSampler(TASKS, 8, seed=1)
    c.load_state_dict(a.state_dict())
    assert drain(c, 9) == drain(a, 9)
    with pytest.raises(ConfigError):
        TaskBatchSampler(TASKS, 4, seed=1).load_state_dict(a.state_dict())


def test_no_task_large_enough_is_an_error():
    with pytest.raises(ConfigError, match="lower batch_size"):
        TaskBatchSampler(["a"] * 5, batch_size=8)


def pair(i):
    return TrainPair(
        task="t",
        query={"text": f"q{i}"},
        positive={"text": f"c{i}"},
        query_rationale="One. Two. Three. Four.",
        query_answer="ans",
        positive_rationale="Only one sentence here",
        positive_answer="pos",
    )


def test_suffixes_per_mode_and_stage():
    pairs = [pair(i) for i in range(3)]
    d = make_batch(pairs, "direct", None)
    assert d.query_suffix is None and d.n_latent == 0 and d.queries[1] == {"text": "q1"}
    e = make_batch(pairs, "explicit", None)
    assert e.query_suffix[0] == "One. Two. Three. Four.</think>ans\n" and e.n_latent == 0
    cur = Curriculum(latent_steps=4)
    half = make_batch(pairs, "latent", cur.stage_at(0.3))
    assert half.n_latent == 2 and half.query_suffix[0] == "Three. Four.</think>ans\n"
    assert half.positive_suffix[0].endswith("</think>pos\n")  # character-chunk fallback
    end = make_batch(pairs, "latent", cur.stage_at(0.99))
    assert end.n_latent == 4 and set(end.query_suffix + end.positive_suffix) == {"</think>\n"}
