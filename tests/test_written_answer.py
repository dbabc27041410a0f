"""Explicit mode's written-answer accuracy, with a fake encoder whose traces say what
it wrote: exact shares, only where the gold answer is a text candidate."""

import torch

from plume_lite.data.formats import EvalTask
from plume_lite.evaluation import protocol as ev
from plume_lite.evaluation.index import EmbeddingCache
from plume_lite.evaluation.written import written_answer

WROTE = {  # query text -> what the fake explicit writer wrote
    "q0": "It is a cat.</think>Cat\n",  # right, other case
    "q1": "Four legs.</think>  dog \n",  # right, spaces around
    "q2": "It swims and swims and",  # cut before </think>: no answer
    "q3": "It barks.</think>fish\n",  # wrong answer
}


class FakeWriter:
    checkpoint_id = "fake-writer"

    def __init__(self):
        self.calls = []

    def encode(self, items, mode="latent", steps=None, batch_size=16, return_trace=False, progress=False):
        self.calls.append((mode, [it.get("text") for it in items], return_trace))
        g = torch.Generator().manual_seed(len(items))
        emb = torch.nn.functional.normalize(torch.randn(len(items), 8, generator=g), dim=-1)
        if not return_trace:
            return emb
        return emb, [{"mode": mode, "text": WROTE.get(it.get("text"), "")} for it in items]


def _tasks(media):
    labels = [{"text": x} for x in ("cat", "dog", "fish")]
    cls = EvalTask(
        name="cls",
        modality="image",
        meta_task="classification",
        protocol="local",
        metric="hit@1",
        queries=[{"text": q} for q in WROTE],
        candidates=labels,
        query_candidates=[[0, 1, 2], [1, 0, 2], [2, 0, 1], [1, 0, 2]],
        qrels=[{0: 1}, {1: 1}, {2: 1}, {1: 1}],
    )
    ret = EvalTask(  # a positive is an image: no gold answer text
        name="ret",
        modality="image",
        meta_task="retrieval",
        protocol="global",
        metric="hit@1",
        queries=[{"text": "q0"}, {"text": "q1"}],
        candidates=[{"image": media["image"]}, {"text": "q1 caption"}],
        query_candidates=None,
        qrels=[{0: 1}, {1: 1}],
    )
    return [cls, ret]


def test_written_answer_is_the_text_after_think_end():
    assert written_answer("x.</think> Red  Circle \n") == "red circle"
    assert written_answer("no close") is None and written_answer(None) is None


def test_explicit_mode_reports_the_share_of_right_written_answers(tmp_path, media_files):
    tasks = _tasks(media_files)
    result = ev.evaluate(FakeWriter(), tasks, mode="explicit", out=tmp_path / "eval.json", progress=False)
    cls, ret = result["tasks"]["cls"], result["tasks"]["ret"]
    assert cls["written_answer_accuracy"] == 50.0
    assert [q["written_correct"] for q in cls["per_query"]] == [True, True, False, False]
    assert cls["per_query"][2]["written"] == WROTE["q2"]
    assert "written_answer_accuracy" not in ret and "written" not in ret["per_query"][0]
    rows = {line.split(" | ")[0]: line for line in (tmp_path / "eval.md").read_text().splitlines()}
    assert rows["| task"].endswith("| score | written answer |")
    assert rows["| cls"].endswith(f"| {cls['score']:.1f} | 50.0 |")
    assert rows["| ret"].endswith(f"| {ret['score']:.1f} | – |")
    latent = ev.evaluate(FakeWriter(), tasks, mode="latent", progress=False)
    assert "written_answer_accuracy" not in latent["tasks"]["cls"]
    assert "written answer" not in ev.markdown(latent)


def test_queries_already_cached_are_written_again_for_their_text(media_files):
    writer = FakeWriter()
    cache = EmbeddingCache(writer, "explicit")
    task = _tasks(media_files)[0]
    cache.encode(task.queries)  # embeddings cached without a trace (e.g. an interrupted run)
    r = ev.score_task(cache, task)
    assert r["written_answer_accuracy"] == 50.0
    assert writer.calls[1] == ("explicit", list(WROTE), True)
