"""The real sources: their hub ids, task names and metadata (MMEB-v2, docs/method.md
§Evaluation contract), and the
hub code path (`datasets.load_dataset`; needs network, so it is not exercised offline)."""

from __future__ import annotations

import re

from plume_lite.data.storage import DataError, quiet_datasets

MMEB_TRAIN_REPO = "TIGER-Lab/MMEB-train"
UME_SFT_REPO = "zhibinlan/UME-sft-train"
MMEB_TEST_REPO = "ziyjiang/MMEB_Test_Instruct"

# Name tables stay compact: one line per group reads like the benchmark's own table.
# fmt: off
MMEB_TRAIN_SUBSETS = [
    "ImageNet_1K", "N24News", "HatefulMemes", "VOC2007", "SUN397", "OK-VQA", "A-OKVQA",
    "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W", "VisDial", "CIRR", "VisualNews_t2i",
    "VisualNews_i2t", "MSCOCO_t2i", "MSCOCO_i2t", "NIGHTS", "WebQA", "MSCOCO",
]
# MMEB image tasks (36): all local, each row lists its own candidates.
IMAGE_TASKS = {
    "classification": ["ImageNet-1K", "N24News", "HatefulMemes", "VOC2007", "SUN397",
                       "Place365", "ImageNet-A", "ImageNet-R", "ObjectNet", "Country211"],
    "qa": ["OK-VQA", "A-OKVQA", "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W",
           "ScienceQA", "VizWiz", "GQA", "TextVQA"],
    "retrieval": ["VisDial", "CIRR", "VisualNews_t2i", "VisualNews_i2t", "MSCOCO_t2i",
                  "MSCOCO_i2t", "NIGHTS", "WebQA", "FashionIQ", "Wiki-SS-NQ", "OVEN", "EDIS"],
    "grounding": ["MSCOCO", "RefCOCO", "RefCOCO-Matching", "Visual7W-Pointing"],
}
# MMEB-v2 video tasks (18): classification and retrieval rank a shared pool (global).
VIDEO_TASKS = {
    ("classification", "global"): ["K700", "SSv2", "HMDB51", "UCF101", "Breakfast"],
    ("qa", "local"): ["MVBench", "Video-MME", "NExTQA", "EgoSchema", "ActivityNetQA"],
    ("retrieval", "global"): ["MSR-VTT", "MSVD", "DiDeMo", "YouCook2", "VATEX"],
    ("moment_retrieval", "local"): ["QVHighlight", "Charades-STA", "MomentSeeker"],
}
# fmt: on
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(s) -> bool:
    return isinstance(s, str) and bool(_HUB_ID.fullmatch(s))


def real_meta(name: str, has_video: bool = False, beir: bool = False) -> dict:
    """Modality / meta task / protocol / metric of a real task, by its MMEB name."""
    if beir:
        return {"modality": "visdoc", "meta_task": "vidore", "protocol": "global", "metric": "ndcg@5"}
    for meta, names in IMAGE_TASKS.items():
        if name in names:
            return {"modality": "image", "meta_task": meta, "protocol": "local", "metric": "hit@1"}
    for (meta, protocol), names in VIDEO_TASKS.items():
        if name in names:
            return {"modality": "video", "meta_task": meta, "protocol": protocol, "metric": "hit@1"}
    return {
        "modality": "video" if has_video else "image",
        "meta_task": "unknown",
        "protocol": "local",
        "metric": "hit@1",
    }


def _hub(fn, repo, *args, **kw):
    try:
        from datasets import load_dataset

        with quiet_datasets():
            return list(load_dataset(repo, *args, **kw))
    except Exception as e:  # network, auth, missing config: all end as one DataError
        raise DataError(
            f"cannot load {repo} {' '.join(map(str, args))} from the hub for "
            f"{fn} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            f"pass a local folder instead"
        ) from None


def hub_train_rows(repo: str, tasks=None, limit=None):
    """Yield (task, kind, rows): kind 'ume' or 'mmeb'."""
    cut = f"[:{int(limit)}]" if limit else ""
    if repo == UME_SFT_REPO:
        rows = _hub("training pairs", repo, split="train")
        yield "ume", "ume", rows
        return
    for subset in tasks or MMEB_TRAIN_SUBSETS:
        yield subset, "mmeb", _hub("training pairs", repo, subset, split=f"original{cut}")


def hub_eval_tables(repo: str, tasks=None):
    """Yield (task, kind, tables): kind 'instruct' (rows) or 'beir' (queries, corpus, qrels)."""
    if repo == MMEB_TEST_REPO:
        for name in tasks or [t for names in IMAGE_TASKS.values() for t in names]:
            yield name, "instruct", _hub("evaluation", repo, name, split="test")
        return
    parts = tuple(_hub("evaluation", repo, part, split="test") for part in ("queries", "corpus", "qrels"))
    yield repo.split("/")[-1], "beir", parts
