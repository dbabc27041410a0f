"""The two baselines of the paper's table, by name, run as their authors' harnesses ran
them (RELEASED_CHECKPOINTS.md §4; D20, D22, D23):

    ume_r1   UME-R1-2B (zhibinlan/UME-R1-2B): explicit chain of thought, then <gen_emb>
             (plume_lite/ume_r1.py); modes "explicit" (their gen) and "direct" (disc)
    vlm2vec  VLM2Vec-V2.0 (VLM2Vec/VLM2Vec-V2.0): one pass over the raw string, last-token
             pooling (plume_lite/vlm2vec.py); mode "direct"

    encoder = load_baseline("ume_r1", "zhibinlan/UME-R1-2B", device="cuda", dtype="auto")
    evaluate(encoder, tasks, mode=encoder.default_mode)       # plume_lite.evaluation

Importing this module does not import torch (a CLI can list the names).
"""

from __future__ import annotations

from plume_lite.errors import ConfigError

__all__ = ["BASELINES", "HUB_IDS", "load_baseline"]

BASELINES = ("ume_r1", "vlm2vec")
HUB_IDS = {"ume_r1": "zhibinlan/UME-R1-2B", "vlm2vec": "VLM2Vec/VLM2Vec-V2.0"}  # the released weights


def load_baseline(name: str, path_or_hub_id=None, **kwargs):
    """The encoder of baseline `name` from a folder or hub id (default: its released
    weights, HUB_IDS). `kwargs` go to its `from_pretrained` (device, dtype; ume_r1:
    max_new_tokens; vlm2vec: positions)."""
    if name == "ume_r1":
        from plume_lite.ume_r1 import UmeR1Encoder as encoder_cls
    elif name == "vlm2vec":
        from plume_lite.vlm2vec import Vlm2VecEncoder as encoder_cls
    else:
        raise ConfigError(f"baseline must be one of {', '.join(BASELINES)}, got {name!r}")
    return encoder_cls.from_pretrained(path_or_hub_id or HUB_IDS[name], **kwargs)
