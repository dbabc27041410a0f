"""Training checkpoints of FSDP launches: accelerate's own state saving, in a step folder
of the same atomic, checksummed kind as checkpoint.py's.

    OUT/checkpoints/step_00000100/
        accelerate/             accelerator.save_state: each process's shard of the model
                                and optimizer (torch.distributed.checkpoint files)
        rng.safetensors         torch CPU/CUDA generator states, per process
        state.json              step, scheduler, sampler position, curriculum stage,
                                python/numpy RNG states
        manifest.json           size and sha256 of every other file (nested paths), last

Under FSDP each process holds only its shard of the weights and optimizer state, so
plume_lite's own checkpoint (the main process's full state) cannot be used: every
process writes its shard through `accelerator.save_state` into one hidden temporary
folder that the main process made, and the main process renames it into place once
all have finished, so a killed run leaves the whole folder or none (the temporary
folder has atomic_dir's name pattern, which `clean_checkpoint_leftovers` removes).
accelerate's pickled RNG files are dropped: rng.safetensors holds the same states.
The folder sits beside one-process / DDP checkpoints in `checkpoints/`, so finding,
verifying and pruning are checkpoint.py's; only writing and loading differ."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from plume_lite.errors import CheckpointError
from plume_lite.io import one_line, read_json, replace_dir
from plume_lite.train.checkpoint import (
    SHARDED_FORMAT,
    checkpoint_format,
    flatten,
    restore_rng,
    save_rng,
    step_dir,
    unflatten,
    write_manifest,
)

STATE = "accelerate"  # the subfolder accelerator.save_state writes


def save_sharded_checkpoint(accelerator, root, step: int, scheduler, state: dict, rng_per_rank: list) -> Path:
    """Write checkpoint `step` under `root` (call on every process: each saves its shard).

    `state`: JSON-able extras (sampler, curriculum stage, mode); `rng_per_rank`:
    [(meta, tensors)] from `rng_state()` of every process, in rank order."""
    from accelerate.utils import broadcast_object_list

    path, main = step_dir(root, step), accelerator.is_main_process
    name = [None]
    if main:
        path.parent.mkdir(parents=True, exist_ok=True)
        name = [tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")]
    tmp = Path(broadcast_object_list(name)[0])
    accelerator.save_state(str(tmp / STATE))
    accelerator.wait_for_everyone()  # every shard is on disk
    if main:
        try:
            _finish(tmp, path, step, scheduler, state, rng_per_rank)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    accelerator.wait_for_everyone()
    return path


def _finish(tmp: Path, path: Path, step: int, scheduler, state: dict, rng_per_rank: list) -> None:
    for pickled in (tmp / STATE).glob("random_states_*.pkl"):  # never pickle: rng.safetensors has them
        pickled.unlink()
    rng_meta = save_rng(tmp, rng_per_rank)
    body = dict(
        state,
        format=SHARDED_FORMAT,
        step=step,
        scheduler=flatten(scheduler.state_dict(), {}),
        rng=rng_meta,
        processes=len(rng_per_rank),
    )
    (tmp / "state.json").write_text(json.dumps(body, indent=1))
    write_manifest(tmp, SHARDED_FORMAT, step)
    replace_dir(tmp, path)  # over a damaged checkpoint of this step that the resume skipped


def load_sharded_checkpoint(accelerator, path, scheduler, rank: int) -> dict:
    """Restore this process's shard of the weights and optimizer (accelerator.load_state),
    the scheduler and this rank's RNG from a checkpoint that `resume_point` verified;
    return its state.json. CheckpointError for a one-process / DDP checkpoint."""
    path = Path(path)
    kind = checkpoint_format(path)
    if kind != SHARDED_FORMAT:
        raise CheckpointError(
            f"{path} was written by a one-process or DDP run ({kind}); an FSDP launch cannot "
            "resume it: resume with configs/accelerate/ddp.yaml"
        )
    state = read_json(path / "state.json")
    try:
        accelerator.load_state(str(path / STATE))
    except Exception as e:  # noqa: BLE001 - torch.distributed.checkpoint raises many kinds
        raise CheckpointError(
            f"{path / STATE}: accelerate could not load it into this model "
            f"({type(e).__name__}: {one_line(e)}); was the config changed?"
        ) from None
    try:
        scheduler.load_state_dict(unflatten(state["scheduler"], {}))
        restore_rng(path, state["rng"], rank)
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path / 'state.json'}: the saved state does not fit this run "
            f"({type(e).__name__}: {one_line(e)})"
        ) from None
    return state
