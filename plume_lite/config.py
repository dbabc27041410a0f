"""PlumeConfig: everything that defines a PLUME model on top of its backbone.

Saved as `plume_config.json` beside the weights; training-run settings live in
`train_config.py`. Unknown keys are an error that names the closest valid key."""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field

from plume_lite.errors import ConfigError

ADAPTERS = ("moe", "moe_no_anchor", "mlp", "none")
MODES = ("latent", "explicit", "direct")
# LoRA goes on these language-model projections (the vision tower has other names)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class PlumeConfig:
    backbone: str = "tiny"             # hub id, local folder, or "tiny" (built offline)
    latent_steps: int = 8              # K
    adapter: str = "moe"               # moe | moe_no_anchor | mlp | none
    num_experts: int = 4               # routed experts (plus one shared)
    top_k: int = 2
    expert_dropout: float = 0.1
    step_table_size: int = 32          # rows of the step embedding table
    max_new_tokens: int = 64           # explicit mode: rationale budget
    instruction_prompt: str = "Represent the above input for retrieval."
    # LoRA settings (r, alpha, dropout, targets) once enable_lora() ran; None: full weights
    lora: dict | None = field(default=None)

    def __post_init__(self):
        if self.adapter not in ADAPTERS:
            raise ConfigError(f"adapter must be one of {ADAPTERS}, got {self.adapter!r}")
        if not 0 <= self.latent_steps <= self.step_table_size:
            raise ConfigError(f"latent_steps must be in [0, {self.step_table_size}], got {self.latent_steps}")
        if not 1 <= self.top_k <= self.num_experts:
            raise ConfigError(f"top_k must be in [1, num_experts={self.num_experts}], got {self.top_k}")

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
        with open(path) as f:
            return cls.from_dict(json.load(f))


def check_keys(cls, values: dict) -> None:
    """Raise ConfigError for a key that is not a field of dataclass `cls`."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown {cls.__name__} key {key!r}{hint}")
