"""The two in-memory shapes every data source is read into. Their queries, positives
and candidates are items (plain dicts; see plume_lite.items)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    modality: str  # image | video | visdoc
    meta_task: str  # classification | qa | retrieval | grounding | moment_retrieval | vidore | ...
    protocol: str  # local: rank own candidates; global: rank the de-duplicated pool
    metric: str  # hit@1 | ndcg@5
    queries: list  # items
    candidates: list  # items: the de-duplicated pool of everything any query ranks
    # local: per query, indices into `candidates`, first listed = positive; global: None
    query_candidates: list | None
    # per query: {candidate index: graded relevance > 0}
    qrels: list
    reasoning: bool = False  # needs several reasoning steps (shown apart in tables)
