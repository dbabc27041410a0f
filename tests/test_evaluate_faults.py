"""Evaluation state survives damage: a torn or edited per-task result is scored again
(not a crash on every rerun), and an empty task list is an error, not a complete result."""
import json

import pytest

from plume_lite.errors import InputError
from plume_lite.evaluation import protocol as ev
from test_evaluate import FakeEncoder, _numbers, make_tasks


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
    assert enc.seen and all("qA" in s or s.endswith("|A") for s in enc.seen)   # only that task
    assert json.loads(parts[0].read_text())["result"]["score"] == first["tasks"]["A_cls"]["score"]


def test_an_empty_task_list_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no tasks"):
        ev.evaluate(FakeEncoder(), [], out=tmp_path / "res.json", progress=False)
    assert not (tmp_path / "res.json").exists()
