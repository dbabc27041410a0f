"""PlumeConfig: everything that defines a PLUME model on top of its backbone.

Saved as `plume_config.json` beside the weights; training-run settings live in
`train/config.py`. Unknown keys are an error that names the closest valid key."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass, field

from plume_lite.errors import ConfigError

ADAPTERS = ("moe", "moe_no_anchor", "mlp", "none")
MODES = ("latent", "explicit", "direct")
# prompt layouts and latent positions (plume_lite/protocols.py): this package's, or the
# authors' evaluation's, which their released weights need
PROTOCOLS = ("plume_lite", "plume")
POSITIONS = ("mrope", "authors")
# how images and video frames are decoded and sized (plume_lite/authors_media.py): this
# package's loader, or qwen_vl_utils' first resize and the authors' processor bounds
IMAGE_PIPELINES = ("plume_lite", "qwen_vl_utils")
FRAME_SAMPLINGS = ("plume_lite", "vlm2vec")  # which frames of a video: this package's, or VLM2Vec's
# the transition adapter's arithmetic (plume_lite/adapter.py): float32 inside, or the bf16
# casts of the authors' autocast evaluation (spec §2.5, D6)
ADAPTER_PRECISIONS = ("float32", "authors")
# LoRA goes on these language-model projections (the vision tower has other names)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class PlumeConfig:
    backbone: str = "tiny"  # hub id, local folder, or "tiny" (built offline)
    latent_steps: int = 8  # K
    adapter: str = "moe"  # moe | moe_no_anchor | mlp | none
    num_experts: int = 4  # routed experts (plus one shared)
    top_k: int = 2
    expert_dropout: float = 0.1
    step_table_size: int = 32  # rows of the step embedding table
    max_new_tokens: int = 64  # explicit mode: rationale budget
    instruction_prompt: str = "Represent the above input for retrieval."
    protocol: str = "plume_lite"  # prompt layout: plume_lite | plume (the authors' evaluation prompt)
    positions: str = "mrope"  # latent step j at: mrope (p_bot + 1 + j) | authors (prefix length + j)
    image_pipeline: str = "plume_lite"  # plume_lite (EXIF applied) | qwen_vl_utils (the authors')
    frame_sampling: str = "plume_lite"  # plume_lite (8 segment centres) | vlm2vec (the authors')
    # latent mode: after the forced suffix, greedy-decode up to N tokens until <gen_emb> or
    # EOS and read the last <gen_emb> (the authors' evaluation: 4096); 0 reads the forced one
    post_suffix_decode: int = 0
    adapter_precision: str = "float32"  # float32 | authors (bf16 casts of the authors' eval)
    # LoRA settings (r, alpha, dropout, targets) once enable_lora() ran; None: full weights
    lora: dict | None = field(default=None)

    def __post_init__(self):
        check_fields(self)  # types first: the range checks compare numbers
        if self.adapter not in ADAPTERS:
            raise ConfigError(f"adapter must be one of {ADAPTERS}, got {self.adapter!r}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.positions not in POSITIONS:
            raise ConfigError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.image_pipeline not in IMAGE_PIPELINES:
            raise ConfigError(f"image_pipeline must be one of {IMAGE_PIPELINES}, got {self.image_pipeline!r}")
        if self.frame_sampling not in FRAME_SAMPLINGS:
            raise ConfigError(f"frame_sampling must be one of {FRAME_SAMPLINGS}, got {self.frame_sampling!r}")
        if self.adapter_precision not in ADAPTER_PRECISIONS:
            raise ConfigError(
                f"adapter_precision must be one of {ADAPTER_PRECISIONS}, got {self.adapter_precision!r}"
            )
        if not self.backbone.strip():
            raise ConfigError("backbone may not be empty")
        _in_range("step_table_size", self.step_table_size, 1, MAX_STEP_TABLE)
        _in_range("latent_steps", self.latent_steps, 0, self.step_table_size)
        _in_range("num_experts", self.num_experts, 1, MAX_EXPERTS)
        _in_range("post_suffix_decode", self.post_suffix_decode, 0, MAX_DECODE)
        _in_range("top_k", self.top_k, 1, self.num_experts, "num_experts=")
        if not 0.0 <= self.expert_dropout < 1.0:
            raise ConfigError(f"expert_dropout must be in [0, 1), got {self.expert_dropout}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.lora is not None:
            check_lora_settings(self.lora)

    @classmethod
    def from_dict(cls, values: dict) -> "PlumeConfig":
        check_keys(cls, values)
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path) -> None:
        from plume_lite.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path) -> "PlumeConfig":
        """Read `plume_config.json`; any problem is one ConfigError/CheckpointError naming the file."""
        from plume_lite.io import read_json

        values = read_json(path)
        if not isinstance(values, dict):
            raise ConfigError(
                f"{path}: expected a JSON object of PlumeConfig keys, got {type(values).__name__}"
            )
        try:
            return cls.from_dict(values)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


def check_keys(cls, values: dict) -> None:
    """Raise ConfigError for a key that is not a field of dataclass `cls`."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if not isinstance(key, str):
            raise ConfigError(f"{cls.__name__} keys must be strings, got {key!r}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown {cls.__name__} key {key!r}{hint}")


# Sanity bounds: far above any real setting, low enough that a hostile value is refused
# before it allocates (a 10**12-row step table would exhaust memory, not raise).
MAX_STEP_TABLE = 4096
MAX_EXPERTS = 256
MAX_DECODE = 65536
LORA_KEYS = ("r", "alpha", "dropout", "targets")


def _in_range(name: str, value, low, high, high_name: str = "") -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high_name}{high}], got {value}")


def check_lora_settings(lora) -> None:
    """The `lora` entry of a PlumeConfig: {r, alpha, dropout, targets}, typed and in range."""
    if not isinstance(lora, dict):
        raise ConfigError(f"lora must be null or an object with keys {', '.join(LORA_KEYS)}, got {lora!r}")
    if sorted(lora) != sorted(LORA_KEYS):
        raise ConfigError(
            f"lora must have exactly the keys {', '.join(LORA_KEYS)}, got {', '.join(map(str, lora))}"
        )
    check_value("lora.r", lora["r"], int)
    check_value("lora.alpha", lora["alpha"], float)
    check_value("lora.dropout", lora["dropout"], float)
    check_value("lora.targets", lora["targets"], list[str])
    if lora["r"] < 1 or lora["alpha"] <= 0 or not 0 <= lora["dropout"] < 1:
        raise ConfigError(f"lora needs r >= 1, alpha > 0 and dropout in [0, 1), got {lora!r}")
    if not lora["targets"] or not all(t.strip() for t in lora["targets"]):
        raise ConfigError(f"lora.targets must be a non-empty list of module names, got {lora['targets']!r}")


def check_fields(obj) -> None:
    """Check every field of dataclass instance `obj` against its annotation (int, float,
    bool, str, list[str], dict, X | None); an int where a float goes becomes a float."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if _base(hint) is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            object.__setattr__(obj, f.name, value)
        check_value(f.name, value, hint)


def _base(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if type(None) in typing.get_args(hint) and len(args) == 1 else hint


def check_value(name: str, value, hint) -> None:
    """ConfigError unless `value` fits the annotation `hint`; one line that names `name`."""
    if value is None:
        if type(None) in typing.get_args(hint):
            return
        raise ConfigError(f"{name} may not be null")
    base = _base(hint)
    if typing.get_origin(base) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
        return
    if typing.get_origin(base) is dict or base is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be an object, got {type(value).__name__} {value!r}")
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = (
        isinstance(value, bool)
        if base is bool
        else isinstance(value, int) and not isinstance(value, bool)
        if base is int
        else number
        if base is float
        else isinstance(value, base)
    )
    if not ok:
        raise ConfigError(f"{name} must be {base.__name__}, got {type(value).__name__} {value!r}")
    if base is float and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
