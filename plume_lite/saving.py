"""Checkpoint format of a PlumeModel: safetensors + JSON, written atomically, never pickled.

    plume_config.json         PlumeConfig (backbone name, adapter, K, LoRA settings)
    adapter.safetensors       transition adapter
    backbone/                 full backbone + processor (full fine-tuning), or
    lora/ + processor/ +      LoRA weights (peft), the processor with PLUME tokens and
    token_rows.safetensors    the embedding rows of the PLUME tokens; the base backbone
                              is loaded from its hub id / folder named in the config

Loading checks every file before a library reads it (present, a file, not empty, valid
JSON / safetensors header, the tensors and shapes the config implies, the tokenizer
and processor files, no pickle-only weights), so a damaged folder ends in one
CheckpointError or ConfigError line that names the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from plume_lite.config import PlumeConfig
from plume_lite.errors import CheckpointError, ConfigError, PlumeError
from plume_lite.io import atomic_dir, one_line, read_json
from plume_lite.tokens import PLUME_TOKENS

LORA_TARGETS_REGEX = r".*language_model.*\.({})"


def inject_lora(model, settings: dict) -> None:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=LORA_TARGETS_REGEX.format("|".join(settings["targets"])),
    )
    # LoRA layers are injected into the backbone's own modules; keep the peft wrapper
    # out of the module tree (for saving only) so parameters are not registered twice.
    object.__setattr__(model, "_peft", get_peft_model(model.backbone, config))
    model.lora_enabled = True
    model.config = dataclasses.replace(model.config, lora=dict(settings))


def save_plume(model, path) -> None:
    from plume_lite.model_card import model_card

    with atomic_dir(path) as tmp:
        model.config.save(tmp / "plume_config.json")
        (tmp / "README.md").write_text(model_card(model), encoding="utf-8")
        adapter_state = {k: v.detach().cpu().contiguous() for k, v in model.adapter.state_dict().items()}
        save_file(adapter_state, str(tmp / "adapter.safetensors"))
        if model.lora_enabled:
            model._peft.save_pretrained(tmp / "lora", safe_serialization=True, save_embedding_layers=False)
            model.processor.save_pretrained(tmp / "processor")
            ids = torch.tensor(list(model.token_ids.values()))
            emb = model.backbone.get_input_embeddings().weight
            rows = {"input": emb[ids].detach().cpu().contiguous()}
            out = model.backbone.get_output_embeddings()
            if out is not None and out.weight is not emb:
                rows["output"] = out.weight[ids].detach().cpu().contiguous()
            save_file(rows, str(tmp / "token_rows.safetensors"))
        else:
            model.backbone.save_pretrained(tmp / "backbone")
            model.processor.save_pretrained(tmp / "backbone")


def load_checkpoint(cls, path, dtype=None, **settings):
    """A PlumeModel from any layout `PlumeModel.from_pretrained` reads: this package's
    folder, or the authors' released one (plume_lite.released); either as a local folder
    or a hub id. `settings` (PlumeConfig fields) apply only to the authors' layout, which
    does not record them."""
    from plume_lite import released

    folder = released.resolve_checkpoint(path)
    if released.is_authors_layout(folder):
        source = str(path)
        return released.load_authors_checkpoint(cls, folder, dtype=dtype, source=source, **settings)
    if settings:
        raise ConfigError(
            f"{path}: settings {sorted(settings)} apply only to the authors' released layout; "
            "this checkpoint's plume_config.json holds its own"
        )
    return load_plume(cls, folder, dtype=dtype)


def load_plume(cls, path, dtype=None):
    from plume_lite.backbone import load_backbone

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint folder not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file, not a checkpoint folder")
    config_file = path / "plume_config.json"
    if not config_file.exists():
        hint = ""
        if (path / "config.json").exists():  # a transformers folder, but no released PLUME one either
            hint = (
                " (its config.json and weights hold no latent_moe_transition.* adapter either, so it is "
                "not the authors' released layout; a plain backbone loads with PlumeModel.from_backbone)"
            )
        raise CheckpointError(
            f"{path} is not a complete plume_lite checkpoint: plume_config.json is missing{hint}"
        )
    config = PlumeConfig.load(config_file)
    adapter_file = path / "adapter.safetensors"
    adapter_header = tensor_header(adapter_file)
    if config.lora is None:
        folder = _subfolder(path, "backbone", "plume_config.json has no LoRA settings: full backbone weights")
        check_hf_folder(folder, weights=True)
        backbone, processor = _load_full_backbone(folder, dtype)
        _check_plume_tokens(processor, folder)
        model = cls(backbone, processor, config)
    else:
        from peft import PeftModel
        from peft.utils import get_peft_model_state_dict

        lora_dir = _subfolder(path, "lora", "plume_config.json has LoRA settings")
        processor_dir = _subfolder(path, "processor", "plume_config.json has LoRA settings")
        check_hf_folder(processor_dir, weights=False)
        lora_header = _check_lora_folder(lora_dir, config)
        rows_file = path / "token_rows.safetensors"
        rows_header = tensor_header(rows_file)
        try:
            backbone, _ = load_backbone(config.backbone, dtype=dtype)
        except PlumeError as e:
            raise CheckpointError(f"{config_file} names the base backbone {config.backbone!r}: {e}") from None
        except Exception as e:  # noqa: BLE001 - any library failure becomes one line
            raise CheckpointError(
                f"{config_file}: cannot load the base backbone {config.backbone!r} ({one_line(e)})"
            ) from None
        processor = _guard(processor_dir, "cannot load the processor", _auto_processor, processor_dir)
        _check_plume_tokens(processor, processor_dir)
        model = cls(backbone, processor, dataclasses.replace(config, lora=None))
        ids = torch.tensor(list(model.token_ids.values()))
        dim = backbone.get_input_embeddings().weight.shape[1]
        want = {"input": (len(ids), dim)}
        out = backbone.get_output_embeddings()
        if "output" in rows_header and out is not None:
            want["output"] = (len(ids), dim)
        _check_tensors(rows_file, rows_header, want, "the PLUME token rows of this backbone")
        rows = load_tensors(rows_file)
        with torch.no_grad():
            model.backbone.get_input_embeddings().weight[ids] = rows["input"].to(dtype or torch.float32)
            if "output" in rows:
                out.weight[ids] = rows["output"].to(dtype or torch.float32)
        with warnings.catch_warnings():  # peft warns of missing keys; they are an error below
            warnings.filterwarnings("ignore", message=".*missing adapter keys.*")
            peft = _guard(
                f"{lora_dir / 'adapter_model.safetensors'} (with adapter_config.json)",
                "cannot attach the LoRA weights",
                PeftModel.from_pretrained,
                backbone,
                lora_dir,
            )
        expected = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(peft).items()}
        _check_tensors(
            lora_dir / "adapter_model.safetensors",
            lora_header,
            expected,
            "the LoRA layers its adapter_config.json describes",
        )
        object.__setattr__(model, "_peft", peft)
        model.lora_enabled = True
        model.config = config
    expected = {k: tuple(v.shape) for k, v in model.adapter.state_dict().items()}
    _check_tensors(
        adapter_file,
        adapter_header,
        expected,
        f"the adapter of plume_config.json (adapter={config.adapter!r}, "
        f"num_experts={config.num_experts}, step_table_size={config.step_table_size})",
    )
    model.adapter.load_state_dict(load_tensors(adapter_file))
    return model


# ------------------------------------------------------------------ checks of single files
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def tensor_header(path) -> dict[str, tuple[str, tuple]]:
    """{name: (dtype, shape)} of a safetensors file, read from its header (the file is
    not loaded); a missing, empty, truncated or non-safetensors file is one CheckpointError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} is missing")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, expected a safetensors file")
    if path.stat().st_size < 8:
        raise CheckpointError(
            f"{path} is empty or truncated ({path.stat().st_size} bytes): not a safetensors file"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            header = {}
            for key in f.keys():
                tensor = f.get_slice(key)
                header[key] = (tensor.get_dtype(), tuple(tensor.get_shape()))
            return header
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...
        raise CheckpointError(f"{path}: not a readable safetensors file ({one_line(e)})") from None


def load_tensors(path) -> dict:
    """load_file, with any failure (the header was checked already) as one CheckpointError."""
    try:
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read its tensors ({one_line(e)})") from None
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: tensor {key!r} holds NaN or infinite values")
    return tensors


def _check_tensors(path, header: dict, expected: dict, what: str) -> None:
    missing, extra = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{path} does not hold {what}: missing {len(missing)} tensor(s) "
            f"{missing[:3]}, {len(extra)} unexpected {extra[:3]}"
        )
    for key, shape in expected.items():
        dtype, got = header[key]
        if tuple(got) != tuple(shape):
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {list(got)}, expected {list(shape)} for {what}"
            )
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{path}: tensor {key!r} has dtype {dtype}, expected a float type")


def _subfolder(path: Path, name: str, why: str) -> Path:
    folder = path / name
    if not folder.exists():
        raise CheckpointError(f"{path} is not a complete plume_lite checkpoint: {name}/ is missing ({why})")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, expected a folder")
    return folder


def check_hf_folder(folder: Path, weights: bool) -> None:
    """A transformers folder (backbone or processor) is complete and readable: every JSON
    file parses, the tokenizer and processor files are there, and (with `weights`) the
    config and safetensors weights are, every shard with a sound header. transformers
    would otherwise fall back silently (an empty tokenizer, random weights, pickle)."""
    for entry in sorted(folder.iterdir()):
        if entry.suffix == ".json":
            data = read_json(entry)
            if not isinstance(data, dict):
                raise CheckpointError(f"{entry}: expected a JSON object, got {type(data).__name__}")
        elif entry.suffix in (".jinja", ".txt") and entry.is_file():
            try:
                entry.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{entry}: not readable UTF-8 text ({one_line(e)})") from None
        elif entry.suffix in (".jinja", ".txt"):
            raise CheckpointError(f"{entry} is a directory, expected a file")

    def need(*names, what):
        if not any((folder / n).exists() for n in names):
            raise CheckpointError(f"{folder} lacks {what}: {' or '.join(names)} is missing")

    need("tokenizer_config.json", what="the tokenizer")
    if not (folder / "tokenizer.json").exists() and not (
        (folder / "vocab.json").exists() and (folder / "merges.txt").exists()
    ):
        raise CheckpointError(
            f"{folder} lacks the tokenizer: tokenizer.json (or vocab.json + merges.txt) is missing"
        )
    need("processor_config.json", "preprocessor_config.json", what="the image processor")
    if not weights:
        return
    need("config.json", what="the model config")
    shards = index_shards(folder)
    if shards is None and (folder / "model.safetensors").exists():
        shards = ["model.safetensors"]
    elif shards is None:
        pickled = sorted(p.name for p in folder.glob("*.bin"))
        extra = f" (only pickle weights {pickled}, which plume_lite never loads)" if pickled else ""
        raise CheckpointError(f"{folder / 'model.safetensors'} is missing{extra}")
    for shard in shards:
        tensor_header(folder / shard)


def index_shards(folder: Path) -> list[str] | None:
    """The shard file names listed by `model.safetensors.index.json` (checked to lie in
    `folder`), or None when the folder has no index."""
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return None
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: no weight_map of tensor names to shard files")
    shards = sorted(set(map(str, weight_map.values())))
    for shard in shards:
        if Path(shard).name != shard:
            raise CheckpointError(f"{index}: shard name {shard!r} points outside {folder}")
    return shards


def _check_lora_folder(lora_dir: Path, config: PlumeConfig) -> dict:
    cfg_file = lora_dir / "adapter_config.json"
    peft_cfg = read_json(cfg_file)
    if not isinstance(peft_cfg, dict):
        raise CheckpointError(f"{cfg_file}: expected a JSON object, got {type(peft_cfg).__name__}")
    if peft_cfg.get("peft_type") != "LORA":
        raise CheckpointError(f"{cfg_file}: peft_type is {peft_cfg.get('peft_type')!r}, expected 'LORA'")
    for key, want in (("r", config.lora["r"]), ("lora_alpha", config.lora["alpha"])):
        got = peft_cfg.get(key)
        if not isinstance(got, (int, float)) or isinstance(got, bool) or got != want:
            raise CheckpointError(f"{cfg_file}: {key} is {got!r} but plume_config.json says {want!r}")
    if not isinstance(peft_cfg.get("target_modules"), (str, list)):
        raise CheckpointError(
            f"{cfg_file}: target_modules must be a string or a list, got {peft_cfg.get('target_modules')!r}"
        )
    return tensor_header(lora_dir / "adapter_model.safetensors")


def _check_plume_tokens(processor, folder: Path) -> None:
    tokenizer = getattr(processor, "tokenizer", None)
    vocab = tokenizer.get_vocab() if tokenizer is not None else {}
    missing = [t for t in PLUME_TOKENS if t not in vocab]
    if missing:
        raise CheckpointError(
            f"{folder}: the tokenizer lacks the PLUME tokens {missing}; "
            "tokenizer.json is not the one saved with this checkpoint"
        )


def _auto_processor(folder):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder)


def _guard(where, what: str, fn, *args):
    """fn(*args); a library exception becomes one CheckpointError line naming `where`."""
    try:
        return fn(*args)
    except PlumeError:
        raise
    except Exception as e:  # noqa: BLE001 - any library failure on damaged files
        raise CheckpointError(f"{where}: {what} ({type(e).__name__}: {one_line(e)})") from None


@contextlib.contextmanager
def _quiet_transformers():
    """transformers prints a multi-line load report on missing/mismatched tensors; the
    report is turned into one CheckpointError instead."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _load_full_backbone(folder: Path, dtype, allowed_unexpected: str | None = None):
    """(model, processor) of a backbone folder; any missing, unexpected or misshapen tensor
    is one CheckpointError. Unexpected tensors whose name holds `allowed_unexpected` (the
    authors' adapter, read separately) are left out of that check."""
    from transformers import AutoModelForImageTextToText

    processor = _guard(folder, "cannot load the processor", _auto_processor, folder)
    weights = folder / (
        "model.safetensors.index.json"
        if (folder / "model.safetensors.index.json").exists()
        else "model.safetensors"
    )
    with _quiet_transformers():  # mismatched shapes are reported below, in one line
        model, info = _guard(
            weights,
            "cannot load the backbone",
            lambda: AutoModelForImageTextToText.from_pretrained(
                folder,
                dtype=dtype or torch.float32,
                use_safetensors=True,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            ),
        )
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get(kind) or ())
        if kind == "unexpected_keys" and allowed_unexpected:
            keys = [k for k in keys if allowed_unexpected not in k]
        if keys:
            detail = ""
            if kind == "mismatched_keys":
                first = sorted(info[kind], key=lambda k: str(k[0]))[0]
                detail = f" ({first[0]}: {list(first[1])} in the file, {list(first[2])} in the model)"
            raise CheckpointError(
                f"{weights} does not match {folder / 'config.json'}: {len(keys)} "
                f"{kind.replace('_keys', '')} tensors {keys[:3]}{detail}"
            )
    if model.config.model_type not in ("qwen2_vl", "qwen2_5_vl"):
        raise CheckpointError(
            f"{folder / 'config.json'}: a {model.config.model_type} model; "
            "plume_lite supports Qwen2-VL and Qwen2.5-VL backbones"
        )
    return model, processor
