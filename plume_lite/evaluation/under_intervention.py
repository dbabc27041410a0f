"""Scores of a model while an intervention (plume_lite.interventions: an expert knocked
out, the anchor masked) is active: the evaluation protocol on a small task subset."""

from __future__ import annotations

from contextlib import nullcontext

from plume_lite.errors import InputError
from plume_lite.evaluation.protocol import evaluate


def score_under(model, tasks, intervention=None, mode: str = "latent", steps=None) -> dict:
    """Per-task scores (evaluation protocol, no embedding cache) with `intervention`
    active, e.g. ``lambda: knock_out_expert(model.adapter, 1)``.

    Args:
        model: a PlumeModel.
        tasks: the EvalTasks to score (a small subset keeps this fast).
        intervention: a zero-argument callable returning a context manager; None scores
            the unmodified model.
        mode: the encode mode.
        steps: latent steps (None: the checkpoint's K).

    Returns:
        {task name: score in %, ..., "mean": mean over the tasks}.

    Example:
        >>> base = score_under(model, tasks)
        >>> ko = score_under(model, tasks, lambda: knock_out_expert(model.adapter, 1))
        >>> ko["mean"] - base["mean"]
    """
    if not tasks:
        raise InputError("score_under needs at least one task")
    with intervention() if intervention is not None else nullcontext():
        result = evaluate(
            model, tasks, mode=mode, steps=steps, progress=False, cache_dir=None, keep_per_query=False
        )
    scores = {name: r["score"] for name, r in result["tasks"].items()}
    scores["mean"] = sum(scores.values()) / len(scores)
    return scores
