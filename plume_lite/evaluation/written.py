"""Explicit mode's written answers, checked against the gold answer.

Explicit mode writes a rationale, `</think>`, then an answer before it reads
`<gen_emb>`; its embedding mostly copies what it wrote. Where a task's positive
candidates are plain text (class labels, QA answers), that text is the gold answer, and
the share of queries whose written answer equals it (stripped, spaces collapsed,
case-insensitive) tells a wrong writer from a bad embedding.

The released UME-R1 writes on after `</think>`: `<answer>A</answer><gen_emb>` and its
EOS; its answer is A. A PlumeModel's text stops before `<gen_emb>`, so none of that
applies to it.
"""

from __future__ import annotations

import re

from plume_lite.curriculum import THINK_END
from plume_lite.files import item_kind
from plume_lite.items import item_digest
from plume_lite.tokens import GEN_EMB

THINK_START = "<think>"
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
END_TOKENS = ("<|im_end|>", "<|endoftext|>")  # UME-R1's EOS tokens (Qwen2-VL's chat end and pad)


def gold_answers(task, relevance: list[dict]) -> list[set[str]] | None:
    """Per query the normalised texts of its positive candidates, or None for a task
    where some query has no positive or a positive that is not a text-only item."""
    golds = []
    for row in relevance:
        items = [task.candidates[j] for j in row]
        if not items or any(item_kind(it) != "text" or not it.get("text") for it in items):
            return None
        golds.append({normalise(it["text"]) for it in items})
    return golds


def normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def written_answer(text: str | None) -> str | None:
    """The text after the first `</think>` up to `<gen_emb>`, inside `<answer>…</answer>`
    when it has that, without EOS tokens, normalised; None when no `</think>` was written.

    Example:
        >>> written_answer("<think>two</think><answer>Red </answer><gen_emb><|im_end|>")
        'red'
    """
    if text is None or THINK_END not in text:
        return None
    answer = text.split(THINK_END, 1)[1].split(GEN_EMB, 1)[0]
    tagged = ANSWER.search(answer)
    if tagged:
        answer = tagged.group(1)
    for token in END_TOKENS:
        answer = answer.replace(token, "")
    return normalise(answer)


def written_rationale(text: str) -> str:
    """The text before the first `</think>`, without UME-R1's own `<think>`, stripped."""
    rationale = text.split(THINK_END, 1)[0].strip()
    return rationale.removeprefix(THINK_START).strip()


class TraceRecorder:
    """Stands in for the model of an EmbeddingCache: encodes with traces and keeps each
    item's written text (the trace's "text"), keyed by item_digest."""

    def __init__(self, model):
        self.model, self.texts = model, {}

    def encode(self, items, **kwargs):
        out = self.model.encode(items, return_trace=True, **kwargs)
        if not (isinstance(out, tuple) and len(out) == 2):  # an encoder without traces
            return out
        emb, traces = out
        for item, trace in zip(items, traces):
            if isinstance(trace, dict) and "text" in trace:
                self.texts[item_digest(item)] = trace["text"]
        return emb


def written_texts(cache, items, progress=False) -> list[str | None] | None:
    """What explicit mode wrote for each item, encoding through `cache` (so the
    embeddings are cached as usual); rows the cache already held are written again.
    None when the encoder gives no written text."""
    recorder = TraceRecorder(cache.model)
    cache.model = recorder
    try:
        cache.encode(items, progress=progress)
    finally:
        cache.model = recorder.model
    missing = list({item_digest(it): it for it in items if item_digest(it) not in recorder.texts}.values())
    if missing:
        recorder.encode(
            missing, mode=cache.mode, steps=cache.steps, batch_size=cache.batch_size, progress=progress
        )
    if any(item_digest(it) not in recorder.texts for it in items):
        return None
    return [recorder.texts[item_digest(it)] for it in items]


def score_written(cache, task, relevance, progress=False) -> tuple[float, list[dict]] | None:
    """(percentage of queries whose written answer is a gold answer, per query
    {"written": text, "written_correct": bool}). Call it before the queries are
    embedded: it embeds them through `cache` while recording what was written. None
    where it does not apply: not explicit mode, no text gold answers, or an encoder
    that gives no written text."""
    if cache.mode != "explicit":
        return None
    golds = gold_answers(task, relevance)
    texts = written_texts(cache, task.queries, progress) if golds is not None else None
    if texts is None:
        return None
    records = [{"written": t, "written_correct": written_answer(t) in g} for t, g in zip(texts, golds)]
    return 100.0 * sum(r["written_correct"] for r in records) / len(records), records


def written_vs_latent(explicit_result: dict, latent_result: dict, tasks: list) -> list[dict]:
    """Explicit's written answer next to latent's ranking, query by query.

    For every task where explicit mode's evaluation recorded what it wrote (tasks whose
    positives are text answers: `plume_lite.evaluation.written`), one row per query.

    Args:
        explicit_result: `evaluate(..., mode="explicit")` results with per-query rows.
        latent_result: `evaluate(..., mode="latent")` results of the same tasks.
        tasks: the EvalTasks both were scored on.

    Returns:
        Rows {"task", "query", "question" (the query's text, else its instruction),
        "rationale" (the text written before `</think>`: `written_rationale`),
        "written answer" (after it: `written_answer`; None if never closed),
        "true answer" (the gold answers joined by " | "), "explicit written right",
        "latent right" (a positive ranked first), "latent rank"}.

    Example:
        >>> rows = written_vs_latent(results["explicit"], results["latent"], NB.tasks())
        >>> pd.crosstab([r["explicit written right"] for r in rows], [r["latent right"] for r in rows])
    """
    rows = []
    for task in tasks:
        explicit_rows = explicit_result["tasks"].get(task.name, {}).get("per_query") or []
        latent_rows = latent_result["tasks"].get(task.name, {}).get("per_query") or []
        if not explicit_rows or "written" not in explicit_rows[0] or len(latent_rows) != len(explicit_rows):
            continue
        positives = [{int(j): float(g) for j, g in rel.items() if float(g) > 0} for rel in task.qrels]
        golds = gold_answers(task, positives)
        if golds is None:
            continue
        for i, (e, lat) in enumerate(zip(explicit_rows, latent_rows)):
            text = e["written"] or ""
            rows.append(
                {
                    "task": task.name,
                    "query": i,
                    "question": task.queries[i].get("text") or task.queries[i].get("instruction", ""),
                    "rationale": written_rationale(text),
                    "written answer": written_answer(text),
                    "true answer": " | ".join(sorted(golds[i])),
                    "explicit written right": bool(e["written_correct"]),
                    "latent right": lat["rank"] == 1,
                    "latent rank": lat["rank"],
                }
            )
    return rows
