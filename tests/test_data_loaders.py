"""Loaders for the real sources, each read from a small fixture written in that source's
own layout: MMEB-train, UME-sft-train, MMEB_Test_Instruct (+ image folder), video eval
with frame folders, BEIR document sets (ViDoRe parquet with images; classic jsonl/tsv)."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from plume_lite.data.mmeb import load_eval_tasks, load_train_pairs
from plume_lite.data.storage import DataError
from plume_lite.media import load_image, load_video

UME_PROMPT = (
    "\n<disc_emb>\nRepresent the above input text, images, videos, or any combination "
    "of the three as embeddings. First output the thinking process in <think> </think> "
    "tags and then summarize the entire input in a word or sentence. Finally, use the "
    "<gen_emb> tag to represent the entire input."
)


def _img(path: Path, color=(200, 30, 30), size=(32, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _parquet(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _frames(folder: Path, n=10):
    for i in range(n):
        _img(folder / f"{i:05d}.jpg", (i * 20, 100, 50), (24, 24))


@pytest.fixture(scope="module")
def mmeb_train(tmp_path_factory):
    """TIGER-Lab/MMEB-train: <subset>/original-*.parquet, images under images/<subset>/."""
    root = tmp_path_factory.mktemp("MMEB-train")
    _img(root / "images/ImageNet_1K/n01440764_1.jpg")
    _img(root / "images/MSCOCO_t2i/000001.jpg", (20, 20, 200))
    cls = [
        {
            "qry": "<|image_1|>\nRepresent the given image for classification\n",
            "qry_image_path": "images/ImageNet_1K/n01440764_1.jpg",
            "pos_text": "tench",
            "pos_image_path": "",
            "neg_text": "goldfish",
            "neg_image_path": "",
        }
    ] * 3
    _parquet(root / "ImageNet_1K/original-00000-of-00001.parquet", cls)
    _parquet(
        root / "ImageNet_1K/diverse_instruction-00000-of-00001.parquet",
        [dict(cls[0], qry="<|image_1|>\nWhat is in this image?\n")] * 5,
    )
    _parquet(
        root / "MSCOCO_t2i/original-00000-of-00001.parquet",
        [
            {
                "qry": "Find me an everyday image that matches the given caption: a blue square.",
                "qry_image_path": "",
                "pos_text": "<|image_1|>\nRepresent the given image.\n",
                "pos_image_path": "images/MSCOCO_t2i/000001.jpg",
            }
        ],
    )
    return root


def test_mmeb_train_local_layout(mmeb_train):
    pairs = load_train_pairs(mmeb_train)
    assert sorted({p.task for p in pairs}) == ["ImageNet_1K", "MSCOCO_t2i"]
    assert len(pairs) == 4  # the 'original' split, not 'diverse_instruction'
    p = pairs[0]
    assert p.query["text"] == "Represent the given image for classification"
    assert Path(p.query["image"]).is_absolute() and load_image(p.query["image"]).size == (32, 32)
    assert p.positive == {"text": "tench"} and p.negatives == [{"text": "goldfish"}]
    t2i = [p for p in pairs if p.task == "MSCOCO_t2i"][0]
    assert "image" not in t2i.query and Path(t2i.positive["image"]).exists()
    assert t2i.positive["text"] == "Represent the given image."
    assert len(load_train_pairs(mmeb_train, tasks=["ImageNet_1K"], limit=2)) == 2
    with pytest.raises(DataError, match="unknown task"):
        load_train_pairs(mmeb_train, tasks=["Nope"])


@pytest.fixture(scope="module")
def ume(tmp_path_factory, mmeb_train):
    """zhibinlan/UME-sft-train: JSONL records, qry/pos each with conversations and an
    image path or a video frame list, relative to the MMEB-train data folder."""
    _frames(mmeb_train / "llavahound/frames/v_001")
    frames = [f"llavahound/frames/v_001/{i:05d}.jpg" for i in range(10)]
    gpt = "<think>{}</think><answer>{}</answer><gen_emb>"
    recs = [
        {
            "dataset_name": "ImageNet_1K",
            "qry": {
                "conversations": [
                    {
                        "from": "human",
                        "value": "<image>\nRepresent the given image for classification" + UME_PROMPT,
                    },
                    {
                        "from": "gpt",
                        "value": gpt.format("The image shows a fish. A person holds it.", "tench"),
                    },
                ],
                "image": "images/ImageNet_1K/n01440764_1.jpg",
            },
            "pos": {
                "conversations": [
                    {"from": "human", "value": "tench" + UME_PROMPT},
                    {
                        "from": "gpt",
                        "value": gpt.format("The text names a fish. It lives in lakes.", "tench"),
                    },
                ]
            },
        },
        {
            "dataset_name": "llavahound_caption",
            "qry": {
                "conversations": [
                    {"from": "human", "value": "Find a video that matches: a man waves." + UME_PROMPT},
                    {
                        "from": "gpt",
                        "value": "<think>A man is shown. He waves.</think> a man waving<gen_emb>",
                    },
                ]
            },
            "pos": {
                "conversations": [
                    {"from": "human", "value": "<video>\nUnderstand the content of the video." + UME_PROMPT},
                    {
                        "from": "gpt",
                        "value": gpt.format("The clip shows a man. He raises a hand.", "a man waving"),
                    },
                ],
                "video": frames,
            },
        },
    ]
    d = tmp_path_factory.mktemp("UME-sft-train")
    (d / "UME-sft-train.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    (d / "single.json").write_text(json.dumps(recs[:1]))
    return d


def test_ume_sft_jsonl_with_rationales_images_and_frame_lists(ume, mmeb_train):
    pairs = load_train_pairs(ume / "UME-sft-train.jsonl", media_root=mmeb_train)
    img, vid = pairs
    assert (img.task, vid.task) == ("ImageNet_1K", "llavahound_caption")
    assert img.query["text"] == "Represent the given image for classification"
    assert Path(img.query["image"]).exists()
    assert img.query_rationale == "The image shows a fish. A person holds it."
    assert img.query_answer == "tench" and img.positive == {"text": "tench"}
    assert img.positive_rationale.startswith("The text names a fish")
    assert vid.query_answer == "a man waving"  # no <answer> tags: the text after </think>
    assert len(vid.positive["video"]) == 10 and len(load_video(vid.positive["video"])) == 8
    from_folder = load_train_pairs(ume, media_root=mmeb_train)  # folder: all record files
    assert len(from_folder) == 3


@pytest.fixture(scope="module")
def mmeb_eval(tmp_path_factory):
    """ziyjiang/MMEB_Test_Instruct: <task>/test-*.parquet, images under eval_images/;
    a video task with frame folders and an mp4; a ViDoRe-style BEIR set; classic BEIR."""
    import av
    import numpy as np
    from datasets import Dataset, Features, Value
    from datasets import Image as HFImage

    root = tmp_path_factory.mktemp("MMEB-eval")
    _img(root / "eval_images/ImageNet-1K/a.jpg")
    _img(root / "eval_images/ImageNet-1K/b.jpg", (0, 0, 200))
    for n in ("c1", "c2"):
        _img(root / f"eval_images/MSCOCO_t2i/{n}.jpg")
    labels = ["tench", "goldfish", "shark"]
    _parquet(
        root / "ImageNet-1K/test-00000-of-00001.parquet",
        [
            {
                "qry_inst": "<|image_1|>\nRepresent the given image for classification",
                "qry_text": "",
                "qry_img_path": "ImageNet-1K/a.jpg",
                "tgt_inst": "",
                "tgt_text": labels,
                "tgt_img_path": ["", "", ""],
            },
            {
                "qry_inst": "<|image_1|>\nRepresent the given image for classification",
                "qry_text": "",
                "qry_img_path": "ImageNet-1K/b.jpg",
                "tgt_inst": "",
                "tgt_text": ["shark", "tench", "eel"],
                "tgt_img_path": ["", "", ""],
            },
        ],
    )
    _parquet(
        root / "MSCOCO_t2i/test-00000-of-00001.parquet",
        [
            {
                "qry_inst": "Find me an everyday image that matches the given caption:",
                "qry_text": "a red square",
                "qry_img_path": "",
                "tgt_inst": "<|image_1|>\nRepresent the given image.",
                "tgt_text": ["", ""],
                "tgt_img_path": ["MSCOCO_t2i/c1.jpg", "MSCOCO_t2i/c2.jpg"],
            }
        ],
    )
    # video eval: MSR-VTT rows whose candidates are frame folders (and one mp4)
    for v in ("video7", "video8"):
        _frames(root / "frames" / v)
    (root / "videos").mkdir()
    with av.open(str(root / "videos/video9.mp4"), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=8)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for i in range(8):
            fr = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20, np.uint8), format="rgb24")
            for p in s.encode(fr):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    rows = [
        {
            "qry_inst": "Find a video that contains the following visual content:",
            "qry_text": cap,
            "qry_img_path": "",
            "qry_video_path": "",
            "tgt_inst": "Understand the content of the provided video.",
            "tgt_text": [""],
            "tgt_img_path": [""],
            "tgt_video_path": [vid],
        }
        for cap, vid in [
            ("a man cooks", "frames/video7"),
            ("a dog runs", "frames/video8"),
            ("a car drives", "videos/video9.mp4"),
        ]
    ]
    (root / "MSR-VTT").mkdir()
    (root / "MSR-VTT/test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    # ViDoRe-style BEIR: parquet per part, corpus images embedded as bytes
    beir = root / "ViDoRe_toy"
    pages = [Image.new("RGB", (40, 50), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    Dataset.from_dict(
        {"corpus-id": [10, 11, 12], "image": pages},
        features=Features({"corpus-id": Value("int64"), "image": HFImage()}),
    ).to_parquet(str(beir / "corpus/test-00000-of-00001.parquet"))
    _parquet(
        beir / "queries/test-00000-of-00001.parquet",
        [
            {"query-id": 1, "query": "red page"},
            {"query-id": 2, "query": "blue page"},
            {"query-id": 3, "query": "no relevant page"},
        ],
    )
    _parquet(
        beir / "qrels/test-00000-of-00001.parquet",
        [
            {"query-id": 1, "corpus-id": 10, "score": 2},
            {"query-id": 1, "corpus-id": 11, "score": 1},
            {"query-id": 2, "corpus-id": 12, "score": 1},
            {"query-id": 3, "corpus-id": 99, "score": 1},
        ],
    )
    # classic BEIR text set: corpus.jsonl, queries.jsonl, qrels/test.tsv
    text = root / "beir_text"
    text.mkdir()
    (text / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"doc {i}"}) for i in range(3))
    )
    (text / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": "doc two?"}))
    (text / "qrels").mkdir()
    (text / "qrels/test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td2\t1\n")
    return root


def test_mmeb_test_instruct_image_tasks(mmeb_eval):
    tasks = {t.name: t for t in load_eval_tasks(mmeb_eval, tasks=["ImageNet-1K", "MSCOCO_t2i"])}
    cls = tasks["ImageNet-1K"]
    assert (cls.modality, cls.meta_task, cls.protocol, cls.metric) == (
        "image",
        "classification",
        "local",
        "hit@1",
    )
    assert [c["text"] for c in cls.candidates] == ["tench", "goldfish", "shark", "eel"]
    assert cls.query_candidates == [[0, 1, 2], [2, 0, 3]] and cls.qrels == [{0: 1}, {2: 1}]
    q = cls.queries[0]
    assert q["instruction"] == "Represent the given image for classification"
    assert load_image(q["image"]).getpixel((0, 0))[0] > 150  # found under eval_images/
    ret = tasks["MSCOCO_t2i"]
    assert ret.meta_task == "retrieval" and ret.queries[0]["text"] == "a red square"
    assert all(Path(c["image"]).exists() for c in ret.candidates)
    assert ret.candidates[0]["instruction"] == "Represent the given image."


def test_video_eval_with_frame_folders(mmeb_eval):
    (t,) = load_eval_tasks(mmeb_eval, tasks=["MSR-VTT"])
    assert (t.modality, t.meta_task, t.protocol) == ("video", "retrieval", "global")
    assert t.query_candidates is None and t.qrels == [{0: 1}, {1: 1}, {2: 1}]
    folder, mp4 = t.candidates[0]["video"], t.candidates[2]["video"]
    assert isinstance(folder, list) and len(folder) == 10
    assert mp4.endswith("video9.mp4")
    assert len(load_video(folder)) == 8 and len(load_video(mp4)) == 8


def test_beir_document_sets(mmeb_eval):
    (vd,) = load_eval_tasks(mmeb_eval / "ViDoRe_toy")
    assert (vd.modality, vd.protocol, vd.metric) == ("visdoc", "global", "ndcg@5")
    assert len(vd.queries) == 2  # the query without a relevant page is dropped
    assert vd.qrels == [{0: 2, 1: 1}, {2: 1}]
    assert vd.queries[0]["text"] == "red page"
    assert load_image(vd.candidates[0]["image"]).getpixel((1, 1))[0] > 200
    (txt,) = load_eval_tasks(mmeb_eval / "beir_text")
    assert txt.candidates[2]["text"] == "doc 2" and txt.qrels == [{2: 1}]


def test_a_folder_of_tasks_loads_all_of_them(mmeb_eval):
    names = sorted(t.name for t in load_eval_tasks(mmeb_eval))
    assert names == ["ImageNet-1K", "MSCOCO_t2i", "MSR-VTT", "ViDoRe_toy", "beir_text"]


def test_real_sources_have_one_test_split(mmeb_eval):
    names = [t.name for t in load_eval_tasks(mmeb_eval, split="test")]
    assert names == [t.name for t in load_eval_tasks(mmeb_eval)]
    with pytest.raises(DataError, match="exists only in SynthMMEB folders"):
        load_eval_tasks(mmeb_eval, split="compositional")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_eval_tasks(mmeb_eval, split="dev")


def test_bad_sources_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_train_pairs(tmp_path / "missing")
    with pytest.raises(DataError, match="no training tables"):
        load_train_pairs(tmp_path)
    with pytest.raises(DataError, match="no evaluation tables"):
        load_eval_tasks(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"qry": \n')
    with pytest.raises(DataError, match="line 1 is not valid JSON"):
        load_train_pairs(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="hub"):  # offline: the hub path fails as one line
        load_eval_tasks("ziyjiang/MMEB_Test_Instruct", tasks=["ImageNet-1K"])
