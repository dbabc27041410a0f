"""Evaluation: Hit@k / NDCG@k (`metrics`), the on-disk embedding cache and cosine index
(`index`), and the MMEB-v2 protocol with resumable per-task results (`protocol`).
Layer: imports plume_lite, plume_lite.data and plume_lite.train only.

    from plume_lite.evaluation import evaluate, EmbeddingIndex
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "evaluate": "protocol",
    "EmbeddingIndex": "index",
    "EmbeddingCache": "index",
    "hit_at_k": "metrics",
    "ndcg_at_k": "metrics",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
