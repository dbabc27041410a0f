"""plume_lite: PLUME universal multimodal embeddings with continuous latent reasoning steps."""

from plume_lite.errors import CheckpointError, ConfigError, InputError, PlumeError

__all__ = [
    "PlumeModel",
    "PlumeConfig",
    "load_backbone",
    "build_tiny_backbone",
    "PlumeError",
    "ConfigError",
    "InputError",
    "CheckpointError",
]
__version__ = "0.1.0"

_LAZY = {
    "PlumeModel": "plume_lite.model",
    "PlumeConfig": "plume_lite.config",
    "load_backbone": "plume_lite.backbone",
    "build_tiny_backbone": "plume_lite.backbone",
}


def __getattr__(name):
    # torch and transformers load only when a model is asked for (fast CLI, light metrics)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'plume_lite' has no attribute {name!r}")
