"""SynthMMEB: deterministic, MMEB-v2-shaped, rationales on every training pair, held-out
test combinations, real media files, and the synth / data show commands."""

import hashlib
import json
import re

import pytest

from plume_lite.apps import cli
from plume_lite.data.mmeb import load_eval_tasks, load_train_pairs
from plume_lite.data.storage import DataError, read_rows
from plume_lite.data.synth import make_synth
from plume_lite.media import load_pdf_page, load_video


def _digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory.mktemp("synth") / "tiny", size="tiny", seed=0)


@pytest.fixture(scope="module")
def manifest(synth):
    return json.loads((synth / "tasks.json").read_text())


@pytest.fixture(scope="module")
def pairs(synth):
    return load_train_pairs(synth)


@pytest.fixture(scope="module")
def tasks(synth):
    return load_eval_tasks(synth)


@pytest.mark.slow
def test_same_seed_gives_identical_bytes_and_other_seeds_differ(synth, tmp_path):
    again = make_synth(tmp_path / "again", size="tiny", seed=0)
    assert _digest(synth) == _digest(again)
    names = ["img_qa_chart", "vid_qa_lastmoved", "doc_ret_chart"]
    other = _digest(make_synth(tmp_path / "other", size="tiny", seed=1, tasks=names))
    base = _digest(synth)
    for n in names:
        ours = {k: v for k, v in base.items() if f"/{n}/" in k}
        theirs = {k: v for k, v in other.items() if f"/{n}/" in k}
        assert ours.keys() & theirs.keys()
        assert all(
            ours[k] != theirs[k]
            for k in ours.keys() & theirs.keys()
            if k.endswith((".png", ".mp4", ".pdf", ".parquet"))
        )


def test_manifest_is_mmeb_v2_shaped(manifest):
    t = manifest["tasks"]
    assert len(t) >= 12
    kinds = {(e["modality"], e["meta_task"]) for e in t}
    for need in [
        ("image", "classification"),
        ("image", "qa"),
        ("image", "retrieval"),
        ("image", "grounding"),
        ("video", "classification"),
        ("video", "qa"),
        ("video", "retrieval"),
        ("video", "moment_retrieval"),
        ("visdoc", "vidore"),
    ]:
        assert need in kinds
    assert sum(e["protocol"] == "global" for e in t) >= 2
    assert sum(e["reasoning"] for e in t) * 3 >= len(t)
    assert all(e["metric"] == ("ndcg@5" if e["modality"] == "visdoc" else "hit@1") for e in t)
    assert 1000 <= sum(e["n_train"] for e in t) <= 2000
    assert all(24 <= e["n_test_queries"] <= 40 for e in t)
    assert all(8 <= e["candidates_per_query"] <= 16 for e in t if e["protocol"] == "local")


def test_every_training_pair_has_a_multi_sentence_rationale_and_answer(pairs, manifest):
    assert len(pairs) == sum(e["n_train"] for e in manifest["tasks"])
    for p in pairs:
        for rationale, answer in (
            (p.query_rationale, p.query_answer),
            (p.positive_rationale, p.positive_answer),
        ):
            segs = [s for s in re.split(r"(?<=\.)\s+", rationale) if s]
            assert len(segs) >= 2 and all(s.endswith(".") for s in segs), rationale
            assert answer and len(answer) < 80
        assert p.query and p.positive and p.negatives
        assert p.negatives[0] != p.positive


def test_reasoning_rationales_are_correct_by_construction(pairs):
    chart = [p for p in pairs if p.task == "img_qa_chart"]
    for p in chart[:40]:
        m = re.search(r"Bars? ([\d, and]+) rises? above", p.query_rationale)
        n = len(re.findall(r"\d", m.group(1))) if m else 0
        assert (
            p.query_answer
            == ["zero", "one", "two", "three", "four", "five", "six", "seven"][n]
            == p.positive["text"]
        )
    for p in [p for p in pairs if p.task == "img_qa_majority"][:40]:
        counts = dict(re.findall(r"count the (\w+) shapes and find (\w+)", p.query_rationale))
        assert len(counts) == 2 and p.query_answer in counts


def _combos(task, rows, test):
    if task == "img_cls_colorshape":
        return {r["tgt_text"][0] for r in rows} if test else {r["pos_text"] for r in rows}
    if task == "img_qa_majority":
        key = "qry_text" if test else "qry"
        return {frozenset(re.findall(r"more (\w+) shapes or (\w+)", r[key])[0]) for r in rows}
    if task in ("img_ret_t2i", "vid_ret_t2v"):
        return {r["qry_text"] if test else r["qry"] for r in rows}
    raise AssertionError(task)


@pytest.mark.parametrize("task", ["img_cls_colorshape", "img_qa_majority", "img_ret_t2i", "vid_ret_t2v"])
def test_test_split_holds_out_combinations_never_seen_in_training(synth, task):
    train = read_rows(synth / "train" / task)
    test = read_rows(synth / "eval" / task)
    assert _combos(task, test, True) and not (_combos(task, test, True) & _combos(task, train, False))


def test_doc_queries_hold_out_and_qrels_are_graded(synth):
    train = {r["qry"] for r in read_rows(synth / "train" / "doc_ret_layout")}
    queries = read_rows(synth / "eval" / "doc_ret_layout" / "queries")
    assert not train & {q["query"] for q in queries}
    scores = [r["score"] for r in read_rows(synth / "eval" / "doc_ret_layout" / "qrels")]
    assert set(scores) == {1, 2}


def test_eval_tasks_follow_the_local_global_conventions(tasks, manifest):
    assert [t.name for t in tasks] == [e["name"] for e in manifest["tasks"]]
    for t, e in zip(tasks, manifest["tasks"]):
        assert (t.modality, t.meta_task, t.protocol, t.reasoning) == (
            e["modality"],
            e["meta_task"],
            e["protocol"],
            e["reasoning"],
        )
        assert len(t.queries) == len(t.qrels) == e["n_test_queries"]
        assert len(t.candidates) == e["n_candidates"]
        if t.protocol == "local":
            for cands, rel in zip(t.query_candidates, t.qrels):
                assert rel == {cands[0]: 1} and len(set(cands)) == len(cands)
        else:
            assert t.query_candidates is None
        for rel in t.qrels:
            assert rel and max(rel.values()) >= 1
            assert all(0 <= i < len(t.candidates) for i in rel)


def test_media_are_real_files_at_model_size(tasks):
    by = {t.name: t for t in tasks}
    clip = by["vid_ret_t2v"].candidates[0]["video"]
    frames = load_video(clip)
    assert len(frames) == 8 and frames[0].size == (64, 64)
    import av

    with av.open(clip) as c:
        assert c.streams.video[0].codec_context.name in ("h264", "mpeg4")
        assert c.streams.video[0].frames >= 8
    full = by["vid_mr_motion"].queries[0]["video"]
    assert len(load_video(full, num_frames=24)) == 24
    page = by["doc_ret_chart"].candidates[0]
    assert load_pdf_page(page["pdf"], page["page"]).size == (64, 80)


def test_synth_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing"):
        make_synth(tmp_path, tasks=["img_qa_chart"])
    with pytest.raises(DataError, match="unknown synth size"):
        make_synth(tmp_path / "x", size="huge")
    with pytest.raises(DataError, match="unknown SynthMMEB task"):
        make_synth(tmp_path / "x", tasks=["nope"])
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_cli_synth_and_data_show(tmp_path, capsys, synth):
    out = tmp_path / "cli"
    assert cli.main(["synth", "--out", str(out), "--seed", "2", "--tasks", "img_qa_chart"]) == 0
    text = capsys.readouterr().out
    assert "1 tasks, 120 training pairs" in text and "load_dataset(" in text
    assert (out / "README.md").exists()
    assert cli.main(["data", "show", str(synth)]) == 0
    text = capsys.readouterr().out
    for name in ("img_cls_colorshape", "vid_mr_motion", "doc_ret_chart", "rationale", "visdoc"):
        assert name in text
    assert cli.main(["data", "show", str(tmp_path / "nowhere")]) == 2
    assert "error:" in capsys.readouterr().err
