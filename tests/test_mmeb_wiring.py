"""The MMEB-v2 registry and text builders wired into the loaders (spec §2.2, §6, D14, D15):
BEIR qrels merge as the authors read them (a pair listed twice keeps its higher score),
hub visdoc repos are read from the registry's split (VisRAG's is "train") and named by
their YAML key, and under text_protocol plume / ume / vlm2vec every item of an image or
visual-document task holds the authors' parser string as its text, with no instruction.
Expected strings are written out by hand from §2.2."""

import argparse
import json
from pathlib import Path

import datasets
import pytest
from PIL import Image

from plume_lite.data import sources
from plume_lite.data.mmeb import load_eval_tasks
from plume_lite.data.storage import DataError

QRY_INST = "Find a document image that matches the given query:"  # VisRAG's, TIGER's ViDoRe's
TGT_INST = "Understand the content of the provided document image."


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def _beir(folder: Path, qrels) -> Path:
    """A local BEIR set: three page images, three queries, the given qrels rows."""
    for i, color in enumerate(((250, 0, 0), (0, 250, 0), (0, 0, 250))):
        (folder / "pages").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 28), color).save(folder / f"pages/p{i}.png")
    pages = [{"corpus-id": f"p{i}", "image_path": f"pages/p{i}.png"} for i in range(3)]
    _jsonl(folder / "corpus.jsonl", pages)
    queries = [("q1", "red and green pages"), ("q2", "an unjudged page"), ("q3", "blue page")]
    _jsonl(folder / "queries.jsonl", [{"query-id": q, "query": text} for q, text in queries])
    _jsonl(folder / "qrels.jsonl", qrels)
    return folder


def _row(q, d, score):
    return {"query-id": q, "corpus-id": d, "score": score}


@pytest.fixture
def vidore(tmp_path):
    """A local copy of a ViDoRe task, under its YAML key (parser `vidore`)."""
    return _beir(tmp_path / "ViDoRe_arxivqa", [_row("q1", "p0", 1), _row("q3", "p2", 1)])


def test_duplicate_qrels_keep_their_highest_score(tmp_path):
    qrels = [
        _row("q1", "p0", 1),
        _row("q1", "p0", 2),  # listed again, higher: 2
        _row("q1", "p1", 2),
        _row("q1", "p1", 1),  # listed again, lower: still 2 (keep-last would say 1)
        _row("q2", "p2", 0),  # not relevant: q2 has no relevant page and is skipped
        _row("q3", "p2", 1),
        _row("q3", "gone", 3),  # not in the corpus
    ]
    (task,) = load_eval_tasks(_beir(tmp_path / "toy_beir", qrels))
    assert [q["text"] for q in task.queries] == ["red and green pages", "blue page"]
    assert task.qrels == [{0: 2, 1: 2}, {2: 1}]


def test_a_beir_row_without_a_score_counts_one(tmp_path):
    (task,) = load_eval_tasks(_beir(tmp_path / "toy_beir", [{"query-id": "q3", "corpus-id": "p1"}]))
    assert task.qrels == [{1: 1}]


class FakeHub:
    """Stands in for `datasets.load_dataset`: records each call, serves one BEIR task."""

    def __init__(self):
        self.calls = []
        self.tables = {
            "queries": [{"query-id": "q1", "query": "What is the trend?"}, {"query-id": "q2", "query": "x"}],
            "corpus": [{"corpus-id": "c1", "image": Image.new("RGB", (20, 28), (9, 9, 9))}],
            "qrels": [_row("q1", "c1", 1)],
        }

    def __call__(self, repo, config=None, split=None, **kw):
        self.calls.append((repo, config, split))
        return self.tables[config]


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(datasets, "load_dataset", fake)
    return fake


def test_visrag_is_read_from_its_train_split_and_named_by_its_yaml_key(hub):
    repo = "openbmb/VisRAG-Ret-Test-ArxivQA"
    (task,) = load_eval_tasks(repo)
    assert hub.calls == [(repo, "queries", "train"), (repo, "corpus", "train"), (repo, "qrels", "train")]
    assert (task.name, task.modality, task.meta_task) == ("VisRAG_ArxivQA", "visdoc", "VR")
    assert task.qrels == [{0: 1}] and task.queries[0]["text"] == "What is the trend?"
    hub.calls.clear()
    (plume,) = load_eval_tasks(repo, tasks=["VisRAG_ArxivQA"], text_protocol="plume")
    assert plume.queries == [{"text": f"{QRY_INST} What is the trend?"}]  # "Find a document ...:"
    assert plume.candidates[0]["text"] == TGT_INST
    assert [c[2] for c in hub.calls] == ["train"] * 3


def test_other_hub_beir_repos_read_test(hub):
    (vidore,) = load_eval_tasks("vidore/arxivqa_test_subsampled_beir")
    assert vidore.name == "ViDoRe_arxivqa" and vidore.meta_task == "VDRv1"
    (other,) = load_eval_tasks("someone/my_beir_set")  # not an MMEB-v2 repo: its own name
    assert other.name == "my_beir_set" and other.meta_task == "vidore"
    assert {c[2] for c in hub.calls} == {"test"}


def test_a_hub_beir_repo_asked_for_another_task_says_which_it_holds(hub):
    with pytest.raises(DataError, match="holds the one task 'VisRAG_ArxivQA'"):
        load_eval_tasks("openbmb/VisRAG-Ret-Test-ArxivQA", tasks=["VisRAG-Ret-Test-ArxivQA"])
    assert hub.calls == []  # refused before downloading


def test_mmeb_test_instruct_configs_are_the_yaml_dataset_names(hub):
    hub.tables["VisDial"] = []
    (task,) = load_eval_tasks(sources.MMEB_TEST_REPO, tasks=["VisDial"])
    assert task.name == "VisDial" and task.meta_task == "retrieval"
    assert hub.calls == [(sources.MMEB_TEST_REPO, "VisDial", "test")]


def test_vidore_instructions_are_empty_under_plume_and_tigers_under_vlm2vec(vidore):
    (plume,) = load_eval_tasks(vidore, text_protocol="plume")
    assert plume.queries == [{"text": "red and green pages"}, {"text": "blue page"}]  # instruction ""
    assert all(set(c) == {"image"} for c in plume.candidates)  # "<|image_pad|> " stripped: no text
    (ume,) = load_eval_tasks(vidore, text_protocol="ume")
    assert ume.queries == plume.queries and ume.candidates == plume.candidates
    (tiger,) = load_eval_tasks(vidore, text_protocol="vlm2vec")
    assert tiger.queries[1] == {"text": "Find a document image that matches the given query: blue page"}
    assert tiger.candidates[2]["text"] == f"<|image_pad|> {TGT_INST}"
    assert Path(tiger.candidates[2]["image"]) == vidore / "pages/p2.png"
    assert "instruction" not in tiger.candidates[2]
    (lite,) = load_eval_tasks(vidore)  # the default: plume_lite's texts, as before
    assert lite.queries[1] == {"instruction": QRY_INST, "text": "blue page"}
    assert lite.candidates[2]["instruction"] == TGT_INST


def test_a_beir_set_outside_the_registry_keeps_plume_lite_texts(tmp_path):
    folder = _beir(tmp_path / "my_docs", [_row("q3", "p2", 1)])
    (task,) = load_eval_tasks(folder, text_protocol="plume")
    assert task.queries == [{"instruction": QRY_INST, "text": "blue page"}]


@pytest.fixture
def instruct(tmp_path):
    """MMEB_Test_Instruct-style rows of OK-VQA (image_qa) and VisDial (image_t2i), images
    under images/ as the rows name them."""
    for name in ("okvqa/1.jpg", "visdial/a.jpg", "visdial/b.jpg"):
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (120, 60, 30)).save(tmp_path / "images" / name)
    okvqa = {
        "qry_inst": "<|image_1|> Represent the given image with the following question:",
        "qry_text": "Look at the bowl. \nWhat is in it?",
        "qry_img_path": "okvqa/1.jpg",
        "tgt_inst": "",
        "tgt_text": ["soup", "rice"],
        "tgt_img_path": ["", ""],
    }
    visdial = {
        "qry_inst": "Represent the given dialogue about an image, which is used for image retrieval:",
        "qry_text": "Q: is it a cat? A: yes \nQ: what color? A: black",
        "qry_img_path": "",
        "tgt_inst": "<|image_1|>\nRepresent the given image.",
        "tgt_text": ["", ""],
        "tgt_img_path": ["visdial/a.jpg", "visdial/b.jpg"],
    }
    _jsonl(tmp_path / "OK-VQA/test.jsonl", [okvqa])
    _jsonl(tmp_path / "VisDial/test.jsonl", [visdial])
    return tmp_path


def test_an_image_qa_row_under_plume_holds_the_parsers_string(instruct):
    (task,) = load_eval_tasks(instruct, tasks=["OK-VQA"], text_protocol="plume")
    (q,) = task.queries
    # pit("\n" + inst, text, img) = "<|image_pad|> \nRepresent ...: Look at the bowl. \nWhat is in it?",
    # " \n" -> "\n", + "\n"; plume strips the image token and the ends
    question = "Represent the given image with the following question:"
    assert q["text"] == f"{question} Look at the bowl.\nWhat is in it?"
    assert q.get("instruction", "") == "" and Path(q["image"]) == instruct / "images/okvqa/1.jpg"
    assert task.candidates == [{"text": "soup"}, {"text": "rice"}] and task.qrels == [{0: 1}]
    (tiger,) = load_eval_tasks(instruct, tasks=["OK-VQA"], text_protocol="vlm2vec")
    assert tiger.queries[0]["text"] == (f"<|image_pad|>\n{question} Look at the bowl.\nWhat is in it?\n")
    (lite,) = load_eval_tasks(instruct, tasks=["OK-VQA"])  # the default keeps " \n" and the split
    assert lite.queries[0]["instruction"] == "Represent the given image with the following question:"
    assert lite.queries[0]["text"] == "Look at the bowl. \nWhat is in it?"


def test_visdial_keeps_its_extra_newline_raw_and_its_image_candidates(instruct):
    (tiger,) = load_eval_tasks(instruct, tasks=["VisDial"], text_protocol="vlm2vec")
    assert tiger.queries == [
        {
            "text": "Represent the given dialogue about an image, which is used for image retrieval: "
            "Q: is it a cat? A: yes \nQ: what color? A: black\n\n"
        }
    ]
    assert [c["text"] for c in tiger.candidates] == ["<|image_pad|>\nRepresent the given image.\n"] * 2
    assert [Path(c["image"]).name for c in tiger.candidates] == ["a.jpg", "b.jpg"]
    (plume,) = load_eval_tasks(instruct, tasks=["VisDial"], text_protocol="plume")
    assert plume.queries[0]["text"] == (
        "Represent the given dialogue about an image, which is used for image retrieval: "
        "Q: is it a cat? A: yes \nQ: what color? A: black"
    )
    assert [c["text"] for c in plume.candidates] == ["Represent the given image."] * 2


def test_an_unknown_text_protocol_is_one_data_error(vidore):
    with pytest.raises(DataError, match="unknown text protocol 'authors'"):
        load_eval_tasks(vidore, text_protocol="authors")


def test_the_registry_files_smthsmthv2_as_local_classification():
    assert sources.real_meta("SmthSmthV2", has_video=True)["protocol"] == "local"
    assert sources.VIDEO_TASKS[("classification", "local")] == ["SmthSmthV2"]
    assert "SSv2" not in {n for names in sources.VIDEO_TASKS.values() for n in names}
    assert sum(map(len, sources.VIDEO_TASKS.values())) == 18
    assert sum(map(len, sources.IMAGE_TASKS.values())) == 36


def test_eval_cli_takes_a_text_protocol():
    from plume_lite.evaluation import cli as eval_cli

    parser = argparse.ArgumentParser()
    eval_cli.add_cli(parser.add_subparsers(dest="command"))
    base = ["eval", "--checkpoint", "c", "--data", "d", "--out", "o.json"]
    assert parser.parse_args(base).text_protocol is None  # decided with --baseline:
    assert eval_cli.effective_text_protocol(None, None) == "plume_lite"
    assert eval_cli.effective_text_protocol(None, "ume_r1") == "ume"  # the harness's own strings
    assert eval_cli.effective_text_protocol("plume", "ume_r1") == "plume"  # asked for wins
    assert parser.parse_args([*base, "--text-protocol", "vlm2vec"]).text_protocol == "vlm2vec"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--text-protocol", "authors"])
