"""The real sources: their hub ids, task names and metadata (MMEB-v2, docs/method.md
§Evaluation contract), and the
hub code path (`datasets.load_dataset`; needs network, so it is not exercised offline)."""

from __future__ import annotations

import re

from plume_lite.data import mmeb_registry
from plume_lite.data.storage import DataError, quiet_datasets

MMEB_TRAIN_REPO = "TIGER-Lab/MMEB-train"
UME_SFT_REPO = "zhibinlan/UME-sft-train"
MMEB_TEST_REPO = mmeb_registry.MMEB_TEST_REPO

# Name tables stay compact: one line per group reads like the benchmark's own table.
# fmt: off
MMEB_TRAIN_SUBSETS = [
    "ImageNet_1K", "N24News", "HatefulMemes", "VOC2007", "SUN397", "OK-VQA", "A-OKVQA",
    "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W", "VisDial", "CIRR", "VisualNews_t2i",
    "VisualNews_i2t", "MSCOCO_t2i", "MSCOCO_i2t", "NIGHTS", "WebQA", "MSCOCO",
]
# fmt: on


def _video_tasks() -> dict[tuple[str, str], list[str]]:
    """(meta-task, eval type) -> names: global tasks rank one shared pool."""
    out: dict[tuple[str, str], list[str]] = {}
    for task in mmeb_registry.tasks("video"):
        out.setdefault((task.meta_task, task.eval_type), []).append(task.name)
    return out


# MMEB-v2 task names by meta-task, from the registry (the authors' YAML keys and eval
# types; SmthSmthV2, once "SSv2" here, is a *local* classification task).
IMAGE_TASKS = mmeb_registry.meta_tasks("image")  # 36, all local: each row lists its candidates
VIDEO_TASKS = _video_tasks()  # 18
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(s) -> bool:
    return isinstance(s, str) and bool(_HUB_ID.fullmatch(s))


def real_meta(name: str, has_video: bool = False, beir: bool = False) -> dict:
    """Modality / meta task / protocol / metric of a real task: the registry's for an
    MMEB-v2 YAML key, else a guess from the table kind."""
    known = mmeb_registry.find(name)
    if known is not None:
        return known.meta()
    if beir:
        return {"modality": "visdoc", "meta_task": "vidore", "protocol": "global", "metric": "ndcg@5"}
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
    """Yield (task, kind, tables): kind 'instruct' (rows) or 'beir' (queries, corpus, qrels).

    Tasks are named by their YAML key and read from the registry's split: a BEIR repo backs
    one task (`mmeb_registry.for_hub_repo`; VisRAG publishes its test sets as "train");
    other BEIR repos keep their repo name and split "test"."""
    if repo == MMEB_TEST_REPO:
        for name in tasks or [t.name for t in mmeb_registry.tasks("image")]:
            known = mmeb_registry.find(name)
            mine = known is not None and known.hub_repo == repo  # one config per task, as named
            config, split = (known.dataset_name, known.hub_split) if mine else (name, "test")
            yield name, "instruct", _hub("evaluation", repo, config, split=split)
        return
    known = mmeb_registry.for_hub_repo(repo)
    name, split = (known.name, known.hub_split) if known else (repo.split("/")[-1], "test")
    if tasks is not None and name not in tasks:
        raise DataError(f"{repo} holds the one task {name!r}, not {list(tasks)}")
    parts = tuple(_hub("evaluation", repo, part, split=split) for part in ("queries", "corpus", "qrels"))
    yield name, "beir", parts
