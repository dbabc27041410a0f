"""Evaluation: Hit@k / NDCG@k (`metrics`), the on-disk embedding cache and cosine index
(`index`), and the MMEB-v2 protocol with resumable per-task results (`protocol`).
Layer: imports plume_lite, plume_lite.data and plume_lite.train only.

    from plume_lite.evaluation import evaluate, EmbeddingIndex
"""

from __future__ import annotations

from plume_lite.lazy import lazy_exports

# fmt: off
_EXPORTS = {
    "evaluate": ".protocol", "EmbeddingIndex": ".index", "EmbeddingCache": ".index",
    "hit_at_k": ".metrics", "ndcg_at_k": ".metrics",
    "paired_difference": ".stats", "mcnemar": ".stats", "compare_table": ".stats",
}
# fmt: on
__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
