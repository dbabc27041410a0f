"""MMEB-v2 evaluation: rank, score, aggregate, and resume (docs/method.md §Evaluation contract).

`local` tasks rank each query against its own candidate list, `global` tasks against
the whole de-duplicated pool; the metric (hit@1 for image/video, ndcg@5 for visual
documents) comes from `task.metric`. Scores are percentages. Task -> meta-task ->
modality means, overall = mean over all tasks (not over modalities), plus a
reasoning / non-reasoning split. With `out`, every finished task is saved at once
(atomically) under a key of (checkpoint, mode, steps), so a rerun after a crash
skips it, and a changed setting or changed task data never reuses stale numbers.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import torch

from plume_lite.config import MODES
from plume_lite.errors import ConfigError, InputError
from plume_lite.evaluation import metrics
from plume_lite.evaluation.index import EmbeddingCache, model_id, setting_key, top_k
from plume_lite.evaluation.written import score_written
from plume_lite.io import atomic_write_text
from plume_lite.items import content_hash, item_digest

log = logging.getLogger(__name__)

SCHEMA = "plume_lite.eval/1"
MODALITY_NAMES = {"image": "Image", "video": "Video", "visdoc": "VisDoc"}
TOP = 5  # candidates kept per query for failure galleries
CHUNK = 256  # queries scored at once: bounds the [chunk, pool] score matrix


def task_fingerprint(task) -> str:
    """Changes when anything that decides a task's numbers changes."""
    return content_hash(
        {
            "head": [task.name, task.modality, task.meta_task, task.protocol, task.metric],
            "q": [item_digest(it) for it in task.queries],
            "c": [item_digest(it) for it in task.candidates],
            "qc": task.query_candidates,
            "qrels": [{str(k): float(v) for k, v in r.items()} for r in task.qrels],
        }
    )[:16]


def _relevance(task) -> list[dict[int, float]]:
    """Per query {pool index: grade}; a local query without qrels falls back to its
    first listed candidate as the one positive (the MMEB convention)."""
    n, nq = len(task.candidates), len(task.queries)
    if len(task.qrels) != nq:
        raise InputError(f"task {task.name}: {len(task.qrels)} qrels rows for {nq} queries")
    rows = []
    for i, r in enumerate(task.qrels):
        row = {int(k): float(v) for k, v in r.items() if float(v) > 0}
        if not row and task.protocol == "local" and task.query_candidates[i]:
            row = {int(task.query_candidates[i][0]): 1.0}
        if any(not 0 <= j < n for j in row):
            raise InputError(f"task {task.name}: qrels of query {i} point outside the pool of {n}")
        rows.append(row)
    return rows


def _local_lists(task) -> list[list[int]]:
    n = len(task.candidates)
    if task.query_candidates is None or len(task.query_candidates) != len(task.queries):
        raise InputError(f"task {task.name}: a local task needs one candidate list per query")
    lists = []
    for i, lst in enumerate(task.query_candidates):
        # dict.fromkeys: one candidate listed twice is still one candidate
        lst = list(dict.fromkeys(int(j) for j in lst))
        if not lst or any(not 0 <= j < n for j in lst):
            raise InputError(f"task {task.name}: query {i} has an empty or out-of-range candidate list")
        lists.append(lst)
    return lists


def score_task(cache: EmbeddingCache, task, progress=False) -> dict:
    """Embed (through `cache`) and score one EvalTask; returns its result dict."""
    if task.protocol not in ("local", "global"):
        raise InputError(f"task {task.name}: protocol must be local or global, got {task.protocol!r}")
    if not task.queries or not task.candidates:
        raise InputError(f"task {task.name}: no queries or no candidates")
    t0, encoded0 = time.perf_counter(), cache.n_encoded
    rel = _relevance(task)
    lists = _local_lists(task) if task.protocol == "local" else None
    written = score_written(cache, task, rel, progress)  # explicit mode: what it wrote
    q = cache.encode(task.queries, progress=progress)
    c = cache.encode(task.candidates, progress=progress)
    values, per_query = [], []
    for s in range(0, len(task.queries), CHUNK):
        sims = q[s : s + CHUNK] @ c.T  # [b, pool]
        rows = rel[s : s + CHUNK]
        if lists is None:
            scores, mask, pool_idx = sims, None, None
        else:  # gather each query's own candidates into a padded [b, L] block
            chunk = lists[s : s + CHUNK]
            width = max(len(lst) for lst in chunk)
            pool_idx = torch.full((len(chunk), width), -1, dtype=torch.long)
            for i, lst in enumerate(chunk):
                pool_idx[i, : len(lst)] = torch.tensor(lst)
            mask = pool_idx >= 0
            scores = sims.gather(1, pool_idx.clamp(min=0))
            rows = [{p: r[j] for p, j in enumerate(lst) if j in r} for lst, r in zip(chunk, rows)]
        v = metrics.compute(task.metric, scores, rows, mask)
        ranks = metrics.positive_rank(scores, rows, mask)
        top_v, top_i = top_k(scores, TOP, mask)
        if pool_idx is not None:
            top_i = pool_idx.gather(1, top_i)
        for i in range(len(v)):
            keep = top_v[i] > float("-inf")  # a local list shorter than TOP
            pos = [chunk[i][p] for p in rows[i]] if lists is not None else list(rows[i])
            per_query.append(
                {
                    "score": round(float(v[i]), 6),
                    "rank": None if ranks[i] == float("inf") else int(ranks[i]),
                    "pos_score": round(max(float(sims[i, j]) for j in pos), 6) if pos else None,
                    "top": top_i[i][keep].tolist(),
                    "top_scores": [round(x, 6) for x in top_v[i][keep].tolist()],
                }
            )
        values.extend(v.tolist())
    if written is not None:
        for record, extra in zip(per_query, written[1]):
            record.update(extra)
    result = {
        "name": task.name,
        "modality": task.modality,
        "meta_task": task.meta_task,
        "protocol": task.protocol,
        "metric": task.metric,
        "reasoning": bool(task.reasoning),
        "score": 100.0 * sum(values) / len(values),
        "n_queries": len(task.queries),
        "n_candidates": len(task.candidates),
        "n_encoded": cache.n_encoded - encoded0,
        "seconds": round(time.perf_counter() - t0, 3),
        "per_query": per_query,
    }
    if written is not None:  # share of queries whose written answer is the gold one, in %
        result["written_answer_accuracy"] = written[0]
    return result


def _group(results) -> dict:
    scores = [r["score"] for r in results]
    return {"score": sum(scores) / len(scores), "n_tasks": len(scores)}


def aggregate(task_results: dict) -> dict:
    """Meta-task, modality, reasoning-split and overall means of task scores."""
    res = list(task_results.values())
    out = {"overall": _group(res) if res else None, "modalities": {}, "meta_tasks": {}, "reasoning": {}}
    for mod in sorted({r["modality"] for r in res}, key=lambda m: (m not in MODALITY_NAMES, m)):
        mine = [r for r in res if r["modality"] == mod]
        out["modalities"][mod] = _group(mine)
        out["meta_tasks"][mod] = {
            m: _group([r for r in mine if r["meta_task"] == m])
            for m in dict.fromkeys(r["meta_task"] for r in mine)
        }
    for name, flag in (("reasoning", True), ("non_reasoning", False)):
        part = [r for r in res if r["reasoning"] == flag]
        if part:
            out["reasoning"][name] = _group(part)
    return out


def _fmt(group) -> str:
    return "–" if group is None else f"{group['score']:.1f}"


def markdown(result: dict) -> str:
    """Summary (paper layout), meta-task and per-task tables."""
    st, mods = result["setting"], result["modalities"]
    head = [MODALITY_NAMES.get(m, m) for m in mods] + ["All", "Reasoning", "Non-reasoning"]
    cells = (
        [_fmt(g) for g in mods.values()]
        + [_fmt(result["overall"])]
        + [_fmt(result["reasoning"].get(k)) for k in ("reasoning", "non_reasoning")]
    )
    lines = [
        f"## MMEB eval: mode={st['mode']}, steps={st['steps']}, checkpoint={st['checkpoint']}"
        + ("" if result["complete"] else f" (incomplete: {len(result['pending'])} tasks pending)"),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        "| " + " | ".join(cells) + " |",
        "",
        "| modality | meta-task | tasks | score |",
        "|---|---|---|---|",
    ]
    for mod, metas in result["meta_tasks"].items():
        for meta, g in metas.items():
            lines.append(f"| {MODALITY_NAMES.get(mod, mod)} | {meta} | {g['n_tasks']} | {_fmt(g)} |")
    # explicit mode on tasks with text answers: the share of written answers that are right
    written = any("written_answer_accuracy" in r for r in result["tasks"].values())
    lines += [
        "",
        "| task | modality | meta-task | protocol | metric | reasoning | queries | candidates | score |"
        + (" written answer |" if written else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if written else ""),
    ]
    for r in result["tasks"].values():
        cell = r.get("written_answer_accuracy")
        lines.append(
            f"| {r['name']} | {r['modality']} | {r['meta_task']} | {r['protocol']} | {r['metric']} "
            f"| {'yes' if r['reasoning'] else 'no'} | {r['n_queries']} | {r['n_candidates']} "
            f"| {r['score']:.1f} |" + ((" – |" if cell is None else f" {cell:.1f} |") if written else "")
        )
    return "\n".join(lines) + "\n"


def _part_path(parts: Path, name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    return parts / f"{safe}-{content_hash(name)[:8]}.json"


def _markdown_path(out: Path) -> Path:
    return out.with_suffix(".md") if out.suffix == ".json" else out.with_name(out.name + ".md")


def _read_part(path: Path) -> dict | None:
    """A finished task's saved result, or None when absent or damaged (then the task is
    scored again and the file rewritten: a torn or edited file must not stop a rerun)."""
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if (
            isinstance(saved, dict)
            and isinstance(saved.get("result"), dict)
            and isinstance(saved["result"].get("score"), (int, float))
        ):
            return saved
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    log.warning("%s: damaged task result, scoring the task again", path)
    return None


def evaluate(
    model,
    tasks,
    mode="latent",
    steps=None,
    batch_size=16,
    out=None,
    progress=True,
    checkpoint_id=None,
    cache_dir="auto",
    keep_per_query=True,
) -> dict:
    """Score `model` on MMEB-style tasks with the MMEB-v2 protocol; resumable with `out`.

    Each task embeds its queries and candidates (each distinct item once), ranks every
    query against its own candidate list (`local`) or the whole pool (`global`), and
    scores it with the task's metric (hit@K or ndcg@K, ties broken against the model);
    see docs/method.md §Evaluation contract. Task scores are percentages; the result
    also holds meta-task, modality, reasoning-split and overall means (overall = mean
    over all tasks). Runs without gradients.

    Args:
        model: a PlumeModel, or anything with `.encode(items, mode=, steps=,
            batch_size=, progress=)` returning [N, D] L2-normalised rows.
        tasks: a list of EvalTask (e.g. `plume_lite.data.load_eval_tasks(source)`), with
            distinct names.
        mode: "latent", "explicit" or "direct", passed to `encode`.
        steps: latent steps K passed to `encode`; None: the model's own.
        batch_size: items per `encode` call.
        out: optional path of the results JSON. After every task the JSON and a markdown
            table beside it (`.md`) are rewritten atomically, and the finished task is
            kept under `<out stem>.work/parts/`, keyed by the task's content and by
            (model id, mode, steps): a rerun skips it and never reuses numbers of a
            changed task or setting.
        progress: log one INFO line per task (logger `plume_lite.evaluation.protocol`)
            and show the encoder's progress bars.
        checkpoint_id: a name for the weights in cache keys (e.g.
            `index.checkpoint_fingerprint(folder)`); None: `model.checkpoint_id`, else a
            hash of an nn.Module's parameters.
        cache_dir: "auto" (default): the embedding cache goes to `<out stem>.work/emb/`
            when `out` is given and is kept in memory otherwise; a folder: cache there;
            None: no disk cache.
        keep_per_query: keep each task's "per_query" list (score, rank of the best
            positive, its score, top-5 candidate indices and scores) in the result.

    Returns:
        dict: "schema" ("plume_lite.eval/1"), "complete" (True), "setting" ({"checkpoint",
        "mode", "steps", "key"}), "overall" ({"score", "n_tasks"}, or None for no task),
        "modalities" ({modality: {"score", "n_tasks"}}), "meta_tasks" ({modality:
        {meta_task: {...}}}), "reasoning" ({"reasoning" / "non_reasoning": {...}}),
        "tasks" ({name: {"name", "modality", "meta_task", "protocol", "metric",
        "reasoning", "score", "n_queries", "n_candidates", "n_encoded", "seconds",
        "fingerprint", "per_query"}}) and "pending" ([]). In explicit mode, a task whose
        positive candidates are plain text (labels, answers) also has
        "written_answer_accuracy": the % of queries whose written answer (after
        `</think>`, stripped, case-insensitive) is a positive's text, and its per-query
        records "written" (the text) and "written_correct" (plume_lite.evaluation.written).

    Raises:
        InputError: an unknown mode, duplicate task names, or a malformed task (unknown
            protocol, no queries or candidates, qrels or candidate lists that do not
            match the queries or point outside the pool).
        ConfigError: `out` is given but no model id can be had (pass `checkpoint_id`).
        RuntimeError: `encode` returned the wrong shape or non-finite values.

    Example:
        >>> from plume_lite import PlumeModel
        >>> from plume_lite.data import load_eval_tasks
        >>> from plume_lite.evaluation import evaluate
        >>> model = PlumeModel.from_pretrained("runs/latent/model")
        >>> tasks = load_eval_tasks("data/synth", tasks=["img_cls_colorshape"])
        >>> result = evaluate(model, tasks, mode="latent", out="runs/latent/eval.json")
        >>> result["complete"], result["overall"]["n_tasks"], sorted(result["modalities"])
        (True, 1, ['image'])
        >>> 0.0 <= result["tasks"]["img_cls_colorshape"]["score"] <= 100.0     # Hit@1 in %
        True
    """
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    tasks = list(tasks)
    if not tasks:
        raise InputError("no tasks to evaluate (an empty task list would be written as a complete result)")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise InputError(f"duplicate task names: {sorted({n for n in names if names.count(n) > 1})}")
    mid = model_id(model, checkpoint_id)
    out = Path(out) if out is not None else None
    work = out.with_name(out.stem + ".work") if out is not None else None
    if out is not None and mid is None:
        raise ConfigError("resumable evaluation needs a model id: pass checkpoint_id=...")
    key = setting_key(mid, mode, steps)
    parts = work / "parts" / key if work is not None else None
    if cache_dir == "auto":
        cache_dir = work / "emb" if work is not None else None
    setting = {"checkpoint": mid, "mode": mode, "steps": steps, "key": key}
    results: dict[str, dict] = {}

    def write(complete):
        result = {
            "schema": SCHEMA,
            "complete": complete,
            "setting": setting,
            **aggregate(results),
            "tasks": dict(results),
            "pending": [n for n in names if n not in results],
        }
        if not keep_per_query:
            result["tasks"] = {
                n: {k: v for k, v in r.items() if k != "per_query"} for n, r in results.items()
            }
        if out is not None:
            atomic_write_text(out, json.dumps(result, indent=1, allow_nan=False))
            atomic_write_text(_markdown_path(out), markdown(result))
        return result

    for i, task in enumerate(tasks):
        fp = task_fingerprint(task)
        part = _part_path(parts, task.name) if parts is not None else None
        saved = _read_part(part) if part is not None else None
        if saved is not None:
            if saved.get("fingerprint") == fp and saved.get("setting_key") == key:
                results[task.name] = saved["result"]
                if progress:
                    log.info(
                        "[%d/%d] %s: %.1f (saved)", i + 1, len(tasks), task.name, saved["result"]["score"]
                    )
                continue
        # a fresh cache per task: its rows are freed once the task is scored
        cache = EmbeddingCache(model, mode, steps, batch_size, cache_dir, mid)
        with torch.no_grad():
            r = score_task(cache, task, progress=progress)
        r["fingerprint"] = fp
        results[task.name] = r
        if part is not None:
            atomic_write_text(
                part, json.dumps({"fingerprint": fp, "setting_key": key, "result": r}, allow_nan=False)
            )
        if progress:
            log.info("[%d/%d] %s: %.1f (%.1f s)", i + 1, len(tasks), task.name, r["score"], r["seconds"])
        write(complete=False)
    return write(complete=True)
