"""The MMEB-v2 task registry (RELEASED_CHECKPOINTS.md §6; §7 item 11): 36/18/24 tasks under
the YAML keys with their eval types, SmthSmthV2 local, VisRAG's hub split, the authors'
qrels max-merge and the paper's visdoc meta-tasks. Expected lists are the spec's."""

import json

import pytest

from plume_lite.data import load_eval_tasks, mmeb_registry
from plume_lite.data.storage import DataError

IMAGE = {
    "image_cls": "ImageNet-1K N24News HatefulMemes VOC2007 SUN397 Place365 ImageNet-A ImageNet-R "
    "ObjectNet Country211",
    "image_qa": "OK-VQA A-OKVQA DocVQA InfographicsVQA ChartQA Visual7W ScienceQA VizWiz GQA TextVQA",
    "image_i2t": "MSCOCO_i2t VisualNews_i2t",
    "image_t2i": "VisDial MSCOCO_t2i VisualNews_t2i WebQA EDIS Wiki-SS-NQ",
    "image_i2i_vg": "CIRR NIGHTS OVEN FashionIQ MSCOCO RefCOCO RefCOCO-Matching Visual7W-Pointing",
}
VIDEO_LOCAL = (
    "SmthSmthV2 QVHighlight Charades-STA MomentSeeker Video-MME NExTQA EgoSchema MVBench ActivityNetQA"
)
VIDEO_GLOBAL = "HMDB51 UCF101 K700 Breakfast MSR-VTT MSVD DiDeMo YouCook2 VATEX"
VDRV1 = [
    "ViDoRe_arxivqa",
    "ViDoRe_docvqa",
    "ViDoRe_infovqa",
    "ViDoRe_tabfquad",
    "ViDoRe_tatdqa",
    "ViDoRe_shiftproject",
    "ViDoRe_syntheticDocQA_artificial_intelligence",
    "ViDoRe_syntheticDocQA_energy",
    "ViDoRe_syntheticDocQA_government_reports",
    "ViDoRe_syntheticDocQA_healthcare_industry",
]
VDRV2 = [
    "ViDoRe_esg_reports_human_labeled_v2",
    "ViDoRe_biomedical_lectures_v2_multilingual",
    "ViDoRe_economics_reports_v2_multilingual",
    "ViDoRe_esg_reports_v2_multilingual",
]
VR = "VisRAG_ArxivQA VisRAG_ChartQA VisRAG_MP-DocVQA VisRAG_SlideVQA VisRAG_InfoVQA VisRAG_PlotQA".split()
OOD = ["ViDoSeek-page", "ViDoSeek-doc", "MMLongBench-doc", "MMLongBench-page"]


def test_the_registry_has_36_image_18_video_and_24_visdoc_tasks():
    assert len(mmeb_registry.registry()) == 78
    assert [len(mmeb_registry.tasks(m)) for m in ("image", "video", "visdoc")] == [36, 18, 24]


def test_image_tasks_have_their_parsers_and_are_all_local():
    by_parser = {}
    for t in mmeb_registry.tasks("image"):
        by_parser.setdefault(t.parser, []).append(t.name)
        assert (t.eval_type, t.metric, t.hub_repo, t.hub_split) == (
            "local",
            "hit@1",
            "ziyjiang/MMEB_Test_Instruct",
            "test",
        )
    assert by_parser == {parser: names.split() for parser, names in IMAGE.items()}


def test_video_eval_types_follow_the_yaml_and_smthsmthv2_is_local():
    video = {t.name: t for t in mmeb_registry.tasks("video")}
    assert sorted(n for n, t in video.items() if t.eval_type == "local") == sorted(VIDEO_LOCAL.split())
    assert sorted(n for n, t in video.items() if t.eval_type == "global") == sorted(VIDEO_GLOBAL.split())
    ssv2 = mmeb_registry.get("SmthSmthV2")
    assert (ssv2.parser, ssv2.eval_type, ssv2.meta_task) == ("ssv2", "local", "classification")
    assert "SSv2" not in mmeb_registry.registry()  # plume_lite's old name is not a YAML key
    assert mmeb_registry.get("K700").dataset_name == "Kinetics-700"


def test_visdoc_tasks_are_global_and_visrag_reads_the_train_split():
    for t in mmeb_registry.tasks("visdoc"):
        assert (t.eval_type, t.metric) == ("global", "ndcg@5")
        assert t.parser == ("visrag" if t.name in VR else "vidore")
        assert t.hub_split == ("train" if t.name in VR else "test")
    assert mmeb_registry.get("VisRAG_ChartQA").hub_repo == "openbmb/VisRAG-Ret-Test-ChartQA"
    assert mmeb_registry.for_hub_repo("openbmb/VisRAG-Ret-Test-ChartQA").name == "VisRAG_ChartQA"
    assert mmeb_registry.get("ViDoSeek-page").hub_repo == "VLM2Vec/ViDoSeek-page"  # the bundle's pre-fix repo
    assert mmeb_registry.for_hub_repo("someone/else") is None


def test_meta_tasks_match_the_paper_grouping():
    assert mmeb_registry.meta_tasks("visdoc") == {"VDRv1": VDRV1, "VDRv2": VDRV2, "VR": VR, "OOD": OOD}
    image = mmeb_registry.meta_tasks("image")
    assert image["grounding"] == ["MSCOCO", "RefCOCO", "RefCOCO-Matching", "Visual7W-Pointing"]
    assert sorted(image["retrieval"]) == sorted(
        "MSCOCO_i2t VisualNews_i2t VisDial MSCOCO_t2i VisualNews_t2i WebQA EDIS Wiki-SS-NQ "
        "CIRR NIGHTS OVEN FashionIQ".split()
    )
    assert [len(image[m]) for m in ("classification", "qa")] == [10, 10]
    video = mmeb_registry.meta_tasks("video")
    assert {m: len(v) for m, v in video.items()} == {
        "classification": 5,
        "retrieval": 5,
        "moment_retrieval": 3,
        "qa": 5,
    }
    # every (modality, meta-task) is a row of the paper table the score file compares with
    from plume_lite.evaluation.score_file import PAPER_META

    groups = {(t.modality, t.meta_task) for t in mmeb_registry.tasks()}
    assert groups == set(PAPER_META)


def test_qrels_keep_the_max_of_duplicates_and_only_positive_scores():
    rows = [
        {"query-id": "q1", "corpus-id": "d1", "score": 1},
        {"query-id": "q1", "corpus-id": "d2", "score": 2},
        {"query-id": "q1", "corpus-id": "d1", "score": 3},  # higher: kept
        {"query-id": "q1", "corpus-id": "d2", "score": 1},  # lower than 2: ignored, not "last wins"
        {"query-id": "q2", "corpus-id": "d1", "score": 0},  # not relevant
        {"query-id": 3, "corpus-id": 9, "score": "2"},  # ids read as strings
    ]
    merged = mmeb_registry.merge_qrels(rows)
    assert merged == {"q1": {"d1": 3, "d2": 2}, "3": {"9": 2}}
    assert list(merged["q1"]) == ["d1", "d2"]  # first-listed order
    with pytest.raises(DataError, match="needs 'query-id', 'corpus-id' and an integer 'score'"):
        mmeb_registry.merge_qrels([{"query-id": "q", "corpus-id": "d"}])


def test_unknown_names_are_one_line_errors():
    with pytest.raises(DataError, match="'SSv2' is not an MMEB-v2 task name"):
        mmeb_registry.get("SSv2")
    with pytest.raises(DataError, match="unknown MMEB modality 'audio'"):
        mmeb_registry.tasks("audio")


def test_the_data_file_says_where_it_comes_from():
    data = json.loads(mmeb_registry.TASKS_FILE.read_text())
    assert "haoxiangzhao12138/PLUME" in data["_source"]
    assert "eval/{image,video,visdoc}.yaml" in data["_source"]


def test_local_folders_under_yaml_names_get_the_registry_meta(tmp_path):
    def beir(name):
        d = tmp_path / name
        d.mkdir()
        (d / "queries.jsonl").write_text(json.dumps({"query-id": "q1", "query": "revenue?"}) + "\n")
        (d / "corpus.jsonl").write_text(json.dumps({"corpus-id": "d1", "text": "a page"}) + "\n")
        (d / "qrels.jsonl").write_text(json.dumps({"query-id": "q1", "corpus-id": "d1", "score": 1}) + "\n")

    beir("ViDoSeek-page")
    beir("my_docs")
    tasks = {t.name: t for t in load_eval_tasks(tmp_path)}
    assert (tasks["ViDoSeek-page"].meta_task, tasks["ViDoSeek-page"].protocol) == ("OOD", "global")
    assert tasks["my_docs"].meta_task == "vidore"  # not an MMEB name: the loaders' own table
