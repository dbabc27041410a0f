"""SynthMMEB as a Hugging Face dataset: `datasets.load_dataset` reads a generated folder
(parquet per task and split -- train, test, compositional -- mapped by the card's front
matter; images decode to PIL), the card lists every task with its chance level and text
floor, the package's loaders give what they gave when this golden digest of their output
(tiny size, seed 0, both evaluation splits) was recorded, and folders of the previous formats
(one held-out split) are read as the compositional split.

Regenerate the golden file after an intended change of the data with
`python tests/test_data_hf.py DATA_FOLDER` (a tiny, seed-0 SynthMMEB folder)."""

import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from plume_lite.data import card
from plume_lite.data.mmeb import load_eval_tasks, load_train_pairs
from plume_lite.data.storage import (
    BEIR_COLUMNS,
    INSTRUCT_COLUMNS,
    TRAIN_COLUMNS,
    DataError,
    hf_feature,
    read_rows,
    split_columns,
    write_parquet,
)
from plume_lite.data.synth import make_synth, read_manifest

GOLDEN = Path(__file__).with_name("test_data_hf_golden.json")


def canon(obj, root: str):
    """Loader output as plain JSON, media paths relative to the data folder ($DATA/...)."""
    if dataclasses.is_dataclass(obj):
        return canon(dataclasses.asdict(obj), root)
    if isinstance(obj, dict):
        return {str(k): canon(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canon(v, root) for v in obj]
    if isinstance(obj, str) and obj.startswith(root + "/"):
        return "$DATA/" + obj[len(root) + 1 :]
    return obj


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def loader_outputs(folder, tasks=None, split="test"):
    """({task: [canonical TrainPair]}, {task: canonical EvalTask of `split`})."""
    root = str(Path(folder).resolve())
    train, evals = {}, {}
    for p in load_train_pairs(folder, tasks=tasks):
        train.setdefault(p.task, []).append(canon(p, root))
    for t in load_eval_tasks(folder, tasks=tasks, split=split):
        evals[t.name] = canon(t, root)
    return train, evals


def golden(folder) -> dict:
    train, evals = loader_outputs(folder)
    _, held_out = loader_outputs(folder, split="compositional")
    out = {
        "size": "tiny",
        "seed": 0,
        "train": {k: digest(v) for k, v in train.items()},
        "train_sample": {k: v[0] for k, v in train.items()},
    }
    for name, tasks in (("eval", evals), ("eval_compositional", held_out)):
        out[name] = {k: digest(v) for k, v in tasks.items()}
        out[f"{name}_sample"] = {
            k: {
                "queries": v["queries"][:1],
                "qrels": v["qrels"][:2],
                "n_candidates": len(v["candidates"]),
                "query_candidates": (v["query_candidates"] or [None])[:1],
            }
            for k, v in tasks.items()
        }
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory.mktemp("hf") / "SynthMMEB", size="tiny", seed=0)


@pytest.fixture(scope="module")
def manifest(synth):
    return read_manifest(synth)


@pytest.fixture(scope="module")
def front_matter(synth):
    text = (synth / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture(scope="module")
def load(synth, tmp_path_factory):
    from datasets import load_dataset

    cache = tmp_path_factory.mktemp("hf_cache")
    return lambda *a, **k: load_dataset(str(synth), *a, cache_dir=str(cache), **k)


def test_load_dataset_reads_a_task_with_images_as_pil(load, synth):
    ds = load("img_qa_chart")
    assert sorted(ds) == ["compositional", "test", "train"]
    assert (len(ds["train"]), len(ds["test"]), len(ds["compositional"])) == (120, 32, 32)
    assert ds["test"]["qry_img_path"] != ds["compositional"]["qry_img_path"]
    row = load("img_qa_chart", split="test")[0]
    assert isinstance(row["qry_image"], Image.Image) and row["qry_image"].size == (64, 64)
    with Image.open(synth / row["qry_img_path"]) as f:  # the embedded image is the media file
        assert np.array_equal(np.asarray(row["qry_image"]), np.asarray(f.convert(row["qry_image"].mode)))
    assert row["tgt_text"][0] and row["qry"] is None  # a test row leaves the train columns null
    pair = ds["train"][0]
    assert isinstance(pair["qry_image"], Image.Image) and pair["qry_rationale"].count(".") >= 2
    t2i = load("img_ret_t2i", split="test")[0]
    assert all(isinstance(im, Image.Image) for im in t2i["tgt_image"])
    assert len(t2i["tgt_image"]) == len(t2i["tgt_img_path"])


def test_load_dataset_reads_videos_and_beir_document_sets_by_path(load, synth):
    vid = load("vid_ret_t2v", split="test")[0]
    assert all((synth / p).is_file() and p.endswith(".mp4") for p in vid["tgt_video_path"])
    ids = {}
    for split in ("test", "compositional"):
        queries = load("doc_ret_chart", split=split)
        corpus = load("doc_ret_chart-corpus", split=split)
        qrels = load("doc_ret_chart-qrels", split=split)
        assert len(queries) == 32 and {r["score"] for r in qrels} == {1, 2}
        assert all((synth / r["pdf_path"]).is_file() for r in corpus)
        assert {r["corpus-id"] for r in qrels} <= set(corpus["corpus-id"])
        assert set(qrels["query-id"]) <= set(queries["query-id"])
        ids[split] = set(corpus["corpus-id"])
    assert not ids["test"] & ids["compositional"]  # each split has its own pages
    default = load(split="test")  # the first task is the default config
    assert len(default) == 32 and "qry_image" in default.features


def test_card_front_matter_lists_every_task_and_its_files(front_matter, manifest, synth):
    assert front_matter["license"] == "apache-2.0" and manifest["license"] == "apache-2.0"
    configs = {c["config_name"]: c for c in front_matter["configs"]}
    for e in manifest["tasks"]:
        splits = {f["split"]: f["path"] for f in configs[e["name"]]["data_files"]}
        assert sorted(splits) == ["compositional", "test", "train"]
        if e["format"] == "beir":
            for part in ("corpus", "qrels"):
                parts = configs[f"{e['name']}-{part}"]["data_files"]
                assert sorted(f["split"] for f in parts) == ["compositional", "test"]
    assert sum(bool(c.get("default")) for c in configs.values()) == 1
    listed = [f["path"] for c in configs.values() for f in c["data_files"]]
    assert all((synth / p).is_file() for p in listed)
    assert sorted(listed) == sorted(str(p.relative_to(synth)) for p in synth.rglob("*.parquet"))
    text = (synth / "README.md").read_text(encoding="utf-8")
    assert "plume-lite synth --out SynthMMEB --size tiny --seed 0" in text
    for e in manifest["tasks"]:
        line = next(x for x in text.splitlines() if x.startswith(f"| `{e['name']}`"))
        for value in (e["modality"], e["meta_task"], e["protocol"], e["metric"], f"{e['chance']:.2f}"):
            assert f"| {value} |" in line
        sizes = f"| {e['n_train']} | {e['n_test_queries']} | {e['n_compositional_queries']} |"
        assert sizes in line and f"| {e['chance']:.2f} | {e['text_floor']:.2f} |" in line
    assert "| chance | text floor |" in text


def test_chance_levels_are_the_expected_scores_of_random_rankings(manifest, synth):
    for e in manifest["tasks"]:
        for split in e["splits"].values():
            assert 0 < split["chance"] < 100
            if e["protocol"] == "local":  # one positive among the query's own candidates
                assert split["chance"] == pytest.approx(100 / split["candidates_per_query"], abs=0.01)
            elif e["metric"] == "hit@1":  # one positive in the pool
                assert split["chance"] == pytest.approx(100 / split["n_candidates"], abs=0.01)
    # measured: the evaluator with random embeddings, averaged over many draws
    from plume_lite.evaluation.protocol import evaluate

    class RandomEncoder:
        checkpoint_id = "random"

        def __init__(self):
            self.gen = torch.Generator().manual_seed(0)

        def encode(self, items, **_):
            x = torch.randn(len(items), 64, generator=self.gen)
            return torch.nn.functional.normalize(x, dim=-1)

    names = ["img_cls_colorshape", "img_ret_t2i", "doc_ret_chart"]
    tasks = load_eval_tasks(synth, tasks=names)
    enc = RandomEncoder()
    runs = [evaluate(enc, tasks, progress=False, cache_dir=None)["tasks"] for _ in range(40)]
    chance = {e["name"]: e["chance"] for e in manifest["tasks"]}
    for n in names:
        measured = np.mean([r[n]["score"] for r in runs])
        assert measured == pytest.approx(chance[n], abs=max(0.3 * chance[n], 1.0)), n


def test_loaders_give_what_the_save_to_disk_format_gave(synth):
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = golden(synth)
    for part in ("train_sample", "eval_sample", "eval_compositional_sample"):  # readable differences first
        assert got[part] == want[part]
    for part in ("train", "eval", "eval_compositional"):
        assert got[part] == want[part]


def _write_old_format(new: Path, old: Path, names: list[str], fmt: str) -> None:
    """A copy of `new` (these tasks) in a previous format, whose one evaluation split (named
    "test") held out attribute combinations: here the new folder's compositional split.
    synthmmeb/1: save_to_disk tables; synthmmeb/2: parquet files named as today."""
    from datasets import Dataset

    manifest = read_manifest(new)
    manifest["format"] = fmt
    manifest["tasks"] = [e for e in manifest["tasks"] if e["name"] in names]
    for e in manifest["tasks"]:
        now = card.data_files(e)
        then = card.data_files({k: v for k, v in e.items() if k != "splits"})
        tables = [(now[e["name"]]["train"], then[e["name"]]["train"], TRAIN_COLUMNS)]
        if e["format"] == "beir":
            for part in BEIR_COLUMNS:
                config = e["name"] if part == "queries" else f"{e['name']}-{part}"
                tables.append((now[config]["compositional"], then[config]["test"], BEIR_COLUMNS[part]))
        else:
            tables.append((now[e["name"]]["compositional"], then[e["name"]]["test"], INSTRUCT_COLUMNS))
        for src, dst, columns in tables:
            if fmt == "synthmmeb/2":
                (old / dst).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(new / src, old / dst)
            else:
                Dataset.from_list(read_rows(new / src, columns=columns)).save_to_disk(
                    str(old / Path(dst).parent)
                )
        e.pop("splits")
    (old / "tasks.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("fmt", ["synthmmeb/1", "synthmmeb/2"])
def test_folders_of_the_previous_formats_load_as_the_compositional_split(synth, tmp_path, fmt):
    names = ["img_ground_ref", "vid_mr_motion", "doc_ret_layout"]
    _write_old_format(synth, tmp_path / "old", names, fmt)
    old = loader_outputs(tmp_path / "old", split="compositional")
    assert old == loader_outputs(synth, tasks=names, split="compositional")
    with pytest.raises(DataError, match="no i.i.d. test split"):  # scores would not compare
        load_eval_tasks(tmp_path / "old")


def test_ensure_synth_generates_a_folder_of_the_previous_format_anew(tmp_path, monkeypatch):
    from plume_lite.data import synth as synth_mod

    calls = []

    def fake(out, size, seed):
        calls.append((size, seed))
        manifest = {"format": synth_mod.FORMAT, "size": size, "seed": seed, "tasks": []}
        (Path(out) / "tasks.json").write_text(json.dumps(manifest))

    monkeypatch.setattr(synth_mod, "make_synth", fake)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "tasks.json").write_text(json.dumps({"format": "synthmmeb/1", "tasks": []}))
    assert synth_mod.ensure_synth(folder, "tiny", 3) == folder and calls == [("tiny", 3)]
    synth_mod.ensure_synth(folder, "tiny", 3)  # now current: kept
    assert calls == [("tiny", 3)] and read_manifest(folder)["format"] == synth_mod.FORMAT
    synth_mod.ensure_synth(folder, "lite", 3)  # another size: generated anew
    assert calls == [("tiny", 3), ("lite", 3)]


def test_parquet_tables_are_deterministic_and_carry_datasets_features(tmp_path):
    from datasets import Features

    columns = split_columns("mmeb_instruct")
    (tmp_path / "media").mkdir()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "media/a.png")
    rows = [
        {"qry_text": "q", "qry_img_path": "media/a.png", "tgt_text": ["x", "y"], "tgt_img_path": ["", ""]}
    ]
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for path in (a, b):
        write_parquet(rows, path, columns, INSTRUCT_COLUMNS, tmp_path)
    assert a.read_bytes() == b.read_bytes()
    import pyarrow.parquet as pq

    schema = pq.read_schema(a)
    features = Features.from_arrow_schema(schema)
    assert features.to_dict() == {k: hf_feature(t) for k, t in columns.items()}
    assert type(features["qry_image"]).__name__ == "Image"
    (row,) = read_rows(a, columns=INSTRUCT_COLUMNS)
    assert set(row) == set(INSTRUCT_COLUMNS) and row["qry_video_path"] == "" and row["tgt_video_path"] == []
    assert card.data_files({"name": "t", "train": "train/t", "eval": "eval/t"}) == {
        "t": {"train": "train/t/train-00000-of-00001.parquet", "test": "eval/t/test-00000-of-00001.parquet"}
    }


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(golden(sys.argv[1]), indent=1, sort_keys=True) + "\n", encoding="utf-8")
