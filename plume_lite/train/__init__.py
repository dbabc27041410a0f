"""Training: config and profiles (`config`), task-homogeneous batches (`batches`), the
objective (`losses`), one optimisation step (`step`), atomic resumable checkpoints
(`checkpoint`) and the accelerate loop (`loop`). Layer: imports plume_lite and
plume_lite.data only.

    from plume_lite.train import train, resolve_config
    train(resolve_config("tiny", mode="latent"), "data/synth", "runs/latent")
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "train": "loop",
    "TrainConfig": "config",
    "resolve_config": "config",
    "PROFILES": "config",
    "info_nce": "losses",
    "plume_loss": "losses",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    # lazy: `plume_lite.train.config` must not pull in torch and accelerate
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
