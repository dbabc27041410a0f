"""plume_lite: PLUME universal multimodal embeddings with continuous latent reasoning steps."""
from plume_lite.backbone import build_tiny_backbone, load_backbone
from plume_lite.config import PlumeConfig
from plume_lite.errors import CheckpointError, ConfigError, InputError, PlumeError
from plume_lite.model import PlumeModel

__all__ = ["PlumeModel", "PlumeConfig", "load_backbone", "build_tiny_backbone",
           "PlumeError", "ConfigError", "InputError", "CheckpointError"]
__version__ = "0.1.0"
