"""Plotting helpers for the notebooks: training curves with curriculum stage boundaries,
expert-routing heatmaps, cosine-to-target curves, and galleries of items and failures.

    from plume_lite.apps import viz
    records = viz.read_log("runs/latent/log.jsonl")
    viz.plot_losses(records)                                # one panel per loss part
    viz.plot_routing(viz.expert_usage(traces), ...)         # steps x experts heatmap
    viz.routing_image(trace["gates"], trace["chosen"])      # the same, as a PIL image
    viz.failure_gallery(task, result["tasks"][task.name]["per_query"][i], i)

Only matplotlib and plume_lite's own media loaders; every function draws into the axes
it is given (or a new figure) and returns the figure or axes, so the same calls work in
a notebook, a script (Agg backend) or a test. The picture makers (`routing_image`,
`item_picture`, `contact_sheet`) use no pyplot state, so a server such as the demo may
call them from several threads at once.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

from plume_lite import media
from plume_lite.files import item_kind

LOSS_PARTS = ("total", "ce_q", "ce_c", "nce_gen", "nce_disc", "balance")
LOSS_TITLES = {
    "total": "total loss",
    "ce_q": "CE, query suffix",
    "ce_c": "CE, candidate suffix",
    "nce_gen": "InfoNCE on <gen_emb>",
    "nce_disc": "InfoNCE on <disc_emb>",
    "balance": "router balance term",
}


def _plt():
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- training logs
def read_log(path) -> list[dict]:
    """The records of a training run's log.jsonl (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_spans(records: list[dict]) -> list[dict]:
    """Consecutive runs of steps in one curriculum phase (stage, answer kept or dropped):
    [{"start", "end", "stage", "n_latent", "drop_answer"}], steps inclusive."""
    spans = []
    for r in records:
        key = (r.get("stage", 0), r.get("n_latent", 0), bool(r.get("drop_answer", False)))
        if spans and (spans[-1]["stage"], spans[-1]["n_latent"], spans[-1]["drop_answer"]) == key:
            spans[-1]["end"] = r["step"]
        else:
            spans.append(
                {
                    "start": r["step"],
                    "end": r["step"],
                    "stage": key[0],
                    "n_latent": key[1],
                    "drop_answer": key[2],
                }
            )
    return spans


def stage_table(
    records: list[dict], parts=("ce_q", "nce_gen", "nce_disc"), spans=None, last: int = 5
) -> list:
    """Loss parts per curriculum phase: the mean over the phase and over its last steps.

    Args:
        records: a run's step records (`read_log` or `train(..., on_step=...)`).
        parts: loss parts to average (absent ones are skipped).
        spans: the step ranges to average over (default: this run's own `stage_spans`);
            pass another run's spans to compare a run without the curriculum over the
            same steps.
        last: how many final steps of a phase make its "end" value.

    Returns:
        Rows {"start", "end", "stage", "n_latent", "drop_answer", "<part> mean",
        "<part> end"}, one per phase.

    Example:
        >>> pd.DataFrame(viz.stage_table(viz.read_log(NB.training_log("latent"))))
    """
    rows = []
    for s in spans if spans is not None else stage_spans(records):
        inside = [r for r in records if s["start"] <= r["step"] <= s["end"]]
        row = {k: s[k] for k in ("start", "end", "stage", "n_latent", "drop_answer")}
        for part in parts:
            values = [r[part] for r in inside if part in r]
            if values:
                row[f"{part} mean"] = float(np.mean(values))
                row[f"{part} end"] = float(np.mean(values[-last:]))
        rows.append(row)
    return rows


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def mark_stages(ax, records: list[dict], label: bool = True) -> None:
    """Shade alternate curriculum phases and draw a dashed line at each switch."""
    spans = stage_spans(records)
    if len(spans) < 2:
        return
    for i, s in enumerate(spans):
        if i % 2:
            ax.axvspan(s["start"] - 0.5, s["end"] + 0.5, color="0.92", zorder=0)
        if i:
            ax.axvline(s["start"] - 0.5, color="0.4", linestyle="--", linewidth=0.8)
        if label:
            text = f"S{s['stage']}\n{s['n_latent']} lat" + ("\nno ans" if s["drop_answer"] else "")
            ax.text(
                (s["start"] + s["end"]) / 2,
                0.98,
                text,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=7,
                color="0.25",
            )


def plot_losses(
    records: list[dict],
    parts=LOSS_PARTS,
    smooth: int = 5,
    axes=None,
    label: str | None = None,
    stages: bool = True,
    ncols: int = 3,
):
    """One panel per loss part against the step (raw in light, moving average on top),
    with the curriculum phases marked. Parts absent from the log (e.g. CE in direct
    mode) are skipped. Pass `axes` (from an earlier call's figure) to overlay another
    run: each curve goes to the panel of its part, and parts without a panel are skipped."""
    plt = _plt()
    present = [p for p in parts if any(p in r for r in records)]
    if axes is None:
        nrows = max(1, -(-len(present) // ncols))
        fig, grid = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.8 * nrows), squeeze=False)
        for ax in grid.flat[len(present) :]:
            ax.set_visible(False)
        panels = dict(zip(present, grid.flat))
        for part, ax in panels.items():
            ax.set_gid(f"loss:{part}")
            if stages:
                mark_stages(ax, records)
            ax.set_title(LOSS_TITLES.get(part, part), fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
    else:
        flat = list(np.asarray(axes).flat)
        fig = flat[0].figure
        panels = {ax.get_gid()[5:]: ax for ax in flat if (ax.get_gid() or "").startswith("loss:")}
    for part in present:
        if part not in panels:
            continue
        ax = panels[part]
        rows = [r for r in records if part in r]
        steps = np.array([r["step"] for r in rows])
        values = np.array([r[part] for r in rows], dtype=float)
        (line,) = ax.plot(steps, _smooth(values, smooth), linewidth=1.6, label=label)
        ax.plot(steps, values, color=line.get_color(), alpha=0.25, linewidth=0.8)
    if label is not None:
        for ax in panels.values():
            if ax.get_lines():
                ax.legend(fontsize=8, loc="lower left")
                break
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- routing
def expert_usage(traces: list[dict], weight: str = "chosen") -> np.ndarray:
    """Mean expert use [K, E] over latent traces: the share of the top-k picks each
    expert gets at each step (`weight="chosen"`), or the mean router probability
    (`weight="gates"`). Traces without a router (direct, explicit, K = 0) are an error."""
    if not traces or any("gates" not in t for t in traces):
        raise ValueError(
            "expert_usage needs latent traces with a router (encode(..., mode='latent', "
            "return_trace=True) with an MoE adapter and K > 0)"
        )
    gates = np.stack([np.asarray(t["gates"], dtype=float) for t in traces])  # [N, K, E]
    if weight == "gates":
        return gates.mean(0)
    if weight != "chosen":
        raise ValueError(f"weight must be 'chosen' or 'gates', got {weight!r}")
    picks = np.zeros_like(gates)
    for n, t in enumerate(traces):
        chosen = np.asarray(t["chosen"], dtype=int)  # [K, k]
        for j in range(chosen.shape[0]):
            picks[n, j, chosen[j]] = 1.0 / chosen.shape[1]
    return picks.mean(0)


def _numbers(values, dtype=float) -> np.ndarray:
    """A tensor (any device or dtype), array or nested list as a numpy array."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu()
    return np.asarray(values, dtype=dtype)


def plot_routing(
    matrix,
    row_labels=None,
    col_labels=None,
    ax=None,
    title: str = "",
    fmt: str = ".2f",
    cmap: str = "viridis",
    vmin: float | None = 0.0,
    vmax: float | None = None,
    cbar_label: str = "share of top-k picks",
    chosen=None,
):
    """A heatmap of expert use: rows are tasks (or latent steps), columns experts.

    `chosen` ([rows, k] expert indices, a trace's top-k picks) outlines and stars those
    cells. Drawn with the axes' own methods; only without `ax` does pyplot make a figure
    (so it shows in a notebook)."""
    from matplotlib.patches import Rectangle

    matrix = _numbers(matrix)
    rows, cols = matrix.shape
    if ax is None:
        _, ax = _plt().subplots(figsize=(1.6 + 0.9 * cols, 0.9 + 0.38 * rows))
    picked = np.zeros(matrix.shape, dtype=bool)
    for j, experts in enumerate(_numbers(chosen, int) if chosen is not None else []):
        picked[j, experts] = True
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.grid(False)  # a style's grid lines would cut through the cells
    if rows * cols <= 200:  # numbers in bigger grids would overlap
        for (j, e), value in np.ndenumerate(matrix):
            r, g, b, _ = image.cmap(image.norm(value))
            ax.text(
                e,
                j,
                format(value, fmt) + (" ★" if picked[j, e] else ""),
                ha="center",
                va="center",
                fontsize=8,
                fontweight="bold" if picked[j, e] else "normal",
                color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white",
            )
    for j, e in zip(*np.nonzero(picked)):
        ax.add_patch(Rectangle((e - 0.5, j - 0.5), 1, 1, fill=False, edgecolor="#ff4d4d", linewidth=2))
    ax.set_xticks(range(cols), col_labels if col_labels is not None else [f"E{e}" for e in range(cols)])
    ax.set_yticks(
        range(rows), row_labels if row_labels is not None else [f"step {j + 1}" for j in range(rows)]
    )
    if chosen is not None:
        ax.set_xlabel("routed expert (★ = chosen by top-k)")
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.03).set_label(cbar_label)
    return ax


def figure_image(fig, dpi: float = 110):
    """An RGB PIL image of a matplotlib Figure, drawn by its own Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def routing_image(gates, chosen=None, title: str = "", dpi: float = 110, **kwargs):
    """plot_routing of one trace ([K, E] router probabilities, [K, k] picks) as a PIL
    image, on a figure of its own: safe to call from several threads."""
    from matplotlib.figure import Figure

    rows, cols = _numbers(gates).shape
    w, h = 2.1 + 0.9 * cols, 1.2 + 0.42 * rows
    fig = Figure(figsize=(w, h))
    # fixed margins in inches: tight_layout would cost about half the drawing time
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.45 / w, bottom=0.6 / h, top=1 - 0.4 / h)
    kwargs = {"vmax": 1.0, "cbar_label": "router probability", **kwargs}
    plot_routing(gates, ax=fig.add_subplot(), title=title, chosen=chosen, **kwargs)
    return figure_image(fig, dpi)


# ----------------------------------------------------------------------------- cosine curves
def cosine_to_target(states, target) -> np.ndarray:
    """Cosine similarity of each state [T, D] (or list of [D]) to one target [D]."""
    s = np.asarray(np.stack([np.asarray(x, dtype=float) for x in states]), dtype=float)
    t = np.asarray(target, dtype=float).reshape(-1)
    s = s / np.clip(np.linalg.norm(s, axis=1, keepdims=True), 1e-12, None)
    return s @ (t / max(np.linalg.norm(t), 1e-12))


def plot_cosine_curves(curves: dict, ax=None, normalise: bool = True, title: str = ""):
    """Mean (and interquartile band) of cosine-to-target curves per label.

    `curves` maps a label to a list of 1-D arrays (one per query). With `normalise`,
    each curve is resampled onto relative progress 0..1 (step j of K, or token t of
    T), so a K = 8 latent rollout and a 60-token rationale share one x-axis."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    grid = np.linspace(0.0, 1.0, 21)
    for label, rows in curves.items():
        rows = [np.asarray(r, dtype=float) for r in rows if len(r)]
        if not rows:
            continue
        if normalise:
            y = np.stack(
                [
                    np.interp(grid, np.linspace(0, 1, len(r)) if len(r) > 1 else [0.0], r)
                    if len(r) > 1
                    else np.full_like(grid, r[0])
                    for r in rows
                ]
            )
            x = grid
        else:
            width = min(len(r) for r in rows)
            y, x = np.stack([r[:width] for r in rows]), np.arange(1, width + 1)
        (line,) = ax.plot(
            x, y.mean(0), marker="o" if len(x) <= 21 else None, markersize=3, label=f"{label} (n={len(rows)})"
        )
        ax.fill_between(
            x, np.percentile(y, 25, axis=0), np.percentile(y, 75, axis=0), color=line.get_color(), alpha=0.2
        )
    ax.set_xlabel("relative reasoning progress" if normalise else "step")
    ax.set_ylabel("cosine to the positive target")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


# ----------------------------------------------------------------------------- galleries
def item_caption(item: dict, width: int = 28) -> str:
    """The words of an item, wrapped (instruction in brackets, then the text)."""
    words = []
    if item.get("instruction"):
        words.append(f"[{item['instruction']}]")
    if item.get("text"):
        words.append(str(item["text"]))
    return "\n".join(textwrap.wrap(" ".join(words), width)) if words else ""


def contact_sheet(frames: list, columns: int | None = None, gap: int = 2):
    """Video frames in a grid on white, in time order (left to right, top to bottom);
    one row of all the frames by default."""
    from PIL import Image

    columns = columns or len(frames)
    w, h = frames[0].size
    rows = -(-len(frames) // columns)
    sheet = Image.new(
        "RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), (255, 255, 255)
    )
    for i, frame in enumerate(frames):
        sheet.paste(frame.resize((w, h)), ((i % columns) * (w + gap), (i // columns) * (h + gap)))
    return sheet


def item_picture(
    item: dict, frames: int = 4, dpi: float = 72, max_pixels: int = media.DEFAULT_PDF_MAX_PIXELS
):
    """The visual part of an item as one PIL image: the image, a strip of `frames`
    video frames (frames=1: the middle one), a PDF page rendered at `dpi` within
    `max_pixels`; None for a text-only item. A bad file raises its MediaError."""
    kind = item_kind(item)
    if kind == "image":
        return media.load_image(item["image"])
    if kind == "pdf":
        return media.load_pdf_page(item["pdf"], page=int(item.get("page", 0)), dpi=dpi, max_pixels=max_pixels)
    if kind == "video":
        return contact_sheet(media.load_video(item["video"], num_frames=frames))
    return None


def show_item(item: dict, ax, title: str = "", color: str | None = None, width: int = 28) -> None:
    """Draw one item into `ax`: its picture with the words below, or the words alone."""
    picture = item_picture(item)
    caption = item_caption(item, width)
    if picture is not None:
        ax.imshow(picture)
        ax.set_xticks([])
        ax.set_yticks([])
        if caption:
            ax.set_xlabel(caption, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(
            0.5,
            0.5,
            caption or "(empty)",
            ha="center",
            va="center",
            fontsize=8,
            wrap=True,
            transform=ax.transAxes,
        )
    if title:
        ax.set_title(title, fontsize=8, color=color or "black")
    if color:
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2.5)


def show_items(items: list, titles=None, ncols: int = 4, size: float = 2.4, colors=None):
    """A grid of items (see show_item); returns the figure."""
    plt = _plt()
    n = max(1, len(items))
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * 1.25 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(items):
            ax.set_visible(False)
            continue
        show_item(items[i], ax, title=titles[i] if titles else "", color=colors[i] if colors else None)
    fig.tight_layout()
    return fig


def failure_gallery(
    task, row: dict, query_index: int, max_shown: int = 4, title: str = "", size: float = 2.4
):
    """One query of an evaluated task: the query, its positive target, and the
    candidates ranked above the target (from `evaluate`'s per_query rows: `top`,
    `top_scores`, `rank`, `pos_score`). Green frame = target (the most relevant
    positive), red = distractor, orange = a less relevant positive (graded qrels)."""
    rel = {int(k): float(v) for k, v in task.qrels[query_index].items() if float(v) > 0}
    if not rel and task.query_candidates is not None:
        rel = {int(task.query_candidates[query_index][0]): 1.0}
    target = max(rel, key=rel.get) if rel else None
    shown, titles, colors = [task.queries[query_index]], ["query"], ["#1f77b4"]
    rank = row.get("rank")
    if target is not None:
        shown.append(task.candidates[target])
        pos = row.get("pos_score")
        titles.append(f"target: rank {rank}" + (f", cos {pos:.2f}" if pos is not None else ""))
        colors.append("#2ca02c")
    for r, (j, s) in enumerate(zip(row.get("top", []), row.get("top_scores", []))):
        if j == target or len(shown) >= max_shown + 2:
            break  # only what ranked above the target
        shown.append(task.candidates[j])
        if j in rel:  # graded qrels: another, less relevant positive
            titles.append(f"#{r + 1} also relevant (grade {rel[j]:g}), cos {s:.2f}")
            colors.append("#ff7f0e")
        else:
            titles.append(f"#{r + 1} distractor, cos {s:.2f}")
            colors.append("#d62728")
    fig = show_items(shown, titles, ncols=len(shown), size=size, colors=colors)
    fig.suptitle(title or f"{task.name}: query {query_index}", fontsize=10)
    fig.tight_layout()
    return fig
