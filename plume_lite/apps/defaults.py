"""Default checkpoints, trained on first use and reused from the cache folder
(plume_lite.runtime.cache_root), shared by the notebooks and the demo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from plume_lite.data.synth import default_data
from plume_lite.runtime import cache_root

# Half the tiny profile's steps: about 1.5 minutes on 2 CPU cores, so the demo's first
# start stays under 3 minutes. Notebooks pass the same overrides and share the cache.
DEFAULT_OVERRIDES = ("max_steps=150",)


def default_checkpoint(
    mode: str = "latent",
    profile: str = "tiny",
    overrides: tuple = DEFAULT_OVERRIDES,
    data: Path | None = None,
    progress: bool = True,
) -> Path:
    """A trained PlumeModel folder for this mode/profile/overrides, trained if absent.

    An interrupted training resumes from its last checkpoint on the next call."""
    from plume_lite.train.config import resolve_config
    from plume_lite.train.loop import train

    overrides = tuple(overrides)
    tag = hashlib.sha256(json.dumps([mode, profile, overrides]).encode()).hexdigest()[:8]
    run = cache_root() / "checkpoints" / f"{profile}-{mode}-{tag}"
    model_dir = run / "model"
    if not (model_dir / "plume_config.json").exists():
        config = resolve_config(profile, mode=mode, overrides=list(overrides) + [f"progress_bar={progress}"])
        data = data or default_data()
        resume = (run / "train_config.json").exists()
        train(config, data, run, resume=resume)
    return model_dir
