"""Evaluator and embedding index with a fake encoder on hand-made EvalTasks."""

import argparse
import hashlib
import json
import math
import types

import pytest
import torch

from plume_lite import io as pio
from plume_lite.data.formats import EvalTask
from plume_lite.errors import ConfigError, InputError
from plume_lite.evaluation import protocol as ev
from plume_lite.evaluation.index import EmbeddingIndex, checkpoint_fingerprint, item_digest


def _vec(seed: str, dim=64):
    g = torch.Generator().manual_seed(int(hashlib.sha256(seed.encode()).hexdigest()[:15], 16))
    return torch.randn(dim, generator=g)


class FakeEncoder:
    """Item text "concept|tag": the embedding is the concept's vector plus a little
    noise keyed by the whole text and the setting, so equal concepts match."""

    checkpoint_id = "fake-ckpt"

    def __init__(self, fail_on=None):
        self.fail_on, self.seen = fail_on, []

    def encode(self, items, mode="latent", steps=None, batch_size=16, return_trace=False, progress=False):
        rows = []
        for it in items:
            text = it["text"]
            if self.fail_on and self.fail_on in text:
                raise RuntimeError("simulated crash")
            self.seen.append(text)
            concept = text.split("|")[0]
            rows.append(_vec(concept) + 0.1 * _vec(f"{text}/{mode}/{steps}"))
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def _items(texts):
    return [{"instruction": "find it", "text": t} for t in texts]


def make_tasks():
    labels = ["cat", "dog", "fish", "bird"]
    # local hit@1: 3 of 4 right (query 3 is about a dog but cat is listed as positive)
    cls = EvalTask(
        name="A_cls",
        modality="image",
        meta_task="classification",
        protocol="local",
        metric="hit@1",
        queries=_items(["cat|qA0", "dog|qA1", "fish|qA2", "dog|qA3"]),
        candidates=_items([f"{x}|A" for x in labels]),
        query_candidates=[[0, 1, 2, 3], [1, 0, 2], [2, 3, 0, 2], [0, 1]],
        qrels=[{0: 1}, {1: 1}, {2: 1}, {}],
    )  # empty qrels -> first listed is the positive
    # global hit@1 over a pool of 6: 4 of 5 right
    pool = [f"v{i}|B" for i in range(6)]
    vid = EvalTask(
        name="B_ret",
        modality="video",
        meta_task="retrieval",
        protocol="global",
        metric="hit@1",
        queries=_items(["v0|qB0", "v1|qB1", "v2|qB2", "v3|qB3", "v9|qB4"]),
        candidates=_items(pool),
        query_candidates=None,
        qrels=[{0: 1}, {1: 1}, {2: 1}, {3: 1}, {4: 1}],
    )
    # global ndcg@5 with graded qrels
    docs = [f"d{i}|C" for i in range(8)]
    doc = EvalTask(
        name="C_doc",
        modality="visdoc",
        meta_task="vidore",
        protocol="global",
        metric="ndcg@5",
        queries=_items(["d0|qC0", "d3|qC1", "zz|qC2"]),
        candidates=_items(docs),
        query_candidates=None,
        qrels=[{0: 2, 5: 1}, {3: 1, 4: 2}, {6: 1}],
    )
    # a reasoning task: local, 1 of 2 right
    qa = EvalTask(
        name="D_qa",
        modality="image",
        meta_task="qa",
        protocol="local",
        metric="hit@1",
        queries=_items(["yes|qD0", "no|qD1"]),
        candidates=_items(["yes|D", "no|D"]),
        query_candidates=[[0, 1], [0, 1]],
        qrels=[{0: 1}, {0: 1}],
        reasoning=True,
    )
    return [cls, vid, doc, qa]


def _ndcg_by_hand(enc, task, i):
    q = enc.encode([task.queries[i]])[0]
    c = enc.encode(task.candidates)
    order = sorted(range(len(c)), key=lambda j: -float(q @ c[j]))
    rel = task.qrels[i]
    dcg = sum(rel.get(j, 0) / math.log2(r + 2) for r, j in enumerate(order[:5]))
    ideal = sum(g / math.log2(r + 2) for r, g in enumerate(sorted(rel.values(), reverse=True)[:5]))
    return dcg / ideal


def _numbers(result):
    """Everything that must not depend on interruptions (not timings or encode counts)."""
    drop = {"seconds", "n_encoded"}
    return {k: v for k, v in result.items() if k not in ("tasks",)}, {
        n: {k: v for k, v in r.items() if k not in drop} for n, r in result["tasks"].items()
    }


def test_scores_and_aggregation():
    tasks = make_tasks()
    r = ev.evaluate(FakeEncoder(), tasks, progress=False)
    t = r["tasks"]
    assert t["A_cls"]["score"] == pytest.approx(75.0)
    assert t["B_ret"]["score"] == pytest.approx(80.0)
    assert t["D_qa"]["score"] == pytest.approx(50.0)
    doc = 100 * sum(_ndcg_by_hand(FakeEncoder(), tasks[2], i) for i in range(3)) / 3
    assert t["C_doc"]["score"] == pytest.approx(doc, abs=1e-4)
    assert 0 < doc < 100
    assert r["modalities"]["image"] == {"score": pytest.approx(62.5), "n_tasks": 2}
    assert r["modalities"]["video"]["score"] == pytest.approx(80.0)
    assert r["overall"]["score"] == pytest.approx((75 + 80 + doc + 50) / 4)  # mean over tasks
    assert r["meta_tasks"]["image"]["classification"]["score"] == pytest.approx(75.0)
    assert r["meta_tasks"]["image"]["qa"]["score"] == pytest.approx(50.0)
    assert r["reasoning"]["reasoning"] == {"score": pytest.approx(50.0), "n_tasks": 1}
    assert r["reasoning"]["non_reasoning"]["score"] == pytest.approx((75 + 80 + doc) / 3)
    assert r["complete"] and r["pending"] == []
    # per-query records: rank of the positive and top candidates as pool indices
    pq = t["A_cls"]["per_query"]
    assert [p["rank"] for p in pq[:3]] == [1, 1, 1] and pq[3]["rank"] == 2
    assert pq[3]["top"] == [1, 0]  # its own two candidates only, dog first
    assert set(pq[1]["top"]) == {0, 1, 2}  # a local list shorter than 5
    assert pq[0]["pos_score"] == pytest.approx(pq[0]["top_scores"][0], abs=1e-6)
    assert t["B_ret"]["per_query"][4]["score"] == 0.0 and len(t["B_ret"]["per_query"][4]["top"]) == 5
    md = ev.markdown(r)
    assert "| Image | Video | VisDoc | All | Reasoning | Non-reasoning |" in md and "| A_cls |" in md


def test_resume_after_crash_matches_uninterrupted(tmp_path):
    tasks = make_tasks()
    full = ev.evaluate(FakeEncoder(), tasks, out=tmp_path / "a" / "res.json", progress=False)

    out = tmp_path / "b" / "res.json"
    with pytest.raises(RuntimeError, match="simulated crash"):
        # queries of task 2 are encoded, then its candidate pool crashes: mid-task
        ev.evaluate(FakeEncoder(fail_on="v3|B"), tasks, out=out, progress=False, cache_dir=None)
    partial = json.loads(out.read_text())  # whole, parseable, and says it is partial
    assert not partial["complete"] and list(partial["tasks"]) == ["A_cls"]
    assert partial["pending"] == ["B_ret", "C_doc", "D_qa"]
    assert "incomplete" in out.with_suffix(".md").read_text()

    enc = FakeEncoder()
    resumed = ev.evaluate(enc, tasks, out=out, progress=False, cache_dir=None)
    assert not any(s.endswith("A") or "qA" in s for s in enc.seen)  # task 1 not recomputed
    assert any("qB" in s for s in enc.seen)
    assert _numbers(resumed) == _numbers(full)
    assert json.loads(out.read_text()) == resumed
    assert not list(tmp_path.rglob("*.tmp"))


def test_embedding_cache_resumes_inside_a_task(tmp_path):
    tasks, out = make_tasks(), tmp_path / "res.json"
    with pytest.raises(RuntimeError):
        ev.evaluate(FakeEncoder(fail_on="v3|B"), tasks, out=out, progress=False)
    enc = FakeEncoder()
    again = ev.evaluate(enc, tasks, out=out, progress=False)
    assert not any("qB" in s for s in enc.seen)  # task 2's queries came from the disk cache
    assert again["tasks"]["B_ret"]["n_encoded"] == 6
    assert _numbers(again) == _numbers(ev.evaluate(FakeEncoder(), tasks, progress=False))


def test_changed_setting_or_data_is_not_reused(tmp_path):
    tasks, out = make_tasks(), tmp_path / "res.json"
    ev.evaluate(FakeEncoder(), tasks, out=out, progress=False)
    enc = FakeEncoder()
    r = ev.evaluate(enc, tasks, out=out, mode="direct", steps=4, progress=False)
    assert len(enc.seen) == sum(len(t.queries) + len(t.candidates) for t in tasks)
    assert r["setting"]["mode"] == "direct" and r["setting"]["steps"] == 4
    tasks[3].qrels = [{1: 1}, {1: 1}]  # edited data: only that task is recomputed
    enc = FakeEncoder()
    r = ev.evaluate(enc, tasks, out=out, progress=False, cache_dir=None)
    assert sorted(set(s.split("|")[1] for s in enc.seen)) == ["D", "qD0", "qD1"]
    assert r["tasks"]["D_qa"]["score"] == pytest.approx(50.0)


def test_results_are_only_written_atomically(tmp_path, monkeypatch):
    out = tmp_path / "res.json"
    written = []
    real = ev.atomic_write_text

    def spy(path, text):
        if out.exists():  # whatever a reader sees at any moment parses
            json.loads(out.read_text())
        written.append(path)
        real(path, text)

    monkeypatch.setattr(ev, "atomic_write_text", spy)
    ev.evaluate(FakeEncoder(), make_tasks(), out=out, progress=False, cache_dir=None)
    files = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert files == set(written) and out in files
    before = out.read_bytes()

    real_replace = pio.os.replace

    def crash(src, dst):  # the process dies between writing the results' temp file and the rename
        if str(dst) == str(out):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(pio.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(FakeEncoder(), make_tasks(), out=out, mode="direct", progress=False, cache_dir=None)
    assert out.read_bytes() == before
    assert len(list((tmp_path / "res.work" / "parts").iterdir())) == 2  # task 1 of the new setting was kept
    assert not list(tmp_path.rglob("*.tmp"))


def test_input_errors():
    tasks = make_tasks()
    with pytest.raises(InputError):
        ev.evaluate(FakeEncoder(), tasks + tasks[:1], progress=False)
    with pytest.raises(InputError):
        ev.evaluate(FakeEncoder(), tasks, mode="fast", progress=False)
    tasks[0].query_candidates[1] = [0, 99]
    with pytest.raises(InputError):
        ev.evaluate(FakeEncoder(), tasks[:1], progress=False)
    broken = types.SimpleNamespace(
        checkpoint_id="nan", encode=lambda items, **kw: torch.full((len(items), 4), float("nan"))
    )
    with pytest.raises(RuntimeError, match="non-finite"):
        ev.evaluate(broken, make_tasks(), progress=False)
    nameless = types.SimpleNamespace(encode=FakeEncoder().encode)
    with pytest.raises(ConfigError):  # cannot key resumable results without a model id
        ev.evaluate(nameless, make_tasks(), out="unused.json", progress=False)


def test_index_search_and_disk_cache(tmp_path):
    gallery = _items(["cat|g", "dog|g", "fish|g"])
    idx = EmbeddingIndex(FakeEncoder(), gallery, cache_dir=tmp_path)
    scores, ids = idx.search(_items(["dog|x", "fish|y"]), k=2)
    assert ids[:, 0].tolist() == [1, 2] and scores.shape == (2, 2)
    assert idx.search(idx.embeddings[0], k=10)[1][0].tolist()[0] == 0  # k clamps to the pool
    again = EmbeddingIndex(FakeEncoder(), gallery, cache_dir=tmp_path)
    assert again.cache.n_encoded == 0 and torch.equal(again.embeddings, idx.embeddings)
    other = EmbeddingIndex(FakeEncoder(), gallery, mode="direct", cache_dir=tmp_path)
    assert other.cache.n_encoded == 3  # the mode is part of the key


def test_item_digest_follows_file_content(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(b"one")
    d1 = item_digest({"image": str(img), "text": "x"})
    assert item_digest({"text": "x", "image": str(img)}) == d1
    img.write_bytes(b"two!")
    assert item_digest({"image": str(img), "text": "x"}) != d1
    assert item_digest({"text": str(img)}) == item_digest({"text": str(img)})
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "w.bin").write_bytes(b"1")
    f1 = checkpoint_fingerprint(ck)
    (ck / "w.bin").write_bytes(b"22")
    assert checkpoint_fingerprint(ck) != f1


def test_cli_eval(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "plume_config.json").write_text("{}")
    fake_model = types.ModuleType("plume_lite.model")
    fake_model.PlumeModel = types.SimpleNamespace(
        from_pretrained=lambda d, device=None, dtype=None: FakeEncoder()
    )
    fake_data = types.ModuleType("plume_lite.data.mmeb")
    fake_data.load_eval_tasks = lambda src, tasks=None, split="test": [
        t for t in make_tasks() if tasks is None or t.name in tasks
    ]
    monkeypatch.setitem(__import__("sys").modules, "plume_lite.model", fake_model)
    monkeypatch.setitem(__import__("sys").modules, "plume_lite.data.mmeb", fake_data)
    parser = argparse.ArgumentParser()
    from plume_lite.evaluation import cli as eval_cli

    eval_cli.add_cli(parser.add_subparsers(dest="command"))
    out = tmp_path / "r" / "eval.json"
    args = parser.parse_args(
        [
            "eval",
            "--checkpoint",
            str(ckpt),
            "--data",
            "x",
            "--tasks",
            "A_cls,D_qa",
            "--mode",
            "direct",
            "--steps",
            "2",
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| A_cls |" in printed and "B_ret" not in printed
    assert json.loads(out.read_text())["setting"]["mode"] == "direct"
    assert out.with_suffix(".md").read_text() == printed
    written = json.loads(out.with_suffix(".vlm2vec.json").read_text())  # VLM2Vec's score-file shape
    assert written["metadata"]["model_name"] == "ckpt"
    assert sorted(t for m in written["metrics"].values() for t in m) == ["A_cls", "D_qa"]
    args = parser.parse_args(
        ["eval", "--checkpoint", str(ckpt), "--data", "x", "--tasks", "nope", "--out", str(out)]
    )
    with pytest.raises(InputError):
        args.func(args)


def test_eval_dtype_auto_is_bf16_on_cuda_and_as_saved_on_the_cpu():
    import torch

    from plume_lite.errors import ConfigError
    from plume_lite.runtime import resolve_dtype

    assert resolve_dtype("auto", "cpu") is None
    assert resolve_dtype("auto", "cuda:0") is torch.bfloat16
    assert resolve_dtype("float16", "cpu") is torch.float16
    with pytest.raises(ConfigError, match="dtype must be one of"):
        resolve_dtype("int8", "cpu")
