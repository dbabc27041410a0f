"""The routing trace of one query as a steps x experts heatmap.

Cells hold the router probability of each routed expert at each latent step; the
experts the top-k picked (the ones that actually ran) are outlined and starred. Drawn
with matplotlib's object API (no pyplot), which is safe from several request threads.
"""
from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image


def _to_image(fig: Figure) -> Image.Image:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def routing_heatmap(gates, chosen, title: str = "") -> Image.Image:
    """gates: [K, E] router probabilities; chosen: [K, k] expert indices."""
    gates = [[float(v) for v in row] for row in gates]
    chosen = [[int(e) for e in row] for row in chosen]
    steps, experts = len(gates), len(gates[0])
    w, h = 2.1 + 0.9 * experts, 1.2 + 0.42 * steps
    fig = Figure(figsize=(w, h))
    # fixed margins in inches: tight_layout would cost about half the drawing time
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.45 / w, bottom=0.6 / h, top=1 - 0.4 / h)
    ax = fig.add_subplot()
    im = ax.imshow(gates, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for j, row in enumerate(gates):
        for e, p in enumerate(row):
            picked = e in chosen[j]
            ax.text(e, j, f"{p:.2f}{' ★' if picked else ''}", ha="center", va="center",
                    fontsize=8, color="black" if p > 0.6 else "white",
                    fontweight="bold" if picked else "normal")
            if picked:
                ax.add_patch(Rectangle((e - 0.5, j - 0.5), 1, 1, fill=False,
                                       edgecolor="#ff4d4d", linewidth=2))
    ax.set_xticks(range(experts), [f"E{e}" for e in range(experts)])
    ax.set_yticks(range(steps), [f"step {j + 1}" for j in range(steps)])
    ax.set_xlabel("routed expert (★ = chosen by top-k)")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03, ticks=[0, 0.5, 1])
    return _to_image(fig)


def message_image(text: str) -> Image.Image:
    """Stands in for the heatmap when a mode has no router (direct, explicit, K = 0)."""
    fig = Figure(figsize=(5, 1.6))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11)
    return _to_image(fig)
