"""Evaluation state survives damage: a torn or edited per-task result is scored again
(not a crash on every rerun), and an empty task list is an error, not a complete result."""

import json

import pytest
from test_evaluate import FakeEncoder, _numbers, make_tasks

from plume_lite.errors import InputError
from plume_lite.evaluation import protocol as ev


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"fingerprint": 1}', b"\xff\xfe\x00"])
def test_a_damaged_task_result_is_scored_again(tmp_path, damage):
    tasks = make_tasks()
    out = tmp_path / "res.json"
    first = ev.evaluate(FakeEncoder(), tasks, out=out, progress=False, cache_dir=None)
    parts = sorted((tmp_path / "res.work" / "parts").rglob("*.json"))
    assert len(parts) == len(tasks)
    parts[0].write_bytes(damage)
    enc = FakeEncoder()
    again = ev.evaluate(enc, tasks, out=out, progress=False, cache_dir=None)
    assert _numbers(again) == _numbers(first)
    assert enc.seen and all("qA" in s or s.endswith("|A") for s in enc.seen)  # only that task
    assert json.loads(parts[0].read_text())["result"]["score"] == first["tasks"]["A_cls"]["score"]


def test_an_empty_task_list_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no tasks"):
        ev.evaluate(FakeEncoder(), [], out=tmp_path / "res.json", progress=False)
    assert not (tmp_path / "res.json").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "wrong_rows"])
def test_a_damaged_cache_shard_is_dropped_and_recomputed(tmp_path, damage):
    import torch

    tasks, out = make_tasks(), tmp_path / "res.json"
    first = ev.evaluate(FakeEncoder(), tasks, out=out, progress=False)
    for part in (tmp_path / "res.work" / "parts").rglob("*.json"):
        part.unlink()  # force re-scoring, so the cache is read
    shards = sorted((tmp_path / "res.work" / "emb").rglob("shard-*.pt"))
    assert shards
    victim = shards[0]
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:100])
    elif damage == "garbage":
        victim.write_bytes(b"\x00garbage" * 50)
    elif damage == "empty":
        victim.write_bytes(b"")
    else:
        torch.save({"keys": ["a", "b"], "emb": torch.zeros(3, 4)}, victim)
    again = ev.evaluate(FakeEncoder(), tasks, out=out, progress=False)
    assert _numbers(again) == _numbers(first)
