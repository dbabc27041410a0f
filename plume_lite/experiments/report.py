"""Tables and the accuracy-vs-latency figure of `plume-lite reproduce`, beside the paper.

The paper's numbers (Qwen2-VL-2B on MMEB-v2; docs/method.md §Reference numbers) are
printed next to the lite
numbers for orientation only: different backbone size, data and scale. What carries
over is the *ordering* of systems and ablations, which tables.md lets you read off.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

from plume_lite.io import atomic_write_text

PAPER_MAIN = {
    "direct": ("VLM2Vec-V2", 64.9, 34.9, 65.4, 58.0, 156),
    "explicit": ("UME-R1", 66.6, 42.2, 63.9, 60.1, 9023),
    "latent": ("PLUME (K=8)", 66.3, 44.1, 67.5, 61.6, 298),
}
PAPER_COMPONENTS = {
    "PLUME latent (K=8)": 61.6,
    "no transition adapter": 58.8,
    "single MLP instead of MoE": 59.2,
    "no semantic anchor": 60.1,
    "no curriculum": 54.8,
}
PAPER_STEPS = {"K = 4": 59.9, "K = 6": 61.1, "K = 8": 61.6}
MODALITIES = ("image", "video", "visdoc")


def _score(result: dict, key: str) -> float | None:
    ev = result["eval"]
    if key == "all":
        return ev["overall"]["score"] if ev["overall"] else None
    if key in ("reasoning", "non_reasoning"):
        part = ev["reasoning"].get(key)
        return part["score"] if part else None
    part = ev["modalities"].get(key)
    return part["score"] if part else None


def _mean_spread(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _ms(efficiency: dict, label: str, batch: int) -> float | None:
    for row in efficiency["rows"]:
        if row["label"] == label and row["batch_size"] == batch:
            return row["ms_per_query"]
    return None


def main_table(report: dict) -> str:
    keys = (*MODALITIES, "all", "reasoning", "non_reasoning")
    lines = [
        "| system | Image | Video | VisDoc | All | reasoning tasks | other tasks | ms/query (b=1) "
        "| ms/query (b=16) | paper system | paper Image | paper Video | paper VisDoc | paper All "
        "| paper ms/query (H20) |",
        "|" + "---|" * 15,
    ]
    main = [r for r in report["runs"] if r["run"]["group"] == "main"]
    for mode in ("direct", "explicit", "latent"):
        rows = [r for r in main if r["run"]["mode"] == mode]
        if not rows:
            continue
        label = rows[0]["run"]["label"]
        cells = [_mean_spread([_score(r, k) for r in rows]) for k in keys]
        ms = [_ms(report["efficiency"], label, b) for b in (1, 16)]
        paper = PAPER_MAIN[mode]
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + " | "
            + " | ".join("–" if m is None else f"{m:.1f}" for m in ms)
            + f" | {paper[0]} | {paper[1]} | {paper[2]} | {paper[3]} | {paper[4]} | {paper[5]} |"
        )
    n = len({r["run"]["seed"] for r in main})
    lines.append(
        f"\nMean ± standard deviation over {n} seed(s). Scores in %: Hit@1 (image, video), "
        "NDCG@5 (documents)."
    )
    tokens = [r.get("generated_tokens") for r in report["efficiency"]["rows"] if r["mode"] == "explicit"]
    if tokens and tokens[0] is not None:
        lines.append(
            f"explicit mode wrote {tokens[0]:.0f} tokens per query on average "
            "(paper: 403 for UE-R1 at 2B).".replace("UE-R1", "UME-R1")
        )
    return "\n".join(lines)


def ablation_table(report: dict, group: str, paper: dict) -> str:
    lines = [
        "| variant | Image | Video | VisDoc | All | reasoning tasks | paper All |",
        "|---|---|---|---|---|---|---|",
    ]
    reference = [
        r
        for r in report["runs"]
        if r["run"]["group"] == "main" and r["run"]["mode"] == "latent" and r["run"]["seed"] == 0
    ]
    rows = reference + [r for r in report["runs"] if r["run"]["group"] == group]
    for r in rows:
        label = r["run"]["label"]
        if group == "steps" and r["run"]["group"] == "main":
            label = "K = 8"
        cells = [_mean_spread([_score(r, k)]) for k in (*MODALITIES, "all", "reasoning")]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {paper.get(label, '–')} |")
    return "\n".join(lines)


def task_table(report: dict) -> str:
    runs = [r for r in report["runs"] if r["run"]["seed"] == 0]
    names = list(runs[0]["tasks"]) if runs else []
    lines = ["| task | " + " | ".join(r["run"]["name"] for r in runs) + " |", "|" + "---|" * (len(runs) + 1)]
    for name in names:
        lines.append(
            f"| {name} | " + " | ".join(f"{r['tasks'].get(name, float('nan')):.1f}" for r in runs) + " |"
        )
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Accuracy (All) vs ms/query at batch 1, one point per main system (paper Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for mode, marker in (("direct", "o"), ("explicit", "s"), ("latent", "*")):
        rows = [r for r in report["runs"] if r["run"]["group"] == "main" and r["run"]["mode"] == mode]
        if not rows:
            continue
        label = rows[0]["run"]["label"]
        ms = _ms(report["efficiency"], label, 1)
        scores = [_score(r, "all") for r in rows]
        if ms is None or None in scores:
            continue
        ax.errorbar(
            ms,
            statistics.mean(scores),
            yerr=statistics.stdev(scores) if len(scores) > 1 else 0,
            marker=marker,
            markersize=12,
            capsize=4,
            label=label,
            linestyle="none",
        )
    ax.set_xscale("log")
    ax.set_xlabel("ms per query (batch 1, log scale)")
    ax.set_ylabel("SynthMMEB overall score (%)")
    ax.set_title("Accuracy vs latency (lite run)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(root: Path, report: dict) -> dict:
    s = report["settings"]
    tables = "\n\n".join(
        [
            f"# plume-lite reproduce ({'quick, ' if s['quick'] else ''}profile {s['profile']}, "
            f"{s['seeds']} seed(s), {report['wall_seconds'] / 60:.1f} min)",
            "## Main table (paper Table 1 layout)",
            main_table(report),
            "## Component ablation (paper: All)",
            ablation_table(report, "components", PAPER_COMPONENTS),
            "## Number of latent steps K (paper: All)",
            ablation_table(report, "steps", PAPER_STEPS),
            "## Per task (seed 0)",
            task_table(report),
            "![accuracy vs latency](accuracy_vs_latency.png)",
        ]
    )
    plot(report, root / "accuracy_vs_latency.png")
    atomic_write_text(root / "tables.md", tables + "\n")
    atomic_write_text(root / "results.json", json.dumps(report, indent=1, allow_nan=False))
    return report
