"""Data: SynthMMEB (an offline MMEB-v2-shaped benchmark with rationales), loaders for the
real MMEB sources, and safe media decoding. Names are imported lazily so that importing
`plume_lite.data.formats` stays cheap."""

from __future__ import annotations

from plume_lite.lazy import lazy_exports

# fmt: off
_EXPORTS = {
    "make_synth": ".synth", "load_train_pairs": ".mmeb", "load_eval_tasks": ".mmeb",
    "load_image": "plume_lite.media", "load_video": "plume_lite.media",
    "load_pdf_page": "plume_lite.media", "pdf_num_pages": "plume_lite.media",
    "MediaError": "plume_lite.media", "DataError": ".storage", "TrainPair": ".formats",
    "EvalTask": ".formats", "EVAL_SPLITS": ".synth_base",
}
# fmt: on
__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
