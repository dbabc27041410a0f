"""plume_lite: PLUME universal multimodal embeddings with continuous latent reasoning steps."""

from plume_lite.errors import CheckpointError, ConfigError, InputError, PlumeError
from plume_lite.lazy import lazy_exports

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

# torch and transformers load only when a model is asked for (fast CLI, light metrics)
# fmt: off
_EXPORTS = {
    "PlumeModel": ".model", "PlumeConfig": ".config", "load_backbone": ".backbone",
    "build_tiny_backbone": ".backbone",
}
# fmt: on
__getattr__ = lazy_exports(__name__, _EXPORTS)
