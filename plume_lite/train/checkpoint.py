"""Training checkpoints: atomic folders of safetensors + JSON, never pickle.

    OUT/checkpoints/step_00000100/
        weights.safetensors     the trainable parameters (frozen ones are rebuilt from
                                the backbone; a checksum of them is kept and verified)
        optimizer.safetensors   every tensor of the optimizer state dict, by path
        rng.safetensors         torch CPU/CUDA generator states, per process
        state.json              step, scheduler, sampler position, curriculum stage,
                                python/numpy RNG states, optimizer structure/scalars
        manifest.json           file sizes, written last

A checkpoint is written into a hidden temporary folder and renamed into place in one
step (plume_lite.io.atomic_dir), so a killed run leaves either the whole folder or
none; on top of that, `latest_checkpoint` only trusts a folder whose manifest matches
the files on disk."""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from plume_lite.errors import CheckpointError
from plume_lite.io import atomic_dir, atomic_write_text

FORMAT = "plume_lite-train-checkpoint-1"
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
        return {"__items__": [[flatten(k, tensors, f"{prefix}.k{i}"), flatten(v, tensors, f"{prefix}.{k}")]
                              for i, (k, v) in enumerate(obj.items())]}
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
        rng_tensors, rng_meta = {}, []
        for rank, (meta, tensors) in enumerate(rng_per_rank):
            rng_meta.append(meta)
            rng_tensors.update({f"rank{rank}.{k}": v.cpu().contiguous() for k, v in tensors.items()})
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        body = dict(state, format=FORMAT, step=step, optimizer=opt_struct,
                    scheduler=flatten(scheduler.state_dict(), {}), rng=rng_meta,
                    frozen_checksum=frozen_checksum(model))
        (tmp / "state.json").write_text(json.dumps(body, indent=1))
        files = {f.name: f.stat().st_size for f in tmp.iterdir()}
        (tmp / "manifest.json").write_text(json.dumps({"format": FORMAT, "step": step, "files": files}))
    return path


def is_complete(path) -> bool:
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        return manifest.get("format") == FORMAT and all(
            (path / name).is_file() and (path / name).stat().st_size == size
            for name, size in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


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
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path, model, optimizer, scheduler, rank: int = 0) -> dict:
    """Restore weights, optimizer, scheduler and this rank's RNG; return state.json."""
    path = Path(path)
    if not is_complete(path):
        raise CheckpointError(f"{path} is not a complete training checkpoint")
    state = json.loads((path / "state.json").read_text())
    weights = load_file(str(path / "weights.safetensors"))
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights))[:3], sorted(set(weights) - expected)[:3]
        raise CheckpointError(f"{path}: trainable parameters differ from this model "
                              f"(missing {missing}, unexpected {extra}); was the config changed?")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    checksum = frozen_checksum(model)
    if abs(checksum - state["frozen_checksum"]) > 1e-6 * max(1.0, abs(checksum)):
        raise CheckpointError(f"{path}: the frozen base weights differ from the ones trained on "
                              f"(checksum {checksum:.6g} vs {state['frozen_checksum']:.6g})")
    opt_tensors = load_file(str(path / "optimizer.safetensors"))
    optimizer.load_state_dict(unflatten(state["optimizer"], opt_tensors))
    scheduler.load_state_dict(unflatten(state["scheduler"], {}))
    rng = load_file(str(path / "rng.safetensors"))
    ranks = len(state["rng"])
    r = rank if rank < ranks else 0      # fewer processes saved than now: reuse rank 0's
    set_rng_state(state["rng"][r], {k.split(".", 1)[1]: v for k, v in rng.items()
                                    if k.startswith(f"rank{r}.")})
    return state


def write_json(path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))
