"""Default data and checkpoints, built on first use and reused from a cache folder.

The cache folder is $PLUME_CACHE if set; else `.cache/` at the root of the source
checkout the package runs from (an editable install); else ~/.cache/plume_lite. It
never depends on the working directory, so notebooks, the demo and the CLI share it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import plume_lite
from plume_lite.io import atomic_dir


def cache_root() -> Path:
    if os.environ.get("PLUME_CACHE"):
        return Path(os.environ["PLUME_CACHE"]).expanduser()
    checkout = Path(plume_lite.__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").exists() and os.access(checkout, os.W_OK):
        return checkout / ".cache"
    return Path.home() / ".cache" / "plume_lite"


def ensure_synth(path, size: str = "tiny", seed: int = 0) -> Path:
    """SynthMMEB at `path`, generated (atomically) unless a complete copy is there."""
    from plume_lite.data.synth import make_synth

    path = Path(path)
    if not (path / "tasks.json").exists():
        with atomic_dir(path) as tmp:
            make_synth(tmp, size=size, seed=seed)
    return path


def default_data(size: str = "tiny", seed: int = 0) -> Path:
    """SynthMMEB of this size and seed in the cache folder (generated once)."""
    return ensure_synth(cache_root() / f"synthmmeb-{size}-seed{seed}", size, seed)


# Half the tiny profile's steps: about 1.5 minutes on 2 CPU cores, so the demo's first
# start stays under 3 minutes. Notebooks pass the same overrides and share the cache.
DEFAULT_OVERRIDES = ("max_steps=150",)


def default_checkpoint(mode: str = "latent", profile: str = "tiny", overrides: tuple = DEFAULT_OVERRIDES,
                       data: Path | None = None, progress: bool = True) -> Path:
    """A trained PlumeModel folder for this mode/profile/overrides, trained if absent.

    An interrupted training resumes from its last checkpoint on the next call."""
    from plume_lite.train import train
    from plume_lite.train_config import resolve_config

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
