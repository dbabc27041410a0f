"""Training checkpoints: atomic folders of safetensors + JSON, never pickle.

    OUT/checkpoints/step_00000100/
        weights.safetensors     the trainable parameters (frozen ones are rebuilt from
                                the backbone; a checksum of them is kept and verified)
        optimizer.safetensors   every tensor of the optimizer state dict, by path
        rng.safetensors         torch CPU/CUDA generator states, per process
        state.json              step, scheduler, sampler position, curriculum stage,
                                python/numpy RNG states, optimizer structure/scalars
        manifest.json           size and sha256 of every other file, written last

A checkpoint is written into a hidden temporary folder and renamed into place in one
step (plume_lite.io.atomic_dir), so a killed run leaves either the whole folder or
none; pruning renames a folder away before deleting it (plume_lite.io.discard), so a
kill leaves a hidden leftover, never a half-deleted checkpoint (`clean_leftovers`
removes both kinds). `latest_checkpoint` trusts a folder whose manifest sizes match
the files on disk (cheap); `verify_checkpoint` and `load_checkpoint` also check every
sha256, so a file corrupted in place at the same size is never loaded, and
`resume_point` picks the newest checkpoint that verifies (saying which did not).
FSDP launches write step folders of another layout here (sharded_checkpoint.py, format
SHARDED_FORMAT, nested file names in the manifest); finding, verifying and pruning
treat both alike."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from plume_lite.errors import CheckpointError
from plume_lite.io import (
    atomic_dir,
    atomic_write_text,
    clean_leftovers,
    discard,
    one_line,
    read_json,
    sha256_file,
)

FORMAT = "plume_lite-train-checkpoint-2"  # -2: the manifest holds a sha256 of every file
LEGACY_FORMATS = ("plume_lite-train-checkpoint-1",)  # sizes only: resumed with a logged note
SHARDED_FORMAT = "plume_lite-train-checkpoint-sharded-1"  # FSDP: sharded_checkpoint.py
FORMATS = (FORMAT, SHARDED_FORMAT, *LEGACY_FORMATS)
FILES = ("weights.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json", "manifest.json")
SHARDED_FILES = ("accelerate", "rng.safetensors", "state.json", "manifest.json")
_STEP_DIR = re.compile(r"^step_(\d{8})$")


# ------------------------------------------------------------------ tensor trees → JSON
def flatten(obj, tensors: dict, prefix: str = ""):
    """Encode a state dict as JSON-able structure; tensors go into `tensors` by path."""
    if torch.is_tensor(obj):
        key = prefix or "root"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        # optimizer state is keyed by int parameter index: keep key types exactly
        return {
            "__items__": [
                [flatten(k, tensors, f"{prefix}.k{i}"), flatten(v, tensors, f"{prefix}.{k}")]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def unflatten(obj, tensors: dict):
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(unflatten(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in obj["__items__"]}
        if "__ndarray__" in obj:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
    return obj


# ------------------------------------------------------------------ RNG
def rng_state() -> tuple[dict, dict]:
    """(JSON-able python/numpy states, torch generator tensors) of this process."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    return {"python": flatten(random.getstate(), {}), "numpy": flatten(np.random.get_state(), {})}, tensors


def set_rng_state(meta: dict, tensors: dict) -> None:
    random.setstate(unflatten(meta["python"], {}))
    np.random.set_state(unflatten(meta["numpy"], {}))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# ------------------------------------------------------------------ weights
def trainable_state(model) -> dict:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def frozen_checksum(model) -> float:
    """Sum of |frozen weights| in float64: a cheap guard that a resume rebuilt the same base."""
    with torch.no_grad():
        return float(sum(p.detach().double().abs().sum() for p in model.parameters() if not p.requires_grad))


# ------------------------------------------------------------------ save / find / load
def step_dir(root, step: int) -> Path:
    return Path(root) / f"step_{step:08d}"


def save_checkpoint(root, step: int, model, optimizer, scheduler, state: dict, rng_per_rank: list) -> Path:
    """Write checkpoint `step` under `root` atomically (call on the main process only).

    `state`: JSON-able extras (sampler, curriculum stage, config...); `rng_per_rank`:
    [(meta, tensors)] from `rng_state()` of every process, in rank order."""
    path = step_dir(root, step)
    with atomic_dir(path) as tmp:
        save_file(trainable_state(model), str(tmp / "weights.safetensors"))
        opt_tensors: dict = {}
        opt_struct = flatten(optimizer.state_dict(), opt_tensors, "opt")
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng_meta = save_rng(tmp, rng_per_rank)
        body = dict(
            state,
            format=FORMAT,
            step=step,
            optimizer=opt_struct,
            scheduler=flatten(scheduler.state_dict(), {}),
            rng=rng_meta,
            frozen_checksum=frozen_checksum(model),
        )
        (tmp / "state.json").write_text(json.dumps(body, indent=1))
        write_manifest(tmp, FORMAT, step)
    return path


def save_rng(folder: Path, rng_per_rank: list) -> list:
    """Write every process's RNG tensors to `folder`/rng.safetensors (keys `rank<i>.<name>`);
    return their JSON parts, in rank order."""
    rng_tensors, rng_meta = {}, []
    for rank, (meta, tensors) in enumerate(rng_per_rank):
        rng_meta.append(meta)
        rng_tensors.update({f"rank{rank}.{k}": v.cpu().contiguous() for k, v in tensors.items()})
    save_file(rng_tensors, str(folder / "rng.safetensors"))
    return rng_meta


def write_manifest(folder: Path, fmt: str, step: int) -> None:
    """`folder`/manifest.json: the size and sha256 of every file below it (by relative path)."""
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    names = {f: f.relative_to(folder).as_posix() for f in files}
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "format": fmt,
                "step": step,
                "files": {names[f]: f.stat().st_size for f in files},
                "sha256": {names[f]: sha256_file(f) for f in files},
            }
        )
    )


def _manifest(path: Path) -> dict:
    """The manifest of checkpoint folder `path`, structure checked; CheckpointError otherwise."""
    file = path / "manifest.json"
    manifest = read_json(file)
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{file}: not a plume_lite training checkpoint manifest (format {got!r})")
    files, sums = manifest.get("files"), manifest.get("sha256", {})
    if (
        not isinstance(files, dict)
        or not isinstance(sums, dict)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in files.values())
        or not all(_safe_name(name, nested=manifest["format"] == SHARDED_FORMAT) for name in files)
    ):
        raise CheckpointError(f"{file}: malformed file list")
    if manifest["format"] in (FORMAT, SHARDED_FORMAT) and set(sums) != set(files):
        raise CheckpointError(f"{file}: the sha256 list does not cover every file")
    return manifest


def _safe_name(name, nested: bool) -> bool:
    """A file name inside the step folder: no '..', no absolute path; sharded
    checkpoints hold accelerate's subfolders, the others plain names only."""
    if not isinstance(name, str) or name in ("", ".", "..") or name.startswith("/"):
        return False
    parts = name.split("/")
    return (nested or len(parts) == 1) and all(part not in ("", ".", "..") for part in parts)


def checkpoint_format(path) -> str:
    """The format named by checkpoint folder `path`'s manifest (CheckpointError if unreadable)."""
    return _manifest(Path(path))["format"]


def is_complete(path) -> bool:
    """Cheap check: a manifest of this format whose file sizes match the disk (no hashing)."""
    path = Path(path)
    try:
        manifest = _manifest(path)
        return all(
            (path / name).is_file() and (path / name).stat().st_size == size
            for name, size in manifest["files"].items()
        )
    except (CheckpointError, OSError):
        return False


def verify_checkpoint(path) -> str | None:
    """Check a checkpoint's manifest, sizes and sha256s; CheckpointError naming the first
    bad file. Returns a note for a legacy checkpoint (sizes checked only), else None."""
    path = Path(path)
    manifest = _manifest(path)
    for name, size in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing")
        if file.stat().st_size != size:
            raise CheckpointError(f"{file} has {file.stat().st_size} bytes, its manifest says {size}")
    if manifest["format"] in LEGACY_FORMATS:
        return (
            f"{path.name} was written without checksums (format {manifest['format']}); "
            "only its sizes were checked"
        )
    for name, digest in manifest["sha256"].items():
        if sha256_file(path / name) != digest:
            raise CheckpointError(f"{path / name} fails its sha256 check: it changed after it was written")
    return None


def is_ours(path) -> bool:
    """A step folder this code wrote (verifiable or damaged) rather than another tool's."""
    path = Path(path)
    if not path.is_dir() or not _STEP_DIR.match(path.name):
        return False
    manifest = path / "manifest.json"
    if manifest.exists():
        try:
            return json.loads(manifest.read_bytes()).get("format") in FORMATS
        except (OSError, ValueError, AttributeError):
            pass  # a damaged manifest: judge by the file names
    names = {entry.name for entry in path.iterdir()}
    return names <= set(FILES) or names <= set(SHARDED_FILES)


def clean_checkpoint_leftovers(root) -> list[str]:
    """Remove temporary and half-pruned folders that killed runs left under `root`."""
    return clean_leftovers(root, lambda name: bool(_STEP_DIR.match(name)))


def foreign_entries(root) -> list[str]:
    """Names under `root` that training could overwrite but did not write: visible
    entries other than our step folders (another tool's checkpoints, a step folder of
    another format). Hidden names (.DS_Store, our own leftovers) are never written over."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if not p.name.startswith(".") and not (_STEP_DIR.match(p.name) and is_ours(p))
    )


def resume_point(root) -> tuple[Path | None, str | None]:
    """(the newest checkpoint under `root` that verifies, a one-line note or None).

    Newer step folders that fail verification are named in the note ("... resuming from
    the previous verified checkpoint"). CheckpointError when there are step folders but
    none verifies; (None, None) when there are none."""
    root = Path(root)
    steps = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name)) if root.is_dir() else []
    failed = []
    for path in reversed(steps):
        try:
            legacy = verify_checkpoint(path)
        except CheckpointError as e:
            failed.append(f"{path.name}: {one_line(e).replace(str(path) + '/', '')}")
            continue
        notes = (
            [f"checkpoint {'; '.join(failed)}; resuming from the previous verified checkpoint {path.name}"]
            if failed
            else []
        ) + ([legacy] if legacy else [])
        return path, "; ".join(notes) or None
    if failed:
        raise CheckpointError(
            f"no checkpoint in {root} can be resumed ({'; '.join(failed)}); "
            "move the damaged folders away to start again"
        )
    return None, None


def latest_verified(root) -> Path | None:
    """The newest checkpoint whose sha256s verify (None if none does)."""
    for path in reversed(list_checkpoints(root)):
        try:
            verify_checkpoint(path)
            return path
        except CheckpointError:
            continue
    return None


def list_checkpoints(root) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (temporary folders are hidden)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))
    return [p for p in found if is_complete(p)]


def latest_checkpoint(root) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def prune_checkpoints(root, keep: int) -> None:
    for old in list_checkpoints(root)[:-keep]:
        discard(old)  # renamed away first: a kill never leaves a half-deleted step folder


def load_checkpoint(path, model, optimizer, scheduler, rank: int = 0, verify: bool = True) -> dict:
    """Restore weights, optimizer, scheduler and this rank's RNG; return state.json.

    `verify`: check every sha256 first (False: sizes only, for a folder just verified)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a training checkpoint folder")
    if verify:
        verify_checkpoint(path)
    elif not is_complete(path):
        raise CheckpointError(f"{path} is not a complete training checkpoint")
    if checkpoint_format(path) == SHARDED_FORMAT:
        raise CheckpointError(
            f"{path} was written by an FSDP launch (each process's shard); resume it with "
            "configs/accelerate/fsdp.yaml, not with one process or DDP"
        )
    state = read_json(path / "state.json")
    weights = _tensors(path / "weights.safetensors")
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights))[:3], sorted(set(weights) - expected)[:3]
        raise CheckpointError(
            f"{path}: trainable parameters differ from this model "
            f"(missing {missing}, unexpected {extra}); was the config changed?"
        )
    wrong = sorted(n for n, v in weights.items() if v.shape != params[n].shape)
    if wrong:
        raise CheckpointError(
            f"{path / 'weights.safetensors'}: {wrong[0]!r} has shape "
            f"{list(weights[wrong[0]].shape)}, the model's is {list(params[wrong[0]].shape)}; "
            "was the config changed?"
        )
    try:
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        checksum = frozen_checksum(model)
        if abs(checksum - state["frozen_checksum"]) > 1e-6 * max(1.0, abs(checksum)):
            raise CheckpointError(
                f"{path}: the frozen base weights differ from the ones trained on "
                f"(checksum {checksum:.6g} vs {state['frozen_checksum']:.6g})"
            )
        opt_tensors = _tensors(path / "optimizer.safetensors")
        optimizer.load_state_dict(unflatten(state["optimizer"], opt_tensors))
        scheduler.load_state_dict(unflatten(state["scheduler"], {}))
        restore_rng(path, state["rng"], rank)
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(
            f"{path / 'state.json'}: the saved state does not fit this run "
            f"({type(e).__name__}: {one_line(e)})"
        ) from None
    return state


def restore_rng(path: Path, meta: list, rank: int) -> None:
    """Set this process's generators from checkpoint `path`'s rng.safetensors and the
    per-rank `meta` of its state.json."""
    rng = _tensors(path / "rng.safetensors")
    r = rank if rank < len(meta) else 0  # fewer processes saved than now: reuse rank 0's
    set_rng_state(meta[r], {k.split(".", 1)[1]: v for k, v in rng.items() if k.startswith(f"rank{r}.")})


def _tensors(path) -> dict:
    """The tensors of a safetensors file as tensors of their own: load_file's may be views
    of the file's memory map, and optimizer state is updated in place."""
    try:
        return {k: v.clone() for k, v in load_file(str(path)).items()}
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...
        raise CheckpointError(f"{path}: not a readable safetensors file ({one_line(e)})") from None


def write_json(path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))
