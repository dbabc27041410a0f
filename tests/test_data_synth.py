"""SynthMMEB: deterministic, MMEB-v2-shaped, rationales on every training pair, an i.i.d.
test split with no scene of the training split and a compositional split of held-out
combinations, no text-only shortcut, real media files, and the synth / data show commands."""

import argparse
import hashlib
import json
import re
from collections import defaultdict

import pytest
from PIL import Image

from plume_lite.apps import cli
from plume_lite.data import card
from plume_lite.data import cli as data_cli
from plume_lite.data.formats import EvalTask
from plume_lite.data.mmeb import load_eval_tasks, load_train_pairs
from plume_lite.data.storage import DataError, read_rows
from plume_lite.data.synth import SIZES, all_tasks, make_synth
from plume_lite.data.synth_base import EVAL_SPLITS, Builder
from plume_lite.media import load_pdf_page, load_video

NUMBER = ["zero", "one", "two", "three", "four", "five", "six", "seven"]


def _digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """SynthMMEB tiny, seed 0, and the keys (attribute combinations) of the scenes drawn for
    each (task, split), with whether each is held out."""
    keys = defaultdict(list)
    real = Builder.draw

    def draw(self, sample, split, *args, **kwargs):
        s = real(self, sample, split, *args, **kwargs)
        keys[self.spec.name, split].append(self.held_out(s["key"]))
        return s

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Builder, "draw", draw)
        out = make_synth(tmp_path_factory.mktemp("synth") / "tiny", size="tiny", seed=0)
    return out, keys


@pytest.fixture(scope="module")
def synth(recorded):
    return recorded[0]


@pytest.fixture(scope="module")
def manifest(synth):
    return json.loads((synth / "tasks.json").read_text())


@pytest.fixture(scope="module")
def pairs(synth):
    return load_train_pairs(synth)


@pytest.fixture(scope="module")
def tasks(synth):
    return load_eval_tasks(synth)


@pytest.fixture(scope="module")
def split_tasks(synth, tasks):
    return {"test": tasks, "compositional": load_eval_tasks(synth, split="compositional")}


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
        assert all(  # (a corpus table holds only ids and page references: it may coincide)
            ours[k] != theirs[k]
            for k in ours.keys() & theirs.keys()
            if k.endswith((".png", ".mp4", ".pdf", ".parquet")) and "/corpus/" not in k
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
    assert all(24 <= e["n_compositional_queries"] <= 40 for e in t)
    for e in t:  # both splits' sizes are recorded, the main one also at the top level
        assert sorted(e["splits"]) == ["compositional", "test"]
        assert e["splits"]["test"]["n_queries"] == e["n_test_queries"]
        assert e["splits"]["compositional"]["n_queries"] == e["n_compositional_queries"]
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
    majority = [p for p in pairs if p.task == "img_qa_majority"]
    assert {len(re.findall(r"count the", p.query_rationale)) for p in majority} == {2, 3}
    for p in majority:  # one colour has strictly the most shapes, and it is the answer
        counts = {
            c: NUMBER.index(n)
            for c, n in re.findall(r"count the (\w+) shapes and find (\w+)", p.query_rationale)
        }
        ranked = sorted(counts.values())
        assert ranked[-1] > ranked[-2] and p.query_answer == max(counts, key=counts.get)
        assert p.query["text"] == "Which colour has the most shapes?"


def _media_digests(root, task, split):
    return [
        hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted((root / "media" / task / split).iterdir())
    ]


@pytest.mark.parametrize("task", [s.name for s in all_tasks()])
def test_no_evaluation_scene_repeats_a_training_scene(synth, task):
    train = set(_media_digests(synth, task, "train"))
    for split in EVAL_SPLITS:
        files = _media_digests(synth, task, split)
        assert files and not train.intersection(files), split


def test_splits_draw_their_scenes_from_their_own_combinations(recorded):
    """train and test use the same (non-held-out) combinations; compositional only held-out ones."""
    keys = recorded[1]
    drawn = {task for task, _ in keys}
    assert {"img_qa_majority", "img_qa_leftof", "img_qa_chart", "vid_qa_lastmoved", "vid_mr_motion"} <= drawn
    for task in drawn:
        assert keys[task, "train"] and not any(keys[task, "train"]), task
        assert keys[task, "test"] and not any(keys[task, "test"]), task
        assert keys[task, "compositional"] and all(keys[task, "compositional"]), task


def _combos(task, rows, split):
    if task == "img_cls_colorshape":
        return {r["pos_text"] for r in rows} if split == "train" else {r["tgt_text"][0] for r in rows}
    if task in ("img_ret_t2i", "vid_ret_t2v"):
        return {r["qry"] if split == "train" else r["qry_text"] for r in rows}
    if task.startswith("doc_"):
        return {r["qry"] if split == "train" else r["query"] for r in rows}
    raise AssertionError(task)


@pytest.mark.parametrize(
    "task", ["img_cls_colorshape", "img_ret_t2i", "vid_ret_t2v", "doc_ret_layout", "doc_ret_chart"]
)
def test_compositional_queries_are_combinations_training_never_has(synth, manifest, task):
    files = card.data_files(next(e for e in manifest["tasks"] if e["name"] == task))
    combos = {s: _combos(task, read_rows(synth / files[task][s]), s) for s in ("train", *EVAL_SPLITS)}
    assert combos["compositional"] and combos["test"]
    assert not combos["compositional"] & combos["train"]
    assert not combos["compositional"] & combos["test"]


def test_fresh_and_draw_refuse_an_evaluation_scene_equal_to_a_training_one(tmp_path):
    spec = all_tasks()[0]
    b = Builder(tmp_path, spec, seed=1, n_train=1, n_test=1, n_cands=2)
    seen, new = Image.new("RGB", (4, 4), (1, 2, 3)), Image.new("RGB", (4, 4), (9, 9, 9))
    renders = iter([seen, seen, seen, new])
    assert b.fresh(lambda rng: next(renders), "train") is seen
    assert b.fresh(lambda rng: next(renders), "test") is new  # two repeats refused
    scenes = iter(
        [
            {"key": (0, 0), "data": [seen, new]},
            {"key": (0, 0), "data": [new, seen]},
            {"key": (0, 0), "data": [new]},
        ]
    )
    b = Builder(tmp_path, spec, seed=0, n_train=1, n_test=1, n_cands=2)
    b.draw(lambda rng: {"key": (1, 0), "data": seen}, "train")
    assert b.draw(lambda rng: next(scenes), "compositional", media=lambda s: s["data"])["data"] == [new]


def test_doc_qrels_are_graded_in_both_splits(synth):
    for split in EVAL_SPLITS:
        scores = [
            r["score"] for r in read_rows(synth / f"eval/doc_ret_layout/qrels/{split}-00000-of-00001.parquet")
        ]
        assert set(scores) == {1, 2}


def test_no_task_can_be_answered_from_the_query_text_alone(manifest, split_tasks):
    """The text floor (a ranker reading only the query text) is the chance level everywhere;
    majority's old "more A or B?" question named the answer and scored 50 % from text."""
    for e in manifest["tasks"]:
        for split in EVAL_SPLITS:
            assert e["splits"][split]["text_floor"] == e["splits"][split]["chance"], (e["name"], split)
    for tasks in split_tasks.values():
        (majority,) = [t for t in tasks if t.name == "img_qa_majority"]
        assert card.text_floor(majority) == card.chance_level(majority) == 12.5
        assert not any(c["text"] in q["text"] for q in majority.queries for c in majority.candidates)


def test_text_floor_finds_a_question_that_names_the_answer():
    colours = ["red", "blue", "green", "pink"]
    task = EvalTask(
        name="t",
        modality="image",
        meta_task="qa",
        protocol="local",
        metric="hit@1",
        queries=[{"text": "Are there more Red or blue shapes?"}, {"text": "How many?"}],
        candidates=[{"text": c} for c in colours],
        query_candidates=[[0, 1, 2, 3], [3, 2, 1, 0]],
        qrels=[{0: 1}, {3: 1}],
    )
    assert card.chance_level(task) == 25.0
    assert card.text_floor(task) == pytest.approx(100 * (1 / 2 + 1 / 4) / 2)  # "red" is a whole word


def test_eval_tasks_follow_the_local_global_conventions(split_tasks, manifest):
    for split, tasks in split_tasks.items():
        assert [t.name for t in tasks] == [e["name"] for e in manifest["tasks"]]
        for t, e in zip(tasks, manifest["tasks"]):
            assert (t.modality, t.meta_task, t.protocol, t.reasoning) == (
                e["modality"],
                e["meta_task"],
                e["protocol"],
                e["reasoning"],
            )
            assert len(t.queries) == len(t.qrels) == e["splits"][split]["n_queries"]
            assert len(t.candidates) == e["splits"][split]["n_candidates"]
            if t.protocol == "local":
                for cands, rel in zip(t.query_candidates, t.qrels):
                    assert rel == {cands[0]: 1} and len(set(cands)) == len(cands)
            else:
                assert t.query_candidates is None
            for rel in t.qrels:
                assert rel and max(rel.values()) >= 1
                assert all(0 <= i < len(t.candidates) for i in rel)
    # the two splits are different query sets
    for a, b in zip(*split_tasks.values()):
        assert a.queries != b.queries


def test_the_loader_reads_a_named_split_and_refuses_an_unknown_one(synth, split_tasks):
    (chart,) = load_eval_tasks(synth, tasks=["img_qa_chart"], split="compositional")
    assert chart.queries == next(t for t in split_tasks["compositional"] if t.name == "img_qa_chart").queries
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_eval_tasks(synth, split="val")
    # an evaluation table folder read on its own gives its test split, not both
    (alone,) = load_eval_tasks(synth / "eval" / "img_qa_chart", media_root=synth)
    assert len(alone.queries) == 32
    (doc,) = load_eval_tasks(synth / "eval" / "doc_ret_chart", media_root=synth)
    assert len(doc.queries) == len(next(t for t in split_tasks["test"] if t.name == "doc_ret_chart").queries)


def test_sizes_offer_tiny_for_tests_and_lite_for_the_reproduction_run():
    assert SIZES["tiny"]["n_test"] == SIZES["tiny"]["n_compositional"] == 32
    assert (SIZES["lite"]["n_train"], SIZES["lite"]["n_test"], SIZES["lite"]["n_compositional"]) == (
        480,
        128,
        128,
    )
    parser = argparse.ArgumentParser()
    data_cli.add_cli(parser.add_subparsers())
    size = next(a for a in parser._subparsers._group_actions[0].choices["synth"]._actions if a.dest == "size")
    assert sorted(size.choices) == sorted(SIZES)


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


def test_train_pairs_sets_the_training_size_and_keeps_the_test_size(tmp_path):
    from plume_lite.data.synth import read_manifest

    small = read_manifest(make_synth(tmp_path / "a", size="tiny", tasks=["img_cls_colorshape"]))
    one = ["img_cls_colorshape"]
    big = read_manifest(make_synth(tmp_path / "b", size="tiny", tasks=one, train_pairs=300))
    assert small["tasks"][0]["n_train"] == 120 and big["tasks"][0]["n_train"] == 300
    assert big["tasks"][0]["n_test_queries"] == small["tasks"][0]["n_test_queries"]
    assert big["train_pairs"] == 300 and "--train-pairs 300" in big["command"]
    with pytest.raises(DataError, match="train_pairs must be a positive integer"):
        make_synth(tmp_path / "c", tasks=["img_cls_colorshape"], train_pairs=0)
