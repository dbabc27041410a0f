"""Training: config and profiles (`config`), task-homogeneous batches (`batches`), the
objective (`losses`), one optimisation step (`step`), atomic resumable checkpoints
(`checkpoint`) and the accelerate loop (`loop`). Layer: imports plume_lite and
plume_lite.data only.

    from plume_lite.train import train, resolve_config
    train(resolve_config("tiny", mode="latent"), "data/synth", "runs/latent")
"""

from __future__ import annotations

from plume_lite.lazy import lazy_exports

# fmt: off
_EXPORTS = {
    "train": ".loop", "TrainConfig": ".config", "resolve_config": ".config", "PROFILES": ".config",
    "info_nce": ".losses", "plume_loss": ".losses",
}
# fmt: on
__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
