"""Where a baseline's weights come from: a plain transformers Qwen2-VL folder or hub id,
with full weights, or (VLM2Vec-V2 may ship one, RELEASED_CHECKPOINTS.md §4.2) a PEFT LoRA
folder whose `adapter_config.json` names the base model, merged into it on load.

Nothing is added to the checkpoint: no token, no embedding row, no resize (D20), so the
tokenizer, the vocabulary size and every lm_head row are the checkpoint's.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from plume_lite.errors import CheckpointError
from plume_lite.io import one_line, read_json
from plume_lite.items import content_hash
from plume_lite.released import resolve_checkpoint

__all__ = ["LORA_CONFIG", "is_lora_folder", "lora_key", "load_backbone", "baseline_id"]

log = logging.getLogger(__name__)

LORA_CONFIG = "adapter_config.json"  # PEFT's file: a LoRA folder, not full weights
PROCESSOR_FILES = ("preprocessor_config.json", "tokenizer_config.json")


def is_lora_folder(folder: Path) -> bool:
    return (Path(folder) / LORA_CONFIG).is_file()


def _full(folder: Path, dtype):
    from plume_lite.saving import _load_full_backbone, check_hf_folder

    check_hf_folder(folder, weights=True)
    return _load_full_backbone(folder, dtype)


def _lora_base(folder: Path) -> str:
    config = read_json(folder / LORA_CONFIG)
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise CheckpointError(f"{folder / LORA_CONFIG}: no base_model_name_or_path to load the LoRA onto")
    return base


# transformers 4.x names of Qwen2-VL modules (how a LoRA trained then names them) ->
# transformers 5's; a PEFT key is "base_model.model." + the module path
LEGACY_MODULES = (
    (
        re.compile(r"^base_model\.model\.model\.(?!language_model\.|visual\.)"),
        "base_model.model.model.language_model.",
    ),
    (re.compile(r"^base_model\.model\.visual\."), "base_model.model.model.visual."),
)
LORA_WEIGHTS = "adapter_model.safetensors"


def lora_key(key: str) -> str:
    """A PEFT adapter key under transformers 5's module names (legacy 4.x names renamed)."""
    for pattern, new in LEGACY_MODULES:
        key = pattern.sub(new, key)
    return key


def _lora_state(folder: Path) -> dict:
    from safetensors.torch import load_file

    path = folder / LORA_WEIGHTS
    if not path.is_file():
        other = (
            "adapter_model.bin, a pickle plume_lite never loads"
            if (folder / "adapter_model.bin").exists()
            else "none"
        )
        raise CheckpointError(f"{folder}: no {LORA_WEIGHTS} (found {other})")
    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged file
        raise CheckpointError(f"{path}: cannot read its tensors ({one_line(e)})") from None
    return {lora_key(k): v for k, v in state.items()}


def _merged(folder: Path, dtype):
    """The base model of a LoRA folder with the LoRA merged in, and the processor (the
    LoRA folder's when it has its own processor files, else the base's). Every adapter
    tensor must land on a module, and every LoRA module must get its tensors: PEFT alone
    would skip mismatched names with a warning and leave the base model unchanged."""
    base_name = _lora_base(folder)
    base_folder = resolve_checkpoint(base_name)
    if not base_folder.is_dir():
        raise CheckpointError(f"{folder / LORA_CONFIG}: its base model {base_name} is not a folder or hub id")
    if is_lora_folder(base_folder):
        raise CheckpointError(f"{folder / LORA_CONFIG}: the base {base_name} is itself a LoRA folder")
    backbone, processor = _full(base_folder, dtype)
    try:
        from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    except ImportError:
        raise CheckpointError(
            f"{folder}: a LoRA folder needs the `peft` package (pip install peft)"
        ) from None
    state = _lora_state(folder)
    try:
        model = PeftModel(backbone, PeftConfig.from_pretrained(str(folder)))
        result = set_peft_model_state_dict(model, state)
    except Exception as e:  # noqa: BLE001 - a config or tensors that do not fit the base
        raise CheckpointError(
            f"{folder}: cannot put the LoRA on {base_name} ({type(e).__name__}: {one_line(e)})"
        ) from None
    if result.unexpected_keys:
        keys = sorted(result.unexpected_keys)
        raise CheckpointError(
            f"{folder / LORA_WEIGHTS}: {len(keys)} tensors fit no module of the base, e.g. {keys[0]}"
        )
    missing = sorted(k for k in result.missing_keys if ".lora_" in k)
    if missing:
        raise CheckpointError(
            f"{folder / LORA_WEIGHTS}: {len(missing)} LoRA tensors missing, e.g. {missing[0]}"
        )
    merged = model.merge_and_unload()
    if all((folder / name).is_file() for name in PROCESSOR_FILES):
        from plume_lite.saving import _auto_processor, _guard

        processor = _guard(folder, "cannot load the processor", _auto_processor, folder)
    log.info("merged the LoRA of %s (%d tensors) into its base %s", folder, len(state), base_name)
    return merged, processor


def load_backbone(path_or_hub_id, dtype=None, allow_lora: bool = False):
    """(Qwen2-VL model, processor, local folder) of a baseline checkpoint.

    Args:
        path_or_hub_id: a folder, or a hub id fetched with huggingface_hub.snapshot_download.
        dtype: torch dtype of the weights (None: float32; "auto": as stored).
        allow_lora: accept a PEFT LoRA folder (`adapter_config.json`): its
            `base_model_name_or_path` (folder or hub id) is loaded and the LoRA merged.

    Raises:
        CheckpointError: missing or damaged files, weights that do not match the config,
            a backbone that is not Qwen2-VL / Qwen2.5-VL, a LoRA folder where none is
            accepted or whose base cannot be loaded.
    """
    folder = resolve_checkpoint(path_or_hub_id)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {path_or_hub_id}")
    if is_lora_folder(folder):
        if not allow_lora:
            raise CheckpointError(f"{folder}: a LoRA adapter folder; this baseline loads full weights only")
        backbone, processor = _merged(folder, dtype)
    else:
        backbone, processor = _full(folder, dtype)
    return backbone.eval(), processor, folder


def baseline_id(name: str, folder: Path, settings: dict) -> str:
    """A name for the weights and the protocol settings in evaluation cache keys: changes
    when a file of the folder (name, size, mtime) or a setting changes."""
    root = Path(folder).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    stamp = [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    return f"{name}-" + content_hash([str(root), stamp, settings])[:16]
