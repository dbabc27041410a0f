"""The authors' released PLUME checkpoints (e.g. CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B): detect
their layout, load them into a PlumeModel exactly, convert them to this package's layout.

Their layout (docs/method.md §Running the authors' released models) is a plain
transformers Qwen2-VL / Qwen2.5-VL folder: `config.json`, the tokenizer and processor
files, and `model.safetensors` (or shards with `model.safetensors.index.json`) holding
the backbone *and* the transition adapter, whose tensors are named
`latent_moe_transition.<name>`. There is no `plume_config.json`: the adapter's sizes are
read from its tensor shapes, what the weights do not record takes the settings of the
authors' evaluation (COMPAT_SETTINGS), and K comes from `trainer_state.json` when there is
one.

    model = PlumeModel.from_pretrained("CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B")   # or a folder
    convert_authors_checkpoint("PLUME-Qwen2-VL-2B", "plume-2b")               # plume_lite layout

Loading is strict: every adapter tensor is renamed (ADAPTER_NAMES) into this package's
TransitionAdapter, and a missing or unknown one is one CheckpointError that names it. The
tokenizer and its token ids are the checkpoint's; no token is added, no embedding row
re-initialised and no matrix resized.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from plume_lite.config import PlumeConfig
from plume_lite.errors import CheckpointError, ConfigError, PlumeError
from plume_lite.io import one_line, read_json
from plume_lite.protocols import AUTHORS_INSTRUCTION
from plume_lite.tokens import PLUME_TOKENS

__all__ = [
    "ADAPTER_PREFIX",
    "COMPAT_SETTINGS",
    "resolve_checkpoint",
    "is_authors_layout",
    "read_adapter_tensors",
    "rename_adapter_state",
    "load_authors_checkpoint",
    "convert_authors_checkpoint",
]

log = logging.getLogger(__name__)

ADAPTER_PREFIX = "latent_moe_transition."
BACKBONE_TYPES = ("qwen2_vl", "qwen2_5_vl")
# the weight files the authors' evaluation scans; plume_lite reads only the safetensors ones
WEIGHT_FILE = re.compile(r"^(model(-\d{5}-of-\d{5})?|pytorch_model(-\d{5}-of-\d{5})?)\.(safetensors|bin)$")
# authors' LatentMoETransition name <-> plume_lite TransitionAdapter name (a pure rename:
# both use LayerNorm eps 1e-5, exact GELU and biases; index 1 / 2 of an expert's
# nn.Sequential are GELU and Dropout, which hold no tensors)
ADAPTER_NAMES = (
    ("ln.{p}", "norm.{p}"),
    ("step_embed.weight", "step_emb.weight"),
    ("router.{p}", "router.{p}"),
    ("experts.{i}.fc1.{p}", "experts.{i}.0.{p}"),
    ("experts.{i}.fc2.{p}", "experts.{i}.3.{p}"),
    ("shared_expert.fc1.{p}", "shared.0.{p}"),
    ("shared_expert.fc2.{p}", "shared.3.{p}"),
)  # templates: {i} an expert index, {p} weight or bias; one table serves both directions
# Settings the released weights do not record, as the authors' paper evaluation ran
# (scripts/eval_plume_moe.sh): router context <disc_emb> (adapter "moe"), top-2 of the
# experts, K = 8, their prompt, their latent positions, their greedy decoding after
# the forced suffix (at most 4096 tokens), qwen_vl_utils' image resize with their
# processor bounds, and VLM2Vec's frame sampling (plume_lite/authors_media.py).
# expert_dropout is the main training run's (it only matters when fine-tuning).
# adapter_precision is not set, so it stays "float32": the spec keeps float32 the
# default (D6) and lists no precision among the compat settings (§1.4, P0.7 asks only
# for a bf16 backbone on CUDA). Under bf16 the float32 adapter is ~2e-3 relative from
# the authors' autocast arithmetic and can flip a near-tie top-k choice; pass
# adapter_precision="authors" to reproduce their casts bit for bit (plume_lite/adapter.py).
COMPAT_SETTINGS = {
    "adapter": "moe",
    "top_k": 2,
    "latent_steps": 8,
    "expert_dropout": 0.1,
    "instruction_prompt": AUTHORS_INSTRUCTION,
    "protocol": "plume",
    "positions": "authors",
    "post_suffix_decode": 4096,
    "image_pipeline": "qwen_vl_utils",
    "frame_sampling": "vlm2vec",
}
SHAPE_SETTINGS = ("num_experts", "step_table_size")  # read from the tensors, never overridden
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
# files a hub snapshot of a released checkpoint does not need (pickles are never loaded)
HUB_IGNORE = ["*.bin", "*.pt", "*.pth", "*.pkl", "global_step*", "*.ckpt"]


# ------------------------------------------------------------------ where the files are
def looks_like_hub_id(name: str) -> bool:
    return bool(HUB_ID.match(name)) and not name.startswith((".", "/", "~"))


def resolve_checkpoint(path_or_hub_id) -> Path:
    """A local folder for `path_or_hub_id`: the path itself when it exists or is not shaped
    like a hub id ("owner/name"), else a snapshot from huggingface_hub.snapshot_download
    (the hub cache; offline mode uses what is cached). A hub failure is one CheckpointError."""
    local = Path(path_or_hub_id)
    name = str(path_or_hub_id)
    if local.exists() or not looks_like_hub_id(name):
        return local
    import huggingface_hub

    try:
        folder = huggingface_hub.snapshot_download(repo_id=name, ignore_patterns=HUB_IGNORE)
    except Exception as e:  # noqa: BLE001 - offline, no such repo, gated, network
        raise CheckpointError(
            f"{name}: no such local folder, and the hub repository could not be fetched "
            f"({type(e).__name__}: {one_line(e)})"
        ) from None
    return Path(folder)


def weight_files(folder: Path) -> list[Path]:
    """The safetensors weight files of a transformers folder (the index's shards, or the
    files named like the authors' weights); pickle-only weights are refused."""
    from plume_lite.saving import index_shards

    names = index_shards(folder)
    if names is not None:
        return [folder / n for n in names]
    found = sorted(p for p in folder.iterdir() if WEIGHT_FILE.match(p.name))
    safetensors = [p for p in found if p.suffix == ".safetensors"]
    if not safetensors and found:
        raise CheckpointError(
            f"{folder}: only pickle weights {[p.name for p in found]}, which plume_lite never loads"
        )
    return safetensors


def _tensor_names(path: Path) -> list[str]:
    from plume_lite.saving import tensor_header

    return list(tensor_header(path))


def is_authors_layout(folder) -> bool:
    """True for a folder in the authors' released layout: no plume_config.json, a Qwen2-VL /
    Qwen2.5-VL config.json, and `latent_moe_transition.` tensors among the weights.

    Raises CheckpointError for such a folder whose weights are pickle files only (never
    loaded) or whose index or shards cannot be read: that is the error worth reporting."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / "plume_config.json").exists():
        return False
    try:
        config = read_json(folder / "config.json")
    except PlumeError:
        return False
    if not isinstance(config, dict) or config.get("model_type") not in BACKBONE_TYPES:
        return False
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = read_json(index).get("weight_map")
        return isinstance(weight_map, dict) and any(ADAPTER_PREFIX in str(k) for k in weight_map)
    return any(ADAPTER_PREFIX in k for path in weight_files(folder) for k in _tensor_names(path))


# ------------------------------------------------------------------ the adapter tensors
def read_adapter_tensors(folder) -> dict:
    """{authors' adapter name: tensor} from every weight file: each tensor whose name holds
    `latent_moe_transition.`, named by the text after it (as the authors' evaluation reads
    them). A name found twice, or a non-finite tensor, is a CheckpointError."""
    import torch
    from safetensors import safe_open

    folder = Path(folder)
    state, where = {}, {}
    for path in weight_files(folder):
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    if ADAPTER_PREFIX not in key:
                        continue
                    name = key.split(ADAPTER_PREFIX, 1)[1]
                    if name in state:
                        raise CheckpointError(
                            f"{path}: adapter tensor {key!r} is also in {where[name].name}; "
                            "which one is meant is ambiguous"
                        )
                    state[name], where[name] = f.get_tensor(key), path
        except PlumeError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: cannot read its tensors ({one_line(e)})") from None
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise CheckpointError(
                f"{where[name]}: {ADAPTER_PREFIX}{name} has dtype {tensor.dtype}, not float"
            )
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{where[name]}: {ADAPTER_PREFIX}{name} holds NaN or infinite values")
    if not state:
        raise CheckpointError(f"{folder}: no {ADAPTER_PREFIX}* tensors in its weights")
    return state


def _rename(name: str, source: str, target: str) -> str | None:
    """`name` rewritten from the `source` template to `target`, or None if it does not fit."""
    pattern = re.escape(source).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    match = re.fullmatch(pattern, name)
    return target.format(**match.groupdict()) if match else None


def package_name(authors_name: str) -> str | None:
    """This package's adapter name for an authors' name, or None when no rule matches."""
    for theirs, ours in ADAPTER_NAMES:
        if (renamed := _rename(authors_name, theirs, ours)) is not None:
            return renamed
    return None


def authors_name(package_key: str) -> str:
    """The authors' name of a package adapter name (the inverse rename)."""
    for theirs, ours in ADAPTER_NAMES:
        if (renamed := _rename(package_key, ours, theirs)) is not None:
            return renamed
    return package_key


def adapter_sizes(state: dict, hidden_size: int, where) -> dict:
    """num_experts and step_table_size read from the shapes, checked against the backbone."""

    def need(name):
        if name not in state:
            raise CheckpointError(f"{where}: adapter tensor {ADAPTER_PREFIX}{name} is missing")
        return state[name]

    dim = need("ln.weight").shape[0]
    if dim != hidden_size:
        raise CheckpointError(
            f"{where}: {ADAPTER_PREFIX}ln.weight has {dim} entries but the backbone's hidden size is "
            f"{hidden_size}"
        )
    if not any(k.startswith("shared_expert.") for k in state):
        raise CheckpointError(
            f"{where}: the adapter has no shared_expert.* tensors; plume_lite's adapter always has "
            "a shared expert (use_shared_expert=False is not supported)"
        )
    return {
        "num_experts": int(need("router.weight").shape[0]),
        "step_table_size": int(need("step_embed.weight").shape[0]),
    }


def rename_adapter_state(state: dict, expected: dict, where) -> dict:
    """`state` (authors' names) renamed to this package's names; every expected tensor
    present with its shape (`expected`: package name -> shape) and nothing else, or one
    CheckpointError naming the first offending tensor under its name in the checkpoint."""
    renamed = {}
    for name in sorted(state):
        new = package_name(name)
        if new is None or new not in expected:
            raise CheckpointError(
                f"{where}: unexpected adapter tensor {ADAPTER_PREFIX}{name} "
                f"(shape {list(state[name].shape)}); the adapter of these shapes has no such tensor"
            )
        renamed[new] = state[name]
    missing = sorted(set(expected) - set(renamed))
    if missing:
        names = [ADAPTER_PREFIX + authors_name(k) for k in missing]
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        raise CheckpointError(f"{where}: adapter tensor {names[0]} is missing{more}")
    for key, shape in expected.items():
        if tuple(renamed[key].shape) != tuple(shape):
            raise CheckpointError(
                f"{where}: adapter tensor {ADAPTER_PREFIX}{authors_name(key)} has shape "
                f"{list(renamed[key].shape)}, expected {list(shape)}"
            )
    return renamed


def trainer_latent_steps(folder: Path) -> int | None:
    """K of the last curriculum stage logged in trainer_state.json (None without one)."""
    path = folder / "trainer_state.json"
    if not path.exists():
        return None
    data = read_json(path)
    history = data.get("log_history") if isinstance(data, dict) else None
    values = [
        e["curriculum_latent_tokens"]
        for e in history or []
        if isinstance(e, dict) and isinstance(e.get("curriculum_latent_tokens"), (int, float))
    ]
    if not values:
        return None
    k = values[-1]
    if k != int(k) or k < 0:
        raise CheckpointError(f"{path}: curriculum_latent_tokens {k!r} is not a whole number of steps")
    return int(k)


# ------------------------------------------------------------------ loading and converting
def compat_config(folder: Path, source: str, sizes: dict, settings: dict) -> PlumeConfig:
    """The PlumeConfig of a released checkpoint: shapes, COMPAT_SETTINGS, K from
    trainer_state.json (a warning when it is not 8), then the caller's `settings`."""
    fixed = sorted(set(settings) & set(SHAPE_SETTINGS))
    if fixed:
        raise ConfigError(f"{fixed[0]} is read from the checkpoint's adapter tensors; it cannot be set")
    values = {"backbone": source, **COMPAT_SETTINGS, **sizes}
    logged = trainer_latent_steps(folder)
    if logged is not None and "latent_steps" not in settings:
        values["latent_steps"] = logged
        if logged != COMPAT_SETTINGS["latent_steps"]:
            log.warning(
                "%s: trainer_state.json says the last curriculum stage ran K = %d latent steps; using K = %d "
                "(the paper evaluates K = 8; pass latent_steps=8 to override)",
                folder,
                logged,
                logged,
            )
    values.update(settings)
    return PlumeConfig.from_dict(values)


def _check_tokens(processor, backbone, folder: Path) -> None:
    tok = processor.tokenizer
    vocab = tok.get_vocab()
    missing = [t for t in PLUME_TOKENS if t not in vocab]
    if missing:
        raise CheckpointError(
            f"{folder}: the tokenizer lacks the PLUME tokens {missing}; not a PLUME checkpoint "
            "(UME-R1 has only <gen_emb> and <disc_emb>)"
        )
    rows = backbone.get_input_embeddings().weight.shape[0]
    if rows < len(tok):
        raise CheckpointError(
            f"{folder}: the embedding matrix has {rows} rows but the tokenizer {len(tok)} tokens; "
            "plume_lite does not resize a released checkpoint"
        )


def load_authors_checkpoint(cls, folder, dtype=None, source=None, **settings):
    """A PlumeModel (class `cls`) from a folder in the authors' layout.

    Args:
        folder: the checkpoint folder (see resolve_checkpoint for hub ids).
        dtype: torch dtype of the backbone (default float32; "auto" keeps the stored one).
            The adapter holds float32 copies of the stored tensors (bf16 values are exact).
        source: what to record as `backbone` in the config (default: the folder).
        **settings: PlumeConfig fields the weights do not record (latent_steps, top_k,
            adapter="moe_no_anchor" for the authors' context "none", positions, protocol,
            instruction_prompt, max_new_tokens, expert_dropout, image_pipeline,
            frame_sampling, adapter_precision).

    Raises:
        CheckpointError: a file missing or damaged, an adapter tensor missing, unknown or
            misshapen (named), the tokenizer without the PLUME tokens, a backbone that is
            not Qwen2-VL / Qwen2.5-VL.
        ConfigError: a setting that is not a PlumeConfig field, is invalid, or is read
            from the weights (num_experts, step_table_size).
    """
    from plume_lite.saving import _load_full_backbone, check_hf_folder

    folder = Path(folder)
    check_hf_folder(folder, weights=True)
    state = read_adapter_tensors(folder)
    backbone, processor = _load_full_backbone(folder, dtype, allowed_unexpected=ADAPTER_PREFIX)
    hidden = backbone.config.text_config.hidden_size
    where = folder / "model.safetensors.index.json"
    where = where if where.exists() else folder / "model.safetensors"
    sizes = adapter_sizes(state, hidden, where)
    config = compat_config(folder, str(source if source is not None else folder), sizes, settings)
    _check_tokens(processor, backbone, folder)
    rows_before = backbone.get_input_embeddings().weight.shape
    model = cls(backbone, processor, config)
    if model.backbone.get_input_embeddings().weight.shape != rows_before:  # never: checked above
        raise CheckpointError(f"{folder}: loading changed the embedding matrix; this is a bug")
    expected = {k: tuple(v.shape) for k, v in model.adapter.state_dict().items()}
    renamed = rename_adapter_state(state, expected, where)
    model.adapter.load_state_dict(renamed, strict=True)
    log.info(
        "loaded the authors' PLUME checkpoint %s: D=%d, E=%d, top_k=%d, K=%d, protocol=%s, positions=%s",
        config.backbone,
        hidden,
        config.num_experts,
        config.top_k,
        config.latent_steps,
        config.protocol,
        config.positions,
    )
    return model


def convert_authors_checkpoint(src, dst, dtype="auto", **settings) -> Path:
    """Write the released checkpoint `src` (a folder or hub id) to `dst` in this package's
    layout (plume_config.json with the compatibility settings, adapter.safetensors,
    backbone/); `PlumeModel.from_pretrained(dst)` then gives the same model.

    Args:
        src: a folder in the authors' layout, or a hub id.
        dst: the folder to write (replaced atomically if it exists).
        dtype: backbone dtype written ("auto": as stored, e.g. bf16 for the released model).
        **settings: as for load_authors_checkpoint.

    Returns:
        Path: `dst`.
    """
    from plume_lite.model import PlumeModel

    folder = resolve_checkpoint(src)
    if not is_authors_layout(folder):
        raise CheckpointError(
            f"{src}: not a checkpoint in the authors' released layout (a Qwen2-VL config.json, "
            f"{ADAPTER_PREFIX}* tensors in its weights, no plume_config.json)"
        )
    model = load_authors_checkpoint(PlumeModel, folder, dtype=dtype, source=str(src), **settings)
    model.save_pretrained(dst)
    return Path(dst)


def describe(path) -> str:
    """One line on what `convert` wrote (for the CLI)."""
    config = json.loads((Path(path) / "plume_config.json").read_text())
    keys = ("num_experts", "top_k", "latent_steps", "protocol", "positions")
    return f"wrote {path}: " + ", ".join(f"{k}={config[k]}" for k in keys)
