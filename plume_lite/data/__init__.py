"""Data: SynthMMEB (an offline MMEB-v2-shaped benchmark with rationales), loaders for the
real MMEB sources, and safe media decoding. Names are imported lazily so that importing
`plume_lite.data.formats` stays cheap."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "make_synth": "synth",
    "load_train_pairs": "mmeb",
    "load_eval_tasks": "mmeb",
    "load_image": "media",
    "load_video": "media",
    "load_pdf_page": "media",
    "pdf_num_pages": "media",
    "MediaError": "media",
    "DataError": "storage",
    "TrainPair": "formats",
    "EvalTask": "formats",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
