"""TrainConfig: one dataclass for a training run, with named profiles.

    cfg = resolve_config("tiny", mode="latent", files=["my.yaml"], overrides=["lr=1e-4", "adapter=mlp"])

Order: profile → YAML/JSON files → `key=value` overrides. Every value is
type-checked against the field's annotation; an unknown key is a ConfigError that
names the closest valid key. Model-side fields carry the names of PlumeConfig's
fields and are passed to `PlumeModel.from_backbone`."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from plume_lite.config import LORA_TARGETS, MODES, PlumeConfig, check_keys, check_value
from plume_lite.curriculum import DEFAULT_READ_POSITION, READ_POSITIONS
from plume_lite.errors import ConfigError

LOGIT_SCALE = 50.0  # InfoNCE temperature τ = 1 / 50 = 0.02
BALANCE_WEIGHT = 0.1  # weight of the router's load-balance term
PRECISIONS = ("no", "bf16", "fp16")
SCHEDULES = ("cosine", "constant")
_PC = {f.name: f.default for f in dataclasses.fields(PlumeConfig)}
# fields that may differ when resuming: they change logging/saving, not the maths
RESUME_FREE = (
    "max_steps_this_run",
    "save_every",
    "keep_checkpoints",
    "log_every",
    "progress_bar",
    "threads",
    "checkpoint_prefix",  # memory against recomputation, same gradients
)


@dataclass
class TrainConfig:
    """Every setting of one training run: the model to build, what trains, and how.

    Build one with `resolve_config(profile, mode, files, overrides)` (a named profile,
    then YAML/JSON files, then `key=value` strings), `TrainConfig.from_dict`,
    `TrainConfig.load(run_dir)` or `config.replace(...)`; all four check key names. Every
    value is type-checked against its field's annotation when the object is created (an
    int where a float is expected is converted). `save` writes the resolved config into
    a run folder; `plume_lite.train.train` runs it.

    Attributes:
        mode: "latent" (PLUME), "explicit" (UME-R1-style) or "direct" (VLM2Vec-style).
        seed: seeds torch, the data order and the sampler.
        backbone, latent_steps, adapter, num_experts, top_k, expert_dropout,
            step_table_size, max_new_tokens, instruction_prompt: the PlumeConfig fields
            of the model to build (`model_kwargs()` passes them to
            `PlumeModel.from_backbone`); `adapter` is one of moe | moe_no_anchor | mlp |
            none, `latent_steps` is K.
        lora, lora_r, lora_alpha, lora_dropout, lora_targets: LoRA on the language
            model's projections (`lora=False`: full fine-tuning).
        freeze_vision: keep the vision tower frozen.
        checkpoint_prefix: recompute the prefix forward (vision tower and decoder up to
            `<bot>`) in the backward instead of keeping its activations (non-reentrant
            torch.utils.checkpoint around the whole cached pass, so the KV cache the
            latent steps read survives): less memory, the same loss and gradients, one
            more prefix forward per step. May change on resume.
        fused_experts: evaluate the MoE adapter's experts as two matmuls over their
            concatenated weights (TransitionAdapter.fused) instead of a loop per
            expert; the same maths to fp32 rounding, but other dropout masks, so off by
            default. Needs adapter moe or moe_no_anchor; saved models do not keep it.
        precision: accelerate mixed precision, "no" | "bf16" | "fp16"; with LoRA and
            "bf16" the frozen base weights are loaded in bf16.
        cpu: train on the CPU even where a GPU is present.
        threads: torch CPU threads during training; 0 leaves torch's setting alone.
        curriculum: the explicit-to-latent curriculum (latent mode); False: all latent
            from the first step.
        read_position: where latent-mode training reads `<gen_emb>`: "after_latents"
            (default: right after `<eot></think>\n`, where inference reads it, the text
            predicted after it) or "after_text" (the paper's layout, after the
            teacher-forced rationale and answer). Explicit mode always reads after its text.
        max_steps: optimizer steps; curriculum progress is step / max_steps.
        batch_size: pairs per process per micro-batch (>= 2: in-batch negatives).
        grad_accum: micro-batches per optimizer step (negatives stay per micro-batch).
        grad_cache_chunk: GradCache (train/grad_cache.py): run each micro-batch in
            chunks of this many pairs, keeping one chunk's activations at a time, with
            the whole micro-batch's in-batch negatives: the plain step's gradients
            (exactly without dropout; with it, the dropout masks differ from a plain
            step's) for one more forward. None: off.
        lr, weight_decay, warmup_steps, lr_schedule, grad_clip: AdamW, linear warm-up,
            then "cosine" decay or "constant"; gradient-norm clipping (0: off).
        logit_scale, balance_weight: InfoNCE scale (50, i.e. tau = 0.02) and weight of
            the router's balance term (0.1).
        contrastive_weight: weight of the InfoNCE terms (1: the paper's loss; 0 in
            latent or explicit mode: the language-model loss alone, a control).
        mask_duplicates: identical items in a batch are not each other's negatives.
        tasks, train_limit: train on these task names only (None: all) and at most this
            many pairs per task (None: all).
        save_every, keep_checkpoints: checkpoint interval and how many to keep.
        max_steps_this_run: stop (with a checkpoint) after this many steps of this
            invocation; a later `resume=True` continues.
        log_every, progress_bar: log.jsonl interval and the tqdm bar.

    Raises:
        ConfigError: a value of the wrong type; a mode, precision, lr_schedule or adapter
            not among the allowed ones; a count below its minimum (e.g. batch_size < 2);
            lr <= 0; invalid model settings (see PlumeConfig); and, through
            `from_dict`, `replace`, `load` and `resolve_config`, an unknown key (the
            message names the closest valid one). Calling the constructor with an
            unknown keyword raises TypeError, as for any dataclass.

    Example:
        >>> from plume_lite.train.config import TrainConfig, resolve_config
        >>> config = resolve_config("tiny", mode="latent", overrides=["lr=1e-4", "adapter=mlp"])
        >>> config.lr, config.adapter, config.max_steps
        (0.0001, 'mlp', 300)
        >>> config.replace(max_steps=50).max_steps
        50
        >>> TrainConfig.from_dict({"max_step": 50})
        Traceback (most recent call last):
        ConfigError: unknown TrainConfig key 'max_step'; did you mean 'max_steps'?
    """

    mode: str = "latent"  # latent (PLUME) | explicit (UME-R1) | direct (VLM2Vec)
    seed: int = 0
    # --- model (PlumeConfig fields) ---
    backbone: str = _PC["backbone"]
    # a PlumeModel folder whose backbone (weights, tokenizer, PLUME token rows) this run
    # starts from, with a new adapter: the paper's chain (latent from the explicit model U)
    init_from: str | None = None
    latent_steps: int = _PC["latent_steps"]  # K
    adapter: str = _PC["adapter"]  # moe | moe_no_anchor | mlp | none
    num_experts: int = _PC["num_experts"]
    top_k: int = _PC["top_k"]
    expert_dropout: float = _PC["expert_dropout"]
    step_table_size: int = _PC["step_table_size"]
    max_new_tokens: int = _PC["max_new_tokens"]
    instruction_prompt: str = _PC["instruction_prompt"]
    # --- what trains ---
    lora: bool = False  # False: full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    freeze_vision: bool = True
    checkpoint_prefix: bool = False  # recompute the prefix pass in the backward (less memory)
    fused_experts: bool = False  # MoE experts as two matmuls (other dropout masks)
    precision: str = "no"  # no | bf16 | fp16 (accelerate mixed precision)
    cpu: bool = False  # train on CPU even where a GPU is present
    threads: int = 0  # torch CPU threads; 0 = torch's default. On a busy
    # 2-core box 1 thread avoids ~10x spin-wait slowdowns
    # --- curriculum (latent mode) ---
    curriculum: bool = True  # False: all-latent from the first step
    first_stage: int = 0  # first curriculum stage (STAGE_RATIOS index); 1 skips the all-text one
    # after_text | after_latents: where latent training reads <gen_emb> (curriculum.place_gen_emb).
    # after_latents, a deviation from the paper's after_text: from a trained U it scored
    # +9.3 (main chain) and +27.0 (gate chain) over after_text, 3 seeds, paired CIs
    # excluding 0 (README §Results; docs/method.md §Training objective)
    read_position: str = DEFAULT_READ_POSITION
    # --- optimisation ---
    max_steps: int = 300  # optimizer steps; curriculum progress = step / max_steps
    batch_size: int = 16  # pairs per process per micro-batch (in-batch negatives)
    grad_accum: int = 1
    grad_cache_chunk: int | None = None  # GradCache chunk (pairs); None: off
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    lr_schedule: str = "cosine"  # cosine | constant (after warmup)
    grad_clip: float = 1.0
    logit_scale: float = LOGIT_SCALE
    balance_weight: float = BALANCE_WEIGHT
    contrastive_weight: float = 1.0
    mask_duplicates: bool = True  # identical items in a batch are not negatives
    # --- data ---
    tasks: list[str] | None = None  # None: every training task
    train_limit: int | None = None  # at most this many pairs per task (quick runs)
    # --- checkpoints, logs ---
    save_every: int = 100
    keep_checkpoints: int = 2
    max_steps_this_run: int | None = None  # stop (with a checkpoint) after this many steps; --resume goes on
    log_every: int = 1
    progress_bar: bool = True

    def __post_init__(self):
        for name, hint in _hints().items():  # 1 → 1.0 where a float is expected
            value = getattr(self, name)
            if hint is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
        self.validate()

    def validate(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            _check_type(name, value, _hints()[name])
        choices = {
            "mode": MODES,
            "precision": PRECISIONS,
            "lr_schedule": SCHEDULES,
            "read_position": READ_POSITIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.fused_experts and self.adapter not in ("moe", "moe_no_anchor"):
            raise ConfigError(f"fused_experts needs adapter moe or moe_no_anchor, got {self.adapter!r}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        from plume_lite.curriculum import STAGE_RATIOS

        if not 0 <= self.first_stage < len(STAGE_RATIOS):
            raise ConfigError(f"first_stage must be in [0, {len(STAGE_RATIOS) - 1}], got {self.first_stage}")
        if self.init_from is not None and not self.init_from.strip():
            raise ConfigError("init_from may not be empty (null: start from the backbone)")
        for name in ("max_steps", "batch_size", "grad_accum", "save_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2: in-batch negatives need a second pair")
        if self.lr <= 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise ConfigError("lr must be > 0, grad_clip >= 0 and warmup_steps >= 0")
        for name in ("lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_limit", "max_steps_this_run", "grad_cache_chunk"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be null or >= 1, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:  # numpy's seed range
            raise ConfigError(f"seed must be in [0, 2**32), got {self.seed}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.weight_decay < 0 or self.balance_weight < 0 or self.logit_scale <= 0:
            raise ConfigError(
                "weight_decay and balance_weight must be >= 0 and logit_scale > 0, got "
                f"{self.weight_decay}, {self.balance_weight}, {self.logit_scale}"
            )
        if self.contrastive_weight < 0 or (self.mode == "direct" and self.contrastive_weight == 0):
            raise ConfigError(
                f"contrastive_weight must be >= 0 (and > 0 in direct mode, whose only loss it "
                f"weights), got {self.contrastive_weight}"
            )
        if not self.lora_targets or (self.tasks is not None and not self.tasks):
            raise ConfigError("lora_targets and tasks may not be empty lists (tasks: null means every task)")
        PlumeConfig(**self.model_kwargs())  # adapter / K / top_k checks

    def model_kwargs(self) -> dict:
        """Keyword arguments of PlumeModel.from_backbone (without the backbone name)."""
        # PlumeConfig fields a run trains with; inference-only settings (the authors'
        # prompt protocol and positions) keep their defaults during training
        own = {f.name for f in dataclasses.fields(self)}
        return {name: getattr(self, name) for name in _PC if name in own and name not in ("backbone", "lora")}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, out_dir) -> None:
        """Write the resolved config as train_config.json and .yaml (same content)."""
        from plume_lite.io import atomic_write_text

        data = self.to_dict()
        atomic_write_text(Path(out_dir) / "train_config.json", json.dumps(data, indent=2))
        atomic_write_text(Path(out_dir) / "train_config.yaml", yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, path) -> "TrainConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "train_config.json"
        values = read_config_file(path)
        try:
            return cls.from_dict(values)
        except ConfigError as e:  # name the file: the value came from it
            raise ConfigError(f"{path}: {e}") from None

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        check_keys(cls, values)
        return cls(**values)

    def replace(self, **changes) -> "TrainConfig":
        check_keys(TrainConfig, changes)
        return dataclasses.replace(self, **changes)


# Named presets, one per machine; compact so the two read side by side.
# fmt: off
PROFILES: dict[str, dict] = {
    # CPU, 2 cores: the tiny offline backbone, full fine-tuning, SynthMMEB tiny.
    # lr 3e-4 + clipping 1.0 trains through the rollout; 1e-3 collapsed (ENVIRONMENT.md).
    # The pre-trained backbone (backbone=tiny-pretrained) is not the default yet: at this
    # recipe's 150 steps it scored below the random-init one (README §Pre-trained tiny
    # backbone), and at lr 1e-3 its contrastive loss collapsed to ln(batch).
    # One torch thread: the tiny model gains little from a second one, and next to any
    # other CPU job two threads spin-wait (a 300-step latent run: 21 min vs 2 min).
    # Explicit budget 128: the longest SynthMMEB tiny target (rationale, </think>, answer,
    # <gen_emb>) is 123 tiny-tokenizer tokens; 64 cut every target of 8 of 12 tasks
    # (tests/test_explicit_budget.py keeps it covering the shipped data).
    "tiny": dict(backbone="tiny", lora=False, freeze_vision=False, precision="no", threads=1,
                 latent_steps=8, batch_size=16, grad_accum=1, lr=3e-4, warmup_steps=10,
                 max_steps=300, save_every=100, grad_clip=1.0, max_new_tokens=128),
    # One 24 GB GPU: Qwen2-VL-2B with LoRA on the language model, vision tower frozen,
    # bf16. ~12 pairs fit per step with gradients through K = 8 steps
    # (docs/method.md §Reference numbers); accumulation gives a larger effective batch
    # (negatives stay per micro-batch).
    "gpu-2b": dict(backbone="Qwen/Qwen2-VL-2B-Instruct", lora=True, lora_r=16, lora_alpha=32,
                   lora_dropout=0.05, freeze_vision=True, precision="bf16", latent_steps=8,
                   batch_size=12, grad_accum=4, lr=1e-4, warmup_steps=50, max_steps=2000,
                   save_every=200, grad_clip=1.0),
}
# fmt: on


def resolve_config(profile: str = "tiny", mode: str | None = None, files=(), overrides=()) -> TrainConfig:
    """Profile defaults, then each file, then `key=value` strings (CLI form)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    values = dict(PROFILES[profile])
    if mode is not None:
        values["mode"] = mode
    for path in files:
        values.update(read_config_file(path))
    values.update(parse_overrides(overrides))
    return TrainConfig.from_dict(values)


def parse_overrides(items) -> dict:
    """["lr=1e-4", "tasks=[a,b]", "curriculum=off"] → typed values (checked by TrainConfig)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        check_keys(TrainConfig, {key: None})
        out[key] = _parse_value(key, raw.strip())
    return out


def _parse_value(key: str, raw: str):
    hint = _hints()[key]
    if hint is str:
        return raw  # never let YAML turn "1e-4"/"no" into a number/bool
    if _is_list(hint) and raw and not raw.startswith("["):
        return [s.strip() for s in raw.split(",") if s.strip()]
    if hint is bool and raw.lower() in ("on", "off"):
        return raw.lower() == "on"
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}: cannot parse {raw!r}: {e}") from None
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    return value


def read_config_file(path) -> dict:
    """The mapping in a YAML/JSON config file, keys checked, YAML's 3e-4 read as a float."""
    from plume_lite.io import one_line, read_bytes

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    kind = "JSON" if path.suffix == ".json" else "YAML"
    raw = read_bytes(path, ConfigError, allow_empty=kind == "YAML")  # an empty YAML file: no keys
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid {kind} (not UTF-8 text)") from None
    except (ValueError, yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid {kind}: {one_line(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    try:
        check_keys(TrainConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    for key, value in data.items():  # YAML 1.1 reads 3e-4 as a string
        if key in _hints() and _hints()[key] is float and isinstance(value, str):
            try:
                data[key] = float(value)
            except ValueError:
                pass
    return data


_HINTS: dict = {}


def _hints() -> dict:
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    return _HINTS


def _is_list(hint) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return typing.get_origin(hint) is list or any(typing.get_origin(a) is list for a in args)


def _check_type(name: str, value, hint) -> None:
    check_value(name, value, hint)  # one type check for PlumeConfig and TrainConfig
