"""Per-task scores in VLM2Vec's score-file format, and a comparison with a published one.

VLM2Vec publishes per-task scores as `experiments/public/all_scores/<model>.json`
(RELEASED_CHECKPOINTS.md §6, "Published per-task scores"):

    {"metadata": {"model_name": ..., "report_generated_date": ...},
     "metrics": {"image": {TASK: {"hit@1": 0.62, ..., "num_pred": N, "num_data": N}},
                 "video": {...}, "visdoc": {...}}}

Values are fractions in [0, 1]; the headline key is `hit@1` for image and video and
`ndcg_linear@5` for visual documents. `to_score_file` writes an `evaluate` result in that
shape (this package's `ndcg@5` already uses the linear gain), so a run can be diffed
against a published file task by task with `compare`, and at meta-task level against the
paper's table, for which no per-task file exists.

    plume-lite compare --run results.json --scores VLM2Vec-V2.0-Qwen2VL-2B.json
"""

from __future__ import annotations

import datetime as _dt
import statistics
from pathlib import Path

from plume_lite.errors import InputError
from plume_lite.io import read_json

MODALITIES = ("image", "video", "visdoc")
HEADLINE = {"image": "hit@1", "video": "hit@1", "visdoc": "ndcg_linear@5"}
THEIR_KEY = {"hit@1": "hit@1", "ndcg@5": "ndcg_linear@5"}  # evaluate's metric -> VLM2Vec's key

# The paper's project-page table (PLUME-Qwen2-VL-2B, MMEB-v2): no per-task file exists.
PAPER_META = {
    ("image", "classification"): ("I-CLS", 66.5),
    ("image", "qa"): ("I-QA", 59.2),
    ("image", "retrieval"): ("I-RET", 67.6),
    ("image", "grounding"): ("I-GD", 79.7),
    ("video", "classification"): ("V-CLS", 45.0),
    ("video", "qa"): ("V-QA", 52.3),
    ("video", "retrieval"): ("V-RET", 33.5),
    ("video", "moment_retrieval"): ("V-MRET", 46.7),
    ("visdoc", "VDRv1"): ("VDRv1", 72.1),
    ("visdoc", "VDRv2"): ("VDRv2", 49.8),
    ("visdoc", "VR"): ("VR", 78.1),
    ("visdoc", "OOD"): ("OOD", 57.4),
}
PAPER_MODALITY = {"image": 66.3, "video": 44.1, "visdoc": 67.5, "all": 61.6}


def to_score_file(result: dict, model_name: str, date: str | None = None) -> dict:
    """An `evaluate` result as a VLM2Vec score file (fractions; hit@5/10 from the ranks)."""
    metrics: dict = {}
    for name, t in result["tasks"].items():
        key = THEIR_KEY.get(t["metric"])
        if key is None:
            raise InputError(f"task {name}: metric {t['metric']!r} has no VLM2Vec score-file key")
        entry = {key: t["score"] / 100.0}
        ranks = [q.get("rank") for q in t.get("per_query") or []]
        if key == "hit@1" and ranks and None not in ranks:
            for k in (5, 10):
                entry[f"hit@{k}"] = sum(r <= k for r in ranks) / len(ranks)
        n = t.get("n_queries", len(ranks))
        entry["num_pred"], entry["num_data"] = n, n
        metrics.setdefault(t["modality"], {})[name] = entry
    date = date or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"metadata": {"model_name": model_name, "report_generated_date": date}, "metrics": metrics}


def read_score_file(path) -> dict:
    """A score file, checked for the shape above; a one-line InputError otherwise."""
    data = read_json(path, InputError)
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or not set(metrics) <= set(MODALITIES) or not metrics:
        raise InputError(f"{path}: not a VLM2Vec score file (needs 'metrics' with {', '.join(MODALITIES)})")
    for modality, tasks in metrics.items():
        for task, entry in tasks.items():
            key = HEADLINE[modality]
            value = entry.get(key) if isinstance(entry, dict) else None
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(f"{path}: {modality}/{task} has no {key} fraction in [0, 1]")
    return data


def copied_file_warning(data: dict, path) -> str | None:
    """The bundled "UME-R1" file is VLM2Vec-V2.0's with only video hit@1 replaced: its
    metadata still names VLM2Vec-V2.0. Warn when a file's name and metadata disagree."""
    named = str(data.get("metadata", {}).get("model_name", ""))
    stem = Path(path).stem
    if named and stem and named.lower() not in stem.lower() and stem.lower() not in named.lower():
        return (
            f"{Path(path).name} says it is {named!r} in its metadata: if it is the bundled "
            "UME-R1 file, only its video hit@1 values are UME-R1's (the rest are VLM2Vec-V2.0's)"
        )
    return None


def _mean(values: list) -> float | None:
    return statistics.mean(values) if values else None


def compare(run: dict, published: dict, published_path="published") -> dict:
    """Per-task deltas (percentage points) of a run's score file against a published one,
    the modality means over the run's tasks, and the paper's meta-task table.

    Every task of the run must be in the published file under the same modality and name
    (the MMEB YAML keys): a mismatch is an InputError that names the tasks."""
    rows, missing = [], []
    for modality, tasks in run["metrics"].items():
        theirs = published["metrics"].get(modality, {})
        key = HEADLINE[modality]
        for task, entry in tasks.items():
            if task not in theirs:
                missing.append(f"{modality}/{task}")
                continue
            ours, ref = 100.0 * entry[key], 100.0 * theirs[task][key]
            rows.append(
                {
                    "task": task,
                    "modality": modality,
                    "key": key,
                    "run": ours,
                    "published": ref,
                    "delta": ours - ref,
                }
            )
    if missing:
        raise InputError(
            f"tasks of the run not in {published_path}: {', '.join(missing[:6])}"
            f"{' ...' if len(missing) > 6 else ''} (names must be the MMEB YAML keys)"
        )
    means = {}
    for modality in (*MODALITIES, "all"):
        sub = [r for r in rows if modality in ("all", r["modality"])]
        if sub:
            run_mean, ref_mean = _mean([r["run"] for r in sub]), _mean([r["published"] for r in sub])
            means[modality] = {
                "n_tasks": len(sub),
                "run": run_mean,
                "published": ref_mean,
                "delta": run_mean - ref_mean,
            }
    return {"rows": rows, "means": means, "warning": copied_file_warning(published, published_path)}


def paper_meta_rows(result: dict) -> list[dict]:
    """An `evaluate` result's meta-task and modality means next to the paper's table."""
    rows = []
    for (modality, meta), (label, paper) in PAPER_META.items():
        part = result.get("meta_tasks", {}).get(modality, {}).get(meta)
        rows.append({"group": label, "run": part["score"] if part else None, "paper": paper})
    for modality, paper in PAPER_MODALITY.items():
        part = result.get("overall") if modality == "all" else result.get("modalities", {}).get(modality)
        rows.append({"group": modality, "run": part["score"] if part else None, "paper": paper})
    return rows


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def markdown(comparison: dict, meta_rows: list | None = None) -> str:
    lines = ["| task | modality | key | run | published | run − published |", "|---|---|---|---|---|---|"]
    for r in comparison["rows"]:
        cells = (
            r["task"],
            r["modality"],
            r["key"],
            _fmt(r["run"]),
            _fmt(r["published"]),
            f"{r['delta']:+.1f}",
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| mean over the run's tasks | tasks | run | published | run − published |",
        "|---|---|---|---|---|",
    ]
    for m, v in comparison["means"].items():
        lines.append(
            f"| {m} | {v['n_tasks']} | {_fmt(v['run'])} | {_fmt(v['published'])} | {v['delta']:+.1f} |"
        )
    if meta_rows:
        lines += ["", "| paper group (PLUME-Qwen2-VL-2B) | run | paper |", "|---|---|---|"]
        lines += [f"| {r['group']} | {_fmt(r['run'])} | {r['paper']} |" for r in meta_rows]
    if comparison.get("warning"):
        lines += ["", f"Warning: {comparison['warning']}"]
    return "\n".join(lines) + "\n"
