"""The two in-memory shapes every data source is read into.

An *item* is a plain dict, the unit `PlumeModel.encode` embeds, with any of:
  instruction: str   task instruction (MMEB `qry_inst` / `tgt_inst`)
  text: str          the text of the query or candidate
  image: str | PIL.Image            path (absolute) or loaded image
  video: str | list[str | PIL.Image] mp4/webm/gif path, or a list of frames
  pdf: str, page: int                a document page (0-based page index)
"""
from __future__ import annotations

from dataclasses import dataclass, field

ITEM_KEYS = ("instruction", "text", "image", "video", "pdf", "page")


@dataclass
class TrainPair:
    task: str
    query: dict
    positive: dict
    negatives: list = field(default_factory=list)
    # rationale: several sentences of reasoning about the item (UME-sft style);
    # answer: the short answer/summary that follows the rationale. Either may be "".
    query_rationale: str = ""
    query_answer: str = ""
    positive_rationale: str = ""
    positive_answer: str = ""


@dataclass
class EvalTask:
    name: str
    modality: str          # image | video | visdoc
    meta_task: str         # classification | qa | retrieval | grounding | moment_retrieval | vidore | ...
    protocol: str          # local: rank own candidates; global: rank the de-duplicated pool
    metric: str            # hit@1 | ndcg@5
    queries: list          # items
    candidates: list       # items: the de-duplicated pool of everything any query ranks
    # local: per query, indices into `candidates`, first listed = positive; global: None
    query_candidates: list | None
    # per query: {candidate index: graded relevance > 0}
    qrels: list
    reasoning: bool = False  # needs several reasoning steps (shown apart in tables)
