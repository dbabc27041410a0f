"""The MMEB-v2 task registry: the 78 tasks (36 image, 18 video, 24 visual-document) under
the names and eval types of the authors' evaluation YAMLs (RELEASED_CHECKPOINTS.md §6).

The data lives in `mmeb_v2_tasks.json` next to this file (its `_source` line says where
each field comes from). Names matter because the YAML key is the task name in every
score file, so a run can only be diffed against the published scores under these names
(sources.py builds its task tables from this registry; SmthSmthV2 is local, as the YAML
says: each query ranks its own candidates).

Meta-tasks follow the VLM2Vec-V2 paper grouping, which score_file.PAPER_META reads:
image classification / qa / retrieval / grounding, video classification / qa / retrieval /
moment_retrieval, and visdoc VDRv1 (ViDoRe v1), VDRv2 (ViDoRe v2), VR (VisRAG) and OOD
(ViDoSeek, MMLongBench). The authors' score script leaves MVBench out of its Video-QA
group while counting it in the video mean; here it is a qa task.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from plume_lite.data.storage import DataError

TASKS_FILE = Path(__file__).with_name("mmeb_v2_tasks.json")
MODALITIES = ("image", "video", "visdoc")
MMEB_TEST_REPO = "ziyjiang/MMEB_Test_Instruct"  # the image tasks' rows, one config per task
METRIC = {"image": "hit@1", "video": "hit@1", "visdoc": "ndcg@5"}  # ndcg@5 uses the linear gain


@dataclass(frozen=True)
class MmebTask:
    name: str  # the YAML key: the task's name in every output file
    modality: str  # image | video | visdoc
    parser: str  # the YAML dataset_parser (which text builder applies)
    dataset_name: str  # the YAML dataset_name (differs only for K700: Kinetics-700)
    eval_type: str  # local: each query ranks its own candidates; global: one shared pool
    meta_task: str
    hub_repo: str | None = None  # where the rows come from on the hub (image, visdoc)
    hub_split: str | None = None  # "train" for VisRAG: its test sets are published as train

    @property
    def metric(self) -> str:
        return METRIC[self.modality]

    def meta(self) -> dict:
        """The metadata dict the loaders put on an EvalTask (as sources.real_meta does)."""
        return {
            "modality": self.modality,
            "meta_task": self.meta_task,
            "protocol": self.eval_type,
            "metric": self.metric,
        }


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, MmebTask]:
    """All 78 tasks by YAML key, in the YAMLs' order (image, video, visdoc)."""
    data = json.loads(TASKS_FILE.read_text(encoding="utf-8"))
    out = {}
    for modality in MODALITIES:
        for row in data[modality]:
            hub_repo, hub_split = row.get("hub_repo"), row.get("hub_split")
            if modality == "image":  # MMEB_Test_Instruct: config = dataset_name, split test
                hub_repo, hub_split = MMEB_TEST_REPO, "test"
            out[row["task"]] = MmebTask(
                name=row["task"],
                modality=modality,
                parser=row["parser"],
                dataset_name=row["dataset_name"],
                eval_type=row["eval_type"],
                meta_task=row["meta_task"],
                hub_repo=hub_repo,
                hub_split=hub_split,
            )
    return out


def tasks(modality: str | None = None) -> list[MmebTask]:
    """The tasks of one modality (all of them for None), in the YAMLs' order."""
    if modality is not None and modality not in MODALITIES:
        raise DataError(f"unknown MMEB modality {modality!r}; choose one of {list(MODALITIES)}")
    return [t for t in registry().values() if modality in (None, t.modality)]


def get(name: str) -> MmebTask:
    """One task by its YAML key; a DataError naming the key otherwise."""
    task = registry().get(name)
    if task is None:
        raise DataError(f"{name!r} is not an MMEB-v2 task name (the keys of the authors' eval YAMLs)")
    return task


def find(name: str) -> MmebTask | None:
    """The task of that YAML key, or None (for the loaders' fallback to their own table)."""
    return registry().get(name)


def for_hub_repo(repo: str) -> MmebTask | None:
    """The visdoc task whose rows live in hub `repo` (each such repo backs one task)."""
    hits = [t for t in registry().values() if t.modality == "visdoc" and t.hub_repo == repo]
    return hits[0] if hits else None


def meta_tasks(modality: str) -> dict[str, list[str]]:
    """{meta-task: [task names]} of a modality, in the YAMLs' order."""
    out: dict[str, list[str]] = {}
    for t in tasks(modality):
        out.setdefault(t.meta_task, []).append(t.name)
    return out


def merge_qrels(rows) -> dict[str, dict[str, int]]:
    """BEIR qrels rows ({"query-id", "corpus-id", "score"}) as {query: {doc: score}}, as the
    authors read them: only scores > 0 count, and a (query, doc) pair listed twice keeps its
    higher score (not the last one seen). Docs keep their first-listed order."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        try:
            qid, doc, score = str(row["query-id"]), str(row["corpus-id"]), int(row["score"])
        except (KeyError, TypeError, ValueError):
            need = "needs 'query-id', 'corpus-id' and an integer 'score'"
            raise DataError(f"qrels row {row!r}: {need}") from None
        if score > 0:
            docs = out.setdefault(qid, {})
            docs[doc] = max(docs.get(doc, 0), score)
    return out
