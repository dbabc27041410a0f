"""Tables and the accuracy-vs-latency figure of `plume-lite reproduce`.

Every system is a readout of a run (plan.py): the same latent checkpoint read with K = 8,
K = 0 and at `<disc_emb>`, U read in explicit mode and at `<disc_emb>`, the direct
controls. Orderings are decided by the paired statistics (evaluation/stats.py): a claim
is printed only where the 95 % CI of the paired difference excludes 0. The paper's
numbers (Qwen2-VL-2B on MMEB-v2) are printed for orientation only."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

from plume_lite.io import atomic_write_text

# system label -> (run name prefix, readout): one row of the main table each
SYSTEMS = {
    "PLUME latent K=8 (from U)": ("latent", "k8"),
    "  same checkpoint, K=0": ("latent", "k0"),
    "  same checkpoint, one pass at <disc_emb>": ("latent", "disc"),
    "explicit CoT = U (UME-R1-style)": ("explicit", "explicit"),
    "  U, one pass at <disc_emb>": ("explicit", "disc"),
    "direct, step-matched (VLM2Vec-style)": ("direct", "direct"),
    "direct from U, latent's steps": ("direct-from-u", "direct"),
    "direct, CPU-matched": ("direct-cpu", "direct"),
}
PAPER = {  # paper Table 1: system, All (MMEB-v2, 78 tasks), ms/query on an H20
    "PLUME latent K=8 (from U)": ("PLUME (K=8)", 61.6, 298),
    "explicit CoT = U (UME-R1-style)": ("UME-R1", 60.1, 9023),
    "direct, step-matched (VLM2Vec-style)": ("VLM2Vec-V2", 58.0, 156),
}
LATENT = "PLUME latent K=8 (from U)"
PAIRS = [
    (LATENT, "direct, step-matched (VLM2Vec-style)"),
    (LATENT, "  same checkpoint, one pass at <disc_emb>"),
    (LATENT, "direct from U, latent's steps"),
    (LATENT, "direct, CPU-matched"),
    (LATENT, "explicit CoT = U (UME-R1-style)"),
    (LATENT, "  same checkpoint, K=0"),
    ("explicit CoT = U (UME-R1-style)", "direct, step-matched (VLM2Vec-style)"),
]
PAPER_COMPONENTS = {
    "no transition adapter": 58.8,
    "single MLP instead of MoE": 59.2,
    "no semantic anchor": 60.1,
    "no curriculum": 54.8,
}
PAPER_STEPS = {"K = 4": 59.9, "K = 6": 61.1, "K = 8": 61.6}
MODALITIES = ("image", "video", "visdoc")
WRITTEN_GATE = 80.0  # explicit's written answers: the gate of issue 15 on image-QA tasks


def readouts(report: dict, prefix: str, readout: str) -> list[dict]:
    """The readout `readout` of the main/control runs `<prefix>-s<seed>`, by seed."""
    rows = []
    for r in report["runs"]:
        name = r["run"]["name"]
        if name.rsplit("-s", 1)[0] == prefix and r["run"]["group"] in ("main", "control"):
            if readout in r["readouts"]:
                rows.append(r["readouts"][readout])
    return rows


def _score(entry: dict, key: str) -> float | None:
    ev = entry["eval"]
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


def _ms(efficiency: dict, run: str, batch: int) -> float | None:
    for row in efficiency["rows"]:
        if row["run"] == run and row["batch_size"] == batch:
            return row["ms_per_query"]
    return None


EFFICIENCY_RUN = {LATENT: "latent-s0", "explicit CoT = U (UME-R1-style)": "explicit-s0"}
EFFICIENCY_RUN["direct, step-matched (VLM2Vec-style)"] = "direct-s0"


def main_table(report: dict) -> str:
    keys = (*MODALITIES, "all", "reasoning")
    lines = [
        "| system | Image | Video | VisDoc | All | reasoning tasks | compositional All "
        "| ms/query (b=1) | ms/query (b=16) | paper system | paper All | paper ms/query (H20) |",
        "|" + "---|" * 12,
    ]
    for label, (prefix, readout) in SYSTEMS.items():
        rows = readouts(report, prefix, readout)
        if not rows:
            continue
        cells = [_mean_spread([_score(r, k) for r in rows]) for k in keys]
        comp = readouts(report, prefix, f"{readout}-compositional")
        cells.append(_mean_spread([_score(r, "all") for r in comp]))
        run = EFFICIENCY_RUN.get(label)
        ms = [_ms(report["efficiency"], run, b) if run else None for b in (1, 16)]
        cells += ["–" if m is None else f"{m:.1f}" for m in ms]
        paper = PAPER.get(label, ("", "", ""))
        lines.append(f"| {label.strip()} | " + " | ".join(cells + [str(p) for p in paper]) + " |")
    n = len({r["run"]["seed"] for r in report["runs"] if r["run"]["group"] == "main"})
    lines.append(
        f"\nMean ± standard deviation over {n} seed(s), on the i.i.d. test split; "
        "compositional: the held-out attribute combinations, seed 0. Scores in %: Hit@1 (image, video), "
        "NDCG@5 (documents). Indented rows read the checkpoint above them another way."
    )
    return "\n".join(lines)


def _as_result(entry: dict) -> dict:
    """A readout in the shape evaluation/stats.py pairs (per-query dicts)."""
    return {
        "tasks": {
            name: {
                **{k: v for k, v in t.items() if k != "per_query"},
                "per_query": [{"score": s} for s in t["per_query"]],
            }
            for name, t in entry["tasks"].items()
        }
    }


def paired_table(report: dict, n_boot: int = 2000) -> str:
    from plume_lite.evaluation import stats

    systems = {}
    for label, (prefix, readout) in SYSTEMS.items():
        rows = readouts(report, prefix, readout)
        if rows:
            systems[label.strip()] = [_as_result(r) for r in rows]
    pairs = [(a.strip(), b.strip()) for a, b in PAIRS if a.strip() in systems and b.strip() in systems]
    if not pairs:
        return "(no paired comparison: a system is missing)"
    first = next(iter(systems.values()))[0]
    reasoning = [n for n, t in first["tasks"].items() if t.get("reasoning")]
    rows = stats.compare_table(systems, pairs, groups={"all": None, "reasoning": reasoning}, n_boot=n_boot)
    return stats.markdown(rows)


def written_table(report: dict) -> str:
    rows = readouts(report, "explicit", "explicit")
    names = [n for n, t in (rows[0]["tasks"].items() if rows else []) if "written_answer_accuracy" in t]
    if not names:
        return "(explicit's written answers were not scored)"
    lines = [
        "| task | written answer correct (%) | reasoning | gate ≥ 80 % (image QA) |",
        "|---|---|---|---|",
    ]
    for name in names:
        values = [r["tasks"][name]["written_answer_accuracy"] for r in rows]
        t = rows[0]["tasks"][name]
        gated = t["modality"] == "image"
        passed = gated and min(values) >= WRITTEN_GATE
        mark = ("pass" if passed else "below") if gated else "–"
        lines.append(f"| {name} | {_mean_spread(values)} | {'yes' if t['reasoning'] else 'no'} | {mark} |")
    return "\n".join(lines)


def ablation_table(report: dict, group: str, paper: dict) -> str:
    lines = [
        "| variant (from U, seed 0) | Image | Video | VisDoc | All | reasoning tasks | paper All |",
        "|---|---|---|---|---|---|---|",
    ]
    reference = [r for r in report["runs"] if r["run"]["name"] == "latent-s0"]
    for r in reference:
        label = "K = 8" if group == "steps" else "PLUME latent (K=8)"
        cells = [_mean_spread([_score(r["readouts"]["k8"], k)]) for k in (*MODALITIES, "all", "reasoning")]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {paper.get(label, 61.6)} |")
    for r in (r for r in report["runs"] if r["run"]["group"] == group):
        entry = r["readouts"]["latent"]
        cells = [_mean_spread([_score(entry, k)]) for k in (*MODALITIES, "all", "reasoning")]
        lines.append(
            f"| {r['run']['label']} | " + " | ".join(cells) + f" | {paper.get(r['run']['label'], '–')} |"
        )
    return "\n".join(lines)


def cost_table(report: dict) -> str:
    lines = [
        "| run | steps | training CPU s (mean over seeds) | training wall s (mean) |",
        "|---|---|---|---|",
    ]
    seen = {}
    for r in report["runs"]:
        key = r["run"]["name"].rsplit("-s", 1)[0]
        seen.setdefault(key, []).append(r)
    for key, rows in seen.items():
        steps = ", ".join(map(str, sorted({r["steps"] for r in rows})))
        cells = []
        for field in ("train_cpu_seconds", "train_seconds"):
            secs = [r[field] for r in rows if r.get(field) is not None]
            cells.append(f"{statistics.mean(secs):.0f}" if secs else "–")
        lines.append(f"| {key} | {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def task_table(report: dict) -> str:
    cols = [(label.strip(), readouts(report, p, r)) for label, (p, r) in SYSTEMS.items()]
    cols = [(label, rows[0]) for label, rows in cols if rows]
    names = list(cols[0][1]["tasks"]) if cols else []
    lines = ["| task | " + " | ".join(label for label, _ in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{e['tasks'][name]['score']:.1f}" for _, e in cols) + " |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Accuracy (All) vs ms/query at batch 1, one point per main system (paper Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, marker in zip(EFFICIENCY_RUN, ("*", "s", "o")):
        prefix, readout = SYSTEMS[label]
        scores = [_score(r, "all") for r in readouts(report, prefix, readout)]
        ms = _ms(report["efficiency"], EFFICIENCY_RUN[label], 1)
        if ms is None or not scores or None in scores:
            continue
        spread = statistics.stdev(scores) if len(scores) > 1 else 0
        ax.errorbar(
            ms, statistics.mean(scores), yerr=spread, marker=marker, markersize=12, capsize=4,
            label=label, linestyle="none",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("ms per query (batch 1, log scale)")
    ax.set_ylabel("SynthMMEB overall score (%)")
    ax.set_title("Accuracy vs latency (lite run)")
    ax.legend(fontsize=7)
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
            "## Main table: the chain and its controls",
            main_table(report),
            "## Paired differences (95 % bootstrap CI over seeds, then queries)",
            paired_table(report, n_boot=200 if s["quick"] else 2000),
            "## Explicit's written answers",
            written_table(report),
            "## Component ablation (paper: All)",
            ablation_table(report, "components", PAPER_COMPONENTS),
            "## Number of latent steps K (paper: All)",
            ablation_table(report, "steps", PAPER_STEPS),
            "## Training cost",
            cost_table(report),
            "## Per task (seed 0)",
            task_table(report),
            "![accuracy vs latency](accuracy_vs_latency.png)",
        ]
    )
    plot(report, root / "accuracy_vs_latency.png")
    atomic_write_text(root / "tables.md", tables + "\n")
    atomic_write_text(root / "results.json", json.dumps(report, indent=1, allow_nan=False))
    return report
