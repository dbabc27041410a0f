"""Interactive views for the notebooks, on ipywidgets (imported only when a view is built):
explore one latent rollout step by step, and step through an evaluation's failed queries.

    from plume_lite.apps import widgets
    widgets.rollout_explorer(model, task.queries[:12], task.candidates)   # notebook 03
    widgets.failure_browser(results, NB.tasks())                          # notebook 04

Each function returns an ipywidgets VBox: its controls, then an Output widget (the last
child) holding the current view, a picture drawn on a figure of its own (no pyplot state
is left behind) and a table of the numbers behind it. The first view is drawn while the
box is built, so a notebook run without a browser (nbmake, nbconvert) records it; the
box's own display carries the same picture and text as a fallback for viewers without
the widget's state. `box.view` is the current view's data (a dict), `box.controls` names
the controls, and moving a control (`box.controls["step"].value = 3`) redraws the view.

The numbers come from pure functions that need no widgets: `rollout_trace` and
`rollout_step` (one item's routing, nearest candidates and logit-lens words at a latent
step), `failed_queries` and `failure_view` (an evaluation's failures, one at a time).
"""

from __future__ import annotations

import base64
import functools
import html
import io
import os
from pathlib import Path

import numpy as np

from plume_lite.apps import viz
from plume_lite.files import item_kind

NEAREST = 5  # candidates listed per view
WORDS = 5  # logit-lens words per latent state
ALL = ""  # the failure browser's task choice "all tasks"


# ----------------------------------------------------------------------------- shared
def item_label(item: dict, width: int = 48) -> str:
    """A one-line name of an item: its kind and file name, then its text (else its
    instruction), cut to `width`.

    Example:
        >>> item_label({"image": "/data/00003.png", "text": "which shape is red?"})
        '[image] 00003.png which shape is red?'
    """
    words = " ".join(str(item.get("text") or item.get("instruction") or "").split())
    kind = item_kind(item)
    if kind != "text":
        source = item[kind]
        name = Path(source).name if isinstance(source, (str, os.PathLike)) else "(in memory)"
        page = f" p{item['page']}" if kind == "pdf" and "page" in item else ""
        words = f"[{kind}] {name}{page}" + (f" {words}" if words else "")
    words = words or "(empty)"
    return words if len(words) <= width else words[: width - 1] + "…"


def _png(fig) -> str:
    """A matplotlib Figure as base64 PNG text, drawn by its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _bundle(png: str | None, rows: list[tuple[str, str]], title: str) -> dict:
    """The mime bundle of one view: the picture and a two-column table (html), the same
    as text (text/plain)."""
    cells = "".join(
        f"<tr><th style='text-align:left;vertical-align:top;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    picture = f"<img src='data:image/png;base64,{png}' style='max-width:100%'/>" if png else ""
    bundle = {
        "text/html": f"<div><b>{html.escape(title)}</b><br/>{picture}<table>{cells}</table></div>",
        "text/plain": "\n".join([title] + [f"{k}: {v}" for k, v in rows]),
    }
    if png:
        bundle["image/png"] = png
    return bundle


@functools.cache
def _box_type():
    import ipywidgets

    class ViewBox(ipywidgets.VBox):
        """Controls, then an Output widget with the current view (see the module doc)."""

        def __init__(self, controls: dict, draw):
            self.controls = controls
            self.output = ipywidgets.Output()
            self.view: dict = {}
            self.static: dict = {}
            self._draw = draw
            super().__init__(children=[*controls.values(), self.output])

        def redraw(self, *_):
            """Recompute the view from the controls and show it in the Output widget."""
            try:
                self.view, self.static = self._draw()
            except Exception as e:  # a control moved onto, say, an unreadable file
                if not self.static:
                    raise  # the first view: the cell that builds the box fails with it
                message = f"this view could not be drawn: {type(e).__name__}: {e}"
                self.view, self.static = {"error": message}, {"text/plain": message}
            # the Output widget gets the html (picture and table) and the text, not the
            # picture twice: that is the fallback of the box's own display
            data = {k: v for k, v in self.static.items() if k != "image/png"}
            self.output.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)

        def _repr_mimebundle_(self, **kwargs):
            # a viewer with the widget's state shows the widget; others the view's picture
            bundle = {**self.static, **(super()._repr_mimebundle_(**kwargs) or {})}
            bundle["text/plain"] = self.static.get("text/plain", bundle.get("text/plain", ""))
            return bundle

    return ViewBox


def _build(controls: dict, draw, watch: dict):
    """A ViewBox of `controls`; each control in `watch` calls its handler (default
    `redraw`) when its value changes. The first view is drawn now."""
    box = _box_type()(controls, draw)
    for name, handler in watch.items():
        controls[name].observe(handler or box.redraw, names="value")
    box.redraw()
    return box


# ----------------------------------------------------------------------------- rollout explorer
def rollout_trace(model, item: dict, steps: int | None = None, words: int = WORDS) -> dict:
    """One item's latent rollout, ready to browse step by step.

    Args:
        model: a PlumeModel.
        item: a query or candidate item (dict).
        steps: latent steps K (None: the model's own).
        words: logit-lens words kept per state.

    Returns:
        {"states": [K, D] unit-norm latent states (float32 tensor), "embedding": [D],
        "gates": [K, E] router probabilities and "chosen": [K, k] top-k experts (numpy;
        None without an MoE router), "words": per step the `words` nearest ordinary
        tokens with probabilities, "token": per step the top token, specials included}.

    Raises:
        ValueError: K is 0 (there is no latent state to browse).

    Example:
        >>> trace = rollout_trace(model, task.queries[0])
        >>> trace["chosen"][2]            # the experts of step 3
        array([0, 2])
    """
    import torch
    import torch.nn.functional as F

    from plume_lite.inspection import logit_lens

    emb, (trace,) = model.encode([item], mode="latent", steps=steps, return_trace=True)
    if not trace.get("latents"):
        raise ValueError("the rollout explorer needs K > 0 latent steps (got a rollout without latents)")
    latents = torch.stack([torch.as_tensor(z).float().cpu() for z in trace["latents"]])
    gates = trace.get("gates")
    return {
        "states": F.normalize(latents, dim=-1),
        "embedding": torch.as_tensor(emb[0]).float().cpu(),
        "gates": None if gates is None else torch.as_tensor(gates).float().cpu().numpy(),
        "chosen": None if gates is None else torch.as_tensor(trace["chosen"]).cpu().numpy().astype(int),
        "words": logit_lens(model, latents, k=words, words_only=True),
        "token": [row[0] for row in logit_lens(model, latents, k=1)],
    }


def _rank(cos, index: int) -> int:
    """The rank of candidate `index` by the scores `cos`; ties count against it, as in evaluate."""
    return int((cos >= cos[index]).sum())


def _index_set(positive) -> set[int]:
    """None, one candidate index or several, as a set of ints."""
    if positive is None:
        return set()
    if isinstance(positive, (int, np.integer)):
        return {int(positive)}
    return {int(p) for p in positive}


def rollout_step(trace: dict, candidate_emb, step: int, k: int = NEAREST, positives=()) -> dict:
    """What one latent step of `rollout_trace` shows: its routing, the candidates nearest
    to its state and the state's logit-lens words.

    Args:
        trace: a `rollout_trace` result.
        candidate_emb: [C, D] unit-norm candidate embeddings (same model and mode).
        step: 1..K.
        k: nearest candidates listed.
        positives: candidate indices that are right for this item (marked, and ranked).

    Returns:
        {"step", "steps" (K), "experts" (the chosen expert indices, [] without a router),
        "gates" (router probability per expert), "nearest" ([(candidate index, cosine)],
        nearest first), "positive_rank" (best rank of a positive by this state, None
        without positives), "final_rank" (the same by the item's embedding), "words",
        "token"}.

    Example:
        >>> rollout_step(trace, cand_emb, 3, positives=[7])["experts"]
        [0, 2]
    """
    import torch

    steps = len(trace["states"])
    if not 1 <= step <= steps:
        raise ValueError(f"step must be in 1..{steps}, got {step}")
    j = step - 1
    candidate_emb = torch.as_tensor(candidate_emb).float()
    cos = candidate_emb @ trace["states"][j]
    final = candidate_emb @ trace["embedding"]
    top = cos.topk(min(k, len(cos)))
    positives = [int(p) for p in positives]
    return {
        "step": step,
        "steps": steps,
        "experts": [] if trace["chosen"] is None else [int(e) for e in trace["chosen"][j]],
        "gates": [] if trace["gates"] is None else [round(float(g), 4) for g in trace["gates"][j]],
        "nearest": [(int(i), round(float(c), 4)) for c, i in zip(top.values, top.indices)],
        "positive_rank": min((_rank(cos, p) for p in positives), default=None),
        "final_rank": min((_rank(final, p) for p in positives), default=None),
        "words": trace["words"][j],
        "token": trace["token"][j],
    }


def _rollout_figure(item, trace, view, candidates, positives):
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(12.5, 3.4))
    grid = fig.add_gridspec(1, 3, width_ratios=[1.0, 1.5, 1.8], wspace=0.45)
    viz.show_item(item, fig.add_subplot(grid[0]), title="item")
    ax = fig.add_subplot(grid[1])
    step = view["step"]
    if trace["gates"] is None:
        ax.text(0.5, 0.5, "no router\n(adapter without experts)", ha="center", va="center")
        ax.set_axis_off()
    else:
        experts = ", ".join(f"E{e}" for e in view["experts"])
        viz.plot_routing(
            trace["gates"],
            ax=ax,
            chosen=trace["chosen"],
            vmin=None,  # scaled to this trace: a near-uniform router still shows its preferences
            vmax=None,
            cbar_label="router probability",
            title=f"routing; step {step}: {experts}",
        )
        ax.add_patch(
            Rectangle((-0.5, step - 1.5), trace["gates"].shape[1], 1, fill=False, edgecolor="black", lw=3)
        )
        ax.grid(False)  # a theme's grid (seaborn whitegrid) would cut through the cells
    ax = fig.add_subplot(grid[2])
    names = [item_label(candidates[i], 30) for i, _ in view["nearest"]]
    scores = [c for _, c in view["nearest"]]
    colors = ["#2ca02c" if i in positives else "#8c8c8c" for i, _ in view["nearest"]]
    ax.barh(range(len(scores)), scores, color=colors)
    ax.set_yticks(range(len(scores)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("cosine to the state" + (" (green = right answer)" if positives else ""))
    ax.set_title(f"nearest candidates of z{step}", fontsize=10)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.2, top=0.86)
    return fig


def rollout_explorer(
    model,
    items: list,
    candidates: list,
    positives=None,
    labels=None,
    steps: int | None = None,
    k: int = NEAREST,
    words: int = WORDS,
    batch_size: int = 16,
):
    """A widget to browse latent rollouts: pick an item, slide over its latent steps.

    Each view shows the item, the router's probabilities at every step with the chosen
    experts starred and the selected step framed, the candidates nearest to that step's
    state (the right ones in green) and the state's logit-lens words.

    Args:
        model: a PlumeModel with an MoE adapter (the notebooks' latent checkpoint).
        items: the items to choose from (e.g. a task's queries).
        candidates: the pool the states are compared with (e.g. the task's candidates),
            embedded once here in latent mode.
        positives: per item, the right candidate index or indices (e.g. from the task's
            qrels); None: nothing marked.
        labels: dropdown names of the items; default `item_label`.
        steps: latent steps K (None: the model's own).
        k: nearest candidates shown.
        words: logit-lens words shown.
        batch_size: items per encode call when embedding the candidates.

    Returns:
        An ipywidgets VBox: `controls["item"]` (Dropdown of item indices),
        `controls["step"]` (IntSlider 1..K), then the Output widget; `view` is the
        `rollout_step` dict of the current view plus "item" (its index).

    Example:
        >>> explorer = rollout_explorer(model, task.queries[:12], task.candidates)
        >>> explorer.controls["step"].value = 3
        >>> explorer.view["experts"]
        [0, 2]
    """
    import ipywidgets

    if not items or not candidates:
        raise ValueError("rollout_explorer needs at least one item and one candidate")
    if positives is not None and len(positives) != len(items):
        raise ValueError(f"{len(positives)} positives for {len(items)} items")
    positives = [_index_set(p) for p in (positives if positives is not None else [None] * len(items))]
    labels = list(labels) if labels is not None else [f"{i}: {item_label(it)}" for i, it in enumerate(items)]
    candidate_emb = model.encode(candidates, mode="latent", steps=steps, batch_size=batch_size)
    traces = {0: rollout_trace(model, items[0], steps, words)}
    K = len(traces[0]["states"])
    controls = {
        "item": ipywidgets.Dropdown(
            options=[(label, i) for i, label in enumerate(labels)], value=0, description="item"
        ),
        "step": ipywidgets.IntSlider(
            value=1, min=1, max=K, description="latent step", continuous_update=False
        ),
    }

    def draw():
        i, step = controls["item"].value, controls["step"].value
        if i not in traces:
            traces[i] = rollout_trace(model, items[i], steps, words)
        trace = traces[i]
        view = {"item": i, **rollout_step(trace, candidate_emb, step, k, positives[i])}
        fig = _rollout_figure(items[i], trace, view, candidates, positives[i])
        rows = [
            ("item", labels[i]),
            (
                "routing",
                "no router"
                if not view["experts"]
                else ", ".join(f"E{e} p={view['gates'][e]:.2f}" for e in view["experts"])
                + "  (router p per expert: "
                + " ".join(f"{g:.2f}" for g in view["gates"])
                + ")",
            ),
            ("logit lens", ", ".join(f"{w!r} {p:.3f}" for w, p in view["words"])),
            ("top token", f"{view['token'][0]!r} {view['token'][1]:.2f}"),
            (
                "nearest candidates",
                "; ".join(
                    f"#{r + 1} {item_label(candidates[j], 40)} cos {c:.3f}"
                    + (" ✓" if j in positives[i] else "")
                    for r, (j, c) in enumerate(view["nearest"])
                ),
            ),
        ]
        if view["positive_rank"] is not None:
            rows.append(
                (
                    "right answer",
                    f"rank {view['positive_rank']} by this state, rank {view['final_rank']} by the embedding",
                )
            )
        return view, _bundle(_png(fig), rows, f"latent step {step} of {view['steps']}")

    return _build(controls, draw, {"item": None, "step": None})


# ----------------------------------------------------------------------------- failure browser
def _per_mode(results: dict) -> dict:
    """{mode: evaluate result}: a single result becomes {its setting's mode: it}."""
    if "tasks" in results and isinstance(results.get("tasks"), dict):
        return {results.get("setting", {}).get("mode", "result"): results}
    return dict(results)


def failed_queries(result: dict, task: str | None = None) -> list[dict]:
    """The failed queries of one `evaluate` result: those whose best positive is not ranked first.

    Args:
        result: a dict of `plume_lite.evaluation.protocol.evaluate` (kept per-query rows).
        task: only this task's failures; None: every task's, in the result's task order.

    Returns:
        [{"task", "query" (index), "rank", "score", "pos_score", "top", "top_scores"}],
        by task, then query.

    Raises:
        ValueError: the result was made without per-query rows (keep_per_query=False).

    Example:
        >>> [f["rank"] for f in failed_queries(result, "img_cls_colorshape")][:3]
        [2, 5, 3]
    """
    rows = []
    for name, r in result["tasks"].items():
        if task is not None and name != task:
            continue
        if "per_query" not in r:
            raise ValueError(f"task {name}: the result has no per-query rows (evaluate(keep_per_query=True))")
        rows += [{"task": name, "query": i, **pq} for i, pq in enumerate(r["per_query"]) if pq["rank"] != 1]
    return rows


def _relevant(task, i: int) -> dict[int, float]:
    rel = {int(c): float(g) for c, g in task.qrels[i].items() if float(g) > 0}
    if not rel and task.query_candidates is not None:
        rel = {int(task.query_candidates[i][0]): 1.0}
    return rel


def failure_view(results: dict, tasks, failure: dict, mode: str) -> dict:
    """What the failure browser shows for one failed query.

    Args:
        results: {mode: evaluate result} (or one result).
        tasks: the evaluated EvalTasks (a list, or a dict by name).
        failure: one row of `failed_queries(results[mode])`.
        mode: the mode whose failure it is.

    Returns:
        {"mode", "task", "query" (index), "query_label", "rank" (of the best positive),
        "target" ((candidate index, label, cosine) of the most relevant positive),
        "top" ([(candidate index, label, cosine, relevant)] ranked first),
        "other_ranks" ({other mode: its rank of the same query})}.

    Example:
        >>> failure_view(results, NB.tasks(), failed_queries(results["latent"])[0], "latent")["rank"]
        3
    """
    results = _per_mode(results)
    tasks = tasks if isinstance(tasks, dict) else {t.name: t for t in tasks}
    task, i = tasks[failure["task"]], failure["query"]
    rel = _relevant(task, i)
    target = max(rel, key=rel.get) if rel else None
    return {
        "mode": mode,
        "task": task.name,
        "query": i,
        "query_label": item_label(task.queries[i], 80),
        "rank": failure["rank"],
        "target": None
        if target is None
        else (target, item_label(task.candidates[target], 60), failure.get("pos_score")),
        "top": [
            (int(j), item_label(task.candidates[j], 60), float(s), j in rel)
            for j, s in zip(failure.get("top", []), failure.get("top_scores", []))
        ],
        "other_ranks": {
            m: r["tasks"][task.name]["per_query"][i]["rank"]
            for m, r in results.items()
            if m != mode and task.name in r["tasks"] and "per_query" in r["tasks"][task.name]
        },
    }


def failure_browser(results: dict, tasks, mode: str | None = None, max_shown: int = 4, size: float = 1.8):
    """A widget to step through failed queries: the query, its target and what ranked above it.

    Each view is `viz.failure_gallery` of one failure (query, target in green with its
    rank and cosine, the distractors ranked above it in red) with the top candidates,
    their scores and the same query's rank in the other modes listed below.

    Args:
        results: {mode: evaluate result}, e.g. ``{m: NB.evaluate(m) for m in modes}``,
            or one result.
        tasks: the evaluated EvalTasks (list or dict by name), e.g. ``NB.tasks()``.
        mode: the mode shown first (default: "latent" when present, else the first).
        max_shown: distractors drawn per failure.
        size: inches per picture.

    Returns:
        An ipywidgets VBox: `controls["mode"]` and `controls["task"]` (Dropdowns; task
        "" = all tasks), `controls["failure"]` (IntSlider 1..n over the failures), then
        the Output widget; `view` is the `failure_view` dict (plus "n_failures" and
        "index"), or {"n_failures": 0} when the selection has none.

    Example:
        >>> browser = failure_browser({m: NB.evaluate(m) for m in ("direct", "latent")}, NB.tasks())
        >>> browser.controls["failure"].value = 2
        >>> browser.view["task"], browser.view["rank"]
        ('img_cls_colorshape', 3)
    """
    import ipywidgets
    import matplotlib.pyplot as plt

    results = _per_mode(results)
    if not results:
        raise ValueError("failure_browser needs at least one evaluation result")
    tasks = tasks if isinstance(tasks, dict) else {t.name: t for t in tasks}
    mode = mode or ("latent" if "latent" in results else next(iter(results)))
    if mode not in results:
        raise ValueError(f"mode {mode!r} is not one of the results' modes {list(results)}")
    missing = [n for r in results.values() for n in r["tasks"] if n not in tasks]
    if missing:
        raise ValueError(f"results name tasks that are not in `tasks`: {sorted(set(missing))}")

    def task_options(m):
        counts = {n: len(failed_queries(results[m], n)) for n in results[m]["tasks"]}
        return [(f"all tasks ({sum(counts.values())} failed)", ALL)] + [
            (f"{n} ({c} failed)", n) for n, c in counts.items()
        ]

    controls = {
        "mode": ipywidgets.Dropdown(options=list(results), value=mode, description="mode"),
        "task": ipywidgets.Dropdown(options=task_options(mode), value=ALL, description="task"),
        "failure": ipywidgets.IntSlider(
            value=1, min=1, max=1, description="failure", continuous_update=False
        ),
    }
    state = {"failures": [], "quiet": False}  # quiet: controls moved here, one redraw after

    def list_failures():
        m, slider = controls["mode"].value, controls["failure"]
        state["failures"] = failed_queries(results[m], controls["task"].value or None)
        n = len(state["failures"])
        slider.max, slider.value, slider.disabled = max(1, n), 1, n == 0

    def on_mode(change):
        if state["quiet"]:
            return
        state["quiet"] = True
        try:
            task = controls["task"].value  # kept when the new mode has it; the counts change
            controls["task"].options = task_options(change["new"])
            controls["task"].value = task if task in results[change["new"]]["tasks"] else ALL
            list_failures()
        finally:
            state["quiet"] = False
        box.redraw()

    def on_task(_):
        if state["quiet"]:
            return
        state["quiet"] = True
        try:
            list_failures()
        finally:
            state["quiet"] = False
        box.redraw()

    def on_failure(_):
        if not state["quiet"]:
            box.redraw()

    def draw():
        m, failures = controls["mode"].value, state["failures"]
        if not failures:
            where = controls["task"].value or "any task"
            return {"n_failures": 0}, _bundle(None, [], f"{m}: no failed query on {where}")
        index = controls["failure"].value
        failure = failures[index - 1]
        view = {**failure_view(results, tasks, failure, m), "n_failures": len(failures), "index": index}
        task = tasks[failure["task"]]
        open_before = set(plt.get_fignums())
        try:
            fig = viz.failure_gallery(
                task,
                failure,
                failure["query"],
                max_shown=max_shown,
                size=size,
                title=f"{m}: {task.name}, query {failure['query']} (target ranked #{failure['rank']})",
            )
            png = _png(fig)
        finally:  # drawn through pyplot: close it (also when a file fails), or a later cell shows it
            for number in set(plt.get_fignums()) - open_before:
                plt.close(number)
        rows = [
            ("query", view["query_label"]),
            (
                "target",
                "none"
                if view["target"] is None
                else f"{view['target'][1]} (candidate {view['target'][0]}), rank {view['rank']}"
                + (f", cos {view['target'][2]:.3f}" if view["target"][2] is not None else ""),
            ),
            (
                "top candidates",
                "; ".join(
                    f"#{r + 1} {label} cos {s:.3f}" + (" ✓" if ok else "")
                    for r, (_, label, s, ok) in enumerate(view["top"])
                ),
            ),
        ]
        if view["other_ranks"]:
            rows.append(
                (
                    "other modes",
                    ", ".join(f"{o} ranks the target #{r}" for o, r in view["other_ranks"].items()),
                )
            )
        title = f"{m}: failure {index} of {len(failures)} ({task.name}, query {failure['query']})"
        return view, _bundle(png, rows, title)

    list_failures()
    box = _build(controls, draw, {"mode": on_mode, "task": on_task, "failure": on_failure})
    return box
