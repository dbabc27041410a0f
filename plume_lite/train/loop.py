"""`plume-lite train`: PLUME (latent) and its two baselines (explicit, direct).

    from plume_lite.train.loop import train
    from plume_lite.train.config import resolve_config
    summary = train(resolve_config("tiny", mode="latent"), "data/synth", "runs/latent")

accelerate runs the loop on CPU, one GPU, or several processes (`accelerate launch`
with DDP, FSDP or DeepSpeed). Output folder:

    train_config.json/.yaml   the resolved config      log.jsonl     one line per step
    checkpoints/step_*/       see checkpoint.py (FSDP: sharded_checkpoint.py)
    summary.json              written at the end
    model/                    PlumeModel.save_pretrained of the final weights
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path

import torch

from plume_lite.curriculum import STAGE_RATIOS, Curriculum, Stage
from plume_lite.errors import CheckpointError, ConfigError, PlumeError
from plume_lite.io import atomic_write_text, clean_leftovers, folder_lock, one_line
from plume_lite.runtime import using_threads
from plume_lite.train.batches import TaskBatchSampler, make_batch
from plume_lite.train.checkpoint import (
    clean_checkpoint_leftovers,
    foreign_entries,
    latest_checkpoint,
    latest_verified,
    load_checkpoint,
    prune_checkpoints,
    resume_point,
    rng_state,
    save_checkpoint,
    write_json,
)
from plume_lite.train.config import RESUME_FREE, TrainConfig
from plume_lite.train.grad_cache import grad_cache_step
from plume_lite.train.sharded_checkpoint import load_sharded_checkpoint, save_sharded_checkpoint
from plume_lite.train.step import TrainStep

FIXED_STAGE = Stage(index=0, ratio=0.0, n_latent=0, drop_answer=False, m=0)  # explicit / direct
log = logging.getLogger(__name__)
LOCK = ".train.lock"  # fcntl.flock'ed by the main process for the whole run
OUTPUTS = ("train_config.json", "train_config.yaml", "log.jsonl", "summary.json", "model")


# accelerate distributed types whose engine owns the optimizer, clipping and state files
REFUSED = ("DEEPSPEED", "MEGATRON_LM")


def refuse_sharded(distributed_type, fsdp_version: int | None = None) -> bool:
    """True for an FSDP2 launch (checkpoints through accelerator.save_state, see
    sharded_checkpoint.py), False for one process / DDP (plume_lite's own checkpoint).

    ConfigError for DeepSpeed / Megatron-LM: their engine takes over the optimizer, the
    gradient clipping and the checkpoint files, deepspeed is not installed here, and no
    such launch was ever run; and for FSDP1, which was not tested (FSDP2 was)."""
    name = getattr(distributed_type, "value", str(distributed_type))
    if name in REFUSED:
        raise ConfigError(
            f"{name} launches are not supported: their engine owns the optimizer, clipping and "
            "checkpoints, and none was ever run with plume_lite; launch with "
            "configs/accelerate/fsdp.yaml (FSDP2) or ddp.yaml"
        )
    if name == "FSDP" and fsdp_version != 2:
        raise ConfigError(
            f"FSDP version {fsdp_version} launches are not supported (only FSDP2 was tested): "
            "set fsdp_version: 2 as configs/accelerate/fsdp.yaml does"
        )
    return name == "FSDP"


class TrainingDiverged(PlumeError):
    """The loss or gradient norm became NaN/inf; the run stopped before that update."""


def build_model(config: TrainConfig):
    """The PlumeModel to train: backbone + adapter, LoRA or full, vision frozen or not."""
    from plume_lite.model import PlumeModel

    # bf16 base weights only where they stay frozen (LoRA); full fine-tuning keeps fp32
    # master weights and lets accelerate autocast.
    dtype = torch.bfloat16 if (config.precision == "bf16" and config.lora) else None
    if config.init_from:
        model = model_from_run(config, dtype)
    else:
        model = PlumeModel.from_backbone(config.backbone, dtype=dtype, **config.model_kwargs())
    return prepare_for_training(model, config)


def prepare_for_training(model, config: TrainConfig):
    """`model` with the config's LoRA, frozen vision tower and fused experts applied."""
    if config.lora:
        model.enable_lora(
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            targets=tuple(config.lora_targets),
        )
    if config.freeze_vision:
        model.freeze_vision()
    if config.fused_experts:  # a plain attribute: the saved weights are the same either way
        model.adapter.fused = True
    return model


def model_from_run(config: TrainConfig, dtype):
    """The backbone of the PlumeModel saved at `config.init_from` (weights, tokenizer and
    PLUME token rows as trained there) under a new adapter and this run's settings."""
    from plume_lite.config import PlumeConfig
    from plume_lite.model import PlumeModel

    base = PlumeModel.from_pretrained(config.init_from, dtype=dtype)
    if base.lora_enabled:
        raise ConfigError(f"init_from {config.init_from} is a LoRA checkpoint; start from a full one")
    settings = PlumeConfig.from_dict({"backbone": config.backbone, **config.model_kwargs()})
    return PlumeModel(base.backbone, base.processor, settings)


def load_pairs(config: TrainConfig, data_dir):
    from plume_lite.data.mmeb import load_train_pairs

    pairs = load_train_pairs(data_dir, tasks=config.tasks, limit=config.train_limit)
    if not pairs:
        raise ConfigError(f"no training pairs found in {data_dir}")
    return pairs


def lr_lambda(config: TrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        if config.lr_schedule == "constant":
            return 1.0
        span = max(1, config.max_steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - config.warmup_steps) / span)))

    return factor


def reset_moments(optimizer) -> None:
    """Forget Adam's moments (the paper resets the optimizer at each stage switch)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    inner.state.clear()


def check_out_dir(config: TrainConfig, out_dir: Path, resume: bool) -> TrainConfig:
    """Refuse a run folder that this run could damage or cannot continue, in one line.

    Always: `checkpoints/` may hold only step folders and leftovers this code wrote
    (another tool's checkpoint would be overwritten). A fresh run: no checkpoint or
    model yet, and a log/summary only beside a readable train_config.json (ours). A
    resume: the folder holds a readable train_config.json with the same settings."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file, not a run folder")
    saved, ckpt_root = out_dir / "train_config.json", out_dir / "checkpoints"
    if ckpt_root.exists() and not ckpt_root.is_dir():
        raise ConfigError(f"{ckpt_root} is a file; training needs that name for its checkpoint folder")
    foreign = foreign_entries(ckpt_root)
    if foreign:
        raise ConfigError(
            f"{ckpt_root} holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
            "which plume_lite training did not write; refusing to train there (it could "
            "overwrite them): move them away or choose another --out"
        )
    steps = [p for p in ckpt_root.iterdir() if not p.name.startswith(".")] if ckpt_root.is_dir() else []
    if not resume:
        if steps or (out_dir / "model").exists():
            raise ConfigError(
                f"{out_dir} already holds a training run; pass --resume to continue "
                "it or choose another --out"
            )
        written = [n for n in OUTPUTS[2:] if (out_dir / n).exists()]
        if written and not saved.exists():
            raise ConfigError(
                f"{out_dir} holds {', '.join(written)} but no train_config.json: not written by "
                "a plume_lite training run; refusing to overwrite it: choose another --out"
            )
        if saved.exists():
            try:
                TrainConfig.load(saved)
            except ConfigError as e:
                raise ConfigError(
                    f"{out_dir} holds a train_config.json not written by a plume_lite training "
                    f"run ({e}); refusing to overwrite it: choose another --out"
                ) from None
        return config
    if not saved.exists():
        present = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK) if out_dir.is_dir() else []
        what = (
            f"it holds {', '.join(present[:3])}{' ...' if len(present) > 3 else ''}"
            if present
            else "it is empty"
            if out_dir.is_dir()
            else "it does not exist"
        )
        raise ConfigError(
            f"nothing to resume in {out_dir}: no train_config.json ({what}), so it is not a "
            "plume_lite training run; run without --resume to start one"
        )
    old = TrainConfig.load(saved).to_dict()
    new = config.to_dict()
    diff = [k for k in old if k not in RESUME_FREE and old[k] != new[k]]
    if diff:
        raise ConfigError(
            "--resume with settings that differ from the saved run: "
            + ", ".join(f"{k}={new[k]!r} (saved {old[k]!r})" for k in diff)
        )
    return config


def _clean_leftovers(out_dir: Path) -> list[str]:
    """Hidden temporary / half-pruned folders and files of killed runs (our names only)."""
    return clean_leftovers(out_dir, lambda name: name in OUTPUTS) + [
        f"checkpoints/{n}" for n in clean_checkpoint_leftovers(out_dir / "checkpoints")
    ]


def train(config: TrainConfig, data_dir, out_dir, resume: bool = False, on_step=None) -> dict:
    """Train PLUME (or a baseline) on a data folder, checkpointing as it goes; return the summary.

    The objective, batches and curriculum are those of docs/method.md §Training objective
    and §Curriculum (`config.mode` picks latent, explicit or direct). accelerate runs the
    loop on the CPU, one GPU or every process of `accelerate launch`. During the run torch
    uses `config.threads` CPU threads (0: unchanged); the previous setting is restored.

    Args:
        config: the TrainConfig of the run, usually from `resolve_config(profile, ...)`.
        data_dir: training pairs: a SynthMMEB folder (`plume-lite synth`), a local
            MMEB-train or UME-sft-train copy, or a hub id (see plume_lite.data.mmeb).
        out_dir: the run folder (str or os.PathLike). It receives `train_config.json`
            and `.yaml`, `log.jsonl` (one record every `log_every` steps),
            `checkpoints/step_*/` (every `save_every` steps and at the last step of this
            run; the newest `keep_checkpoints` are kept), `model/` (the final
            `PlumeModel.save_pretrained`, once `max_steps` is reached) and `summary.json`.
        resume: continue from the newest complete checkpoint in `out_dir` (weights,
            optimizer, scheduler, sampler position, curriculum stage, RNG states), with
            the same settings as the saved `train_config.json` except the logging,
            saving and memory-only fields (`RESUME_FREE`). Each checkpoint's sha256s are verified first;
            a corrupted newest checkpoint is named in one log line and the previous
            verified one is used. A run folder of this format with no checkpoint yet
            starts from step 0 (said in `summary["resume_note"]`); a folder holding
            anything else is refused, never overwritten.
        on_step: optional callable, called on the main process after every step with
            that step's record: "step", "stage", "ratio", "n_latent", "drop_answer",
            "task", "epoch", "lr", the loss parts ("total", "nce_disc" and, outside
            direct mode, "ce_q", "ce_c", "nce_gen"; "balance" in latent mode),
            "grad_norm", "elapsed_s" and, with a router adapter and latent steps,
            "router_entropy" and "expert_load".

    Returns:
        dict: the summary, also written to `out_dir/summary.json`: "mode", "finished"
        (False when `max_steps_this_run` stopped it early; `resume=True` goes on),
        "step", "max_steps", "resumed_from", "steps_this_run", "wall_s", "pairs_per_s",
        "final_losses_last20" (mean loss parts of the last 20 steps), "stages" (the step
        at which each stage began), "checkpoint" (newest checkpoint path), "model" (the
        saved model path, or None if not finished), "log" and, when resume had to fall
        back or start afresh, "resume_note".

    Raises:
        ConfigError: `out_dir` already holds a run and `resume` is False; `resume` with
            settings that differ from the saved run; no training pairs in `data_dir`; no
            task with a full global batch; accelerate set up another number of processes
            than were launched.
        DataError: `data_dir` is missing or malformed, or names unknown tasks.
        CheckpointError: the checkpoint being resumed does not match this model, no
            checkpoint verifies, or `log.jsonl` is damaged before its last line.
        FolderLocked: another run holds `out_dir` (the message names its pid).
        TrainingDiverged: the loss or gradient norm became NaN or infinite; the run stops
            before that update, and `summary.json` names the last good checkpoint.

    Example:
        >>> from plume_lite.data.synth import make_synth
        >>> from plume_lite.train import resolve_config, train
        >>> data = make_synth("data/synth", size="tiny", tasks=["img_cls_colorshape", "img_ret_t2i"])
        >>> config = resolve_config("tiny", mode="latent",
        ...                         overrides=["max_steps=4", "batch_size=4", "progress_bar=false"])
        >>> summary = train(config, data, "runs/latent")
        >>> summary["finished"], summary["step"], summary["model"]
        (True, 4, 'runs/latent/model')
    """
    with using_threads(config.threads):  # a process-wide setting: restored afterwards
        return _train(config, data_dir, out_dir, resume, on_step)


def _train(config: TrainConfig, data_dir, out_dir, resume: bool, on_step) -> dict:
    out_dir = Path(out_dir)
    check_out_dir(config, out_dir, resume)  # refuse before the lock file is created; again under it
    # one run per folder: the main process holds the lock (other ranks share its run)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    with folder_lock(out_dir, LOCK) if main_rank else contextlib.nullcontext():
        return _train_locked(config, data_dir, out_dir, resume, on_step)


def _train_locked(config: TrainConfig, data_dir, out_dir: Path, resume: bool, on_step) -> dict:
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import gather_object, set_seed

    ckpt_root = out_dir / "checkpoints"
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    # without cpu=True, accelerate on a machine without a GPU ignores the launcher and
    # every process would train alone (into the same folder)
    cpu = config.cpu or (launched > 1 and not torch.cuda.is_available())
    if launched == 1:
        # accelerate keeps one global state per process and refuses a second run with
        # other settings (e.g. bf16 after fp32 in the same notebook): start it afresh
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=config.precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )  # direct mode skips the adapter
    if accelerator.num_processes != launched:
        raise ConfigError(f"launched {launched} processes but accelerate set up {accelerator.num_processes}")
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    sharded = refuse_sharded(accelerator.distributed_type, getattr(plugin, "fsdp_version", None))
    main = accelerator.is_main_process
    if main:
        cleaned = _clean_leftovers(out_dir)
        if cleaned:
            log.info("%s: removed what interrupted runs left behind: %s", out_dir, ", ".join(cleaned))
    accelerator.wait_for_everyone()
    config = check_out_dir(config, out_dir, resume)
    resume_from, note, log_lines = None, None, []
    if resume:
        resume_from, note = resume_point(ckpt_root)  # newest checkpoint whose sha256s verify
        log_lines, torn = _read_log(out_dir / "log.jsonl")
        if resume_from is None:
            note = f"no checkpoint in {ckpt_root} yet: the run starts again from step 0"
        if torn:
            note = f"{note}; " if note else ""
            note += f"dropped the torn last line of {out_dir / 'log.jsonl'} ({torn} bytes)"
        if note and main:
            log.warning("%s: %s", out_dir, note)
    if main:
        config.save(out_dir)
    if config.backbone == "tiny" or config.backbone.startswith("tiny:"):
        # build the cached tiny backbone once, before seeding: building it reseeds torch
        from plume_lite.backbone import tiny_backbone_path

        with accelerator.main_process_first():
            tiny_backbone_path(int(config.backbone.split(":")[1]) if ":" in config.backbone else 0)
    set_seed(config.seed)
    model = build_model(config)
    pairs = load_pairs(config, data_dir)
    sampler = TaskBatchSampler(
        [p.task for p in pairs],
        config.batch_size,
        accelerator.num_processes,
        accelerator.process_index,
        config.seed,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    # not passed to prepare(): accelerate would step it once per process
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    step_module = TrainStep(
        model,
        config.mode,
        config.logit_scale,
        config.balance_weight,
        config.mask_duplicates,
        read_position=config.read_position,
        checkpoint_prefix=config.checkpoint_prefix,
        contrastive_weight=config.contrastive_weight,
    )
    step_module, optimizer = accelerator.prepare(step_module, optimizer)
    plume = accelerator.unwrap_model(step_module).model
    if sharded:  # FSDP2 replaced the parameters by sharded ones (the optimizer's too)
        params = [p for p in step_module.parameters() if p.requires_grad]

    curriculum = Curriculum(
        config.latent_steps, enabled=config.curriculum, ratios=STAGE_RATIOS[config.first_stage :]
    )
    start, prev_stage, resumed_from = 0, None, None
    if resume_from is not None and sharded:
        state = load_sharded_checkpoint(accelerator, resume_from, scheduler, accelerator.process_index)
    elif resume_from is not None:
        state = load_checkpoint(
            resume_from, plume, optimizer, scheduler, accelerator.process_index, verify=False
        )  # resume_point verified it just now
    if resume_from is not None:
        try:
            sampler.load_state_dict(state["sampler"])
            start, prev_stage, resumed_from = state["step"], state["stage_index"], str(resume_from)
        except (KeyError, TypeError) as e:
            raise CheckpointError(
                f"{resume_from / 'state.json'}: no sampler / step / stage ({type(e).__name__}: {one_line(e)})"
            ) from None
    if main:
        # the log is ours (check_out_dir): keep the records up to the resumed step
        _write_log(out_dir / "log.jsonl", log_lines, start)

    stop = min(config.max_steps, start + (config.max_steps_this_run or config.max_steps))
    bar = None
    if main and config.progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.max_steps, initial=start, desc=f"train ({config.mode})", unit="step")
    history, stages_seen, t0 = [], [], time.perf_counter()
    for step in range(start, stop):
        stage = curriculum.stage_at(step / config.max_steps) if config.mode == "latent" else FIXED_STAGE
        if prev_stage is not None and stage.index != prev_stage:
            reset_moments(optimizer)
        prev_stage = stage.index
        step_module.train()
        sums, stats, task = {}, {}, None
        for micro in range(config.grad_accum):
            batch = make_batch([pairs[i] for i in sampler.next_batch()], config.mode, stage)
            task = batch.task
            sync = micro == config.grad_accum - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(step_module):
                if config.grad_cache_chunk:  # chunked forward/backward of the same step
                    total, parts, stats = grad_cache_step(
                        step_module,
                        batch,
                        config.grad_cache_chunk,
                        backward=accelerator.backward,
                        no_sync=lambda: accelerator.no_sync(step_module),
                        scale=1.0 / config.grad_accum,
                    )
                else:
                    total, parts, stats = step_module(batch)
                    accelerator.backward(total / config.grad_accum)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() / config.grad_accum
        grad_norm = (
            accelerator.clip_grad_norm_(params, config.grad_clip) if config.grad_clip > 0 else torch.zeros(())
        )
        if sharded and hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor of the global norm
            grad_norm = grad_norm.full_tensor()
        values = _reduce(accelerator, {**sums, "grad_norm": torch.as_tensor(grad_norm).float()})
        # fp16's loss scaler overflows now and then: it skips that update by itself
        checked = {k: v for k, v in values.items() if k != "grad_norm" or config.precision != "fp16"}
        if not all(math.isfinite(v) for v in checked.values()):
            _diverged(out_dir, ckpt_root, step + 1, stage, values, main)
        lr = scheduler.get_last_lr()[0]  # the rate this update uses
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        record = {
            "step": step + 1,
            "stage": stage.index,
            "ratio": stage.ratio,
            "n_latent": stage.n_latent,
            "drop_answer": stage.drop_answer,
            "task": task,
            "epoch": sampler.epoch,
            "lr": lr,
            **{k: round(v, 6) for k, v in values.items()},
        }
        if stats:
            record["router_entropy"] = round(float(stats["router_entropy"]), 6)
            record["expert_load"] = [round(float(x), 4) for x in stats["expert_load"]]
        record["elapsed_s"] = round(time.perf_counter() - t0, 3)
        history.append(record)
        if not stages_seen or stages_seen[-1][1:] != (stage.index, stage.drop_answer):
            stages_seen.append((step + 1, stage.index, stage.drop_answer))
        if main and (step + 1) % config.log_every == 0:
            with open(out_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if sharded and ((step + 1) % config.save_every == 0 or step + 1 == stop):
            _save_sharded(accelerator, gather_object, ckpt_root, step + 1, scheduler, sampler, stage, config)
        elif (step + 1) % config.save_every == 0 or step + 1 == stop:
            _save(
                accelerator,
                gather_object,
                ckpt_root,
                step + 1,
                plume,
                optimizer,
                scheduler,
                sampler,
                stage,
                config,
            )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{values['total']:.3f}", stage=f"{stage.index}:{stage.n_latent}")
        if main and on_step is not None:
            on_step(record)
    if bar is not None:
        bar.close()

    finished = stop == config.max_steps
    if sharded and finished:
        _save_gathered(accelerator, step_module, config, out_dir / "model")
    elif main and finished:
        plume.save_pretrained(out_dir / "model")
    accelerator.wait_for_everyone()
    summary = _summary(
        config,
        history,
        stages_seen,
        start,
        stop,
        finished,
        resumed_from,
        time.perf_counter() - t0,
        accelerator.num_processes,
        out_dir,
        ckpt_root,
    )
    if note:
        summary["resume_note"] = note
    if main:
        write_json(out_dir / "summary.json", summary)
    return summary


def _reduce(accelerator, values: dict) -> dict:
    keys = sorted(values)
    stacked = torch.stack([values[k].reshape(()).to(accelerator.device) for k in keys])
    if accelerator.num_processes > 1:
        stacked = accelerator.reduce(stacked, reduction="mean")
    return dict(zip(keys, stacked.tolist()))


def _extras(sampler, stage, config) -> dict:
    """The JSON state a checkpoint keeps besides tensors: sampler position, stage, mode."""
    return {
        "sampler": sampler.state_dict(),
        "stage_index": stage.index,
        "stage": {"ratio": stage.ratio, "n_latent": stage.n_latent, "drop_answer": stage.drop_answer},
        "mode": config.mode,
    }


def _save(accelerator, gather_object, root, step, model, optimizer, scheduler, sampler, stage, config):
    rngs = gather_object([rng_state()])  # every process's generators, in rank order
    if accelerator.is_main_process:
        save_checkpoint(root, step, model, optimizer, scheduler, _extras(sampler, stage, config), rngs)
        prune_checkpoints(root, config.keep_checkpoints)
    accelerator.wait_for_everyone()


def _save_sharded(accelerator, gather_object, root, step, scheduler, sampler, stage, config):
    rngs = gather_object([rng_state()])
    save_sharded_checkpoint(accelerator, root, step, scheduler, _extras(sampler, stage, config), rngs)
    if accelerator.is_main_process:
        prune_checkpoints(root, config.keep_checkpoints)
    accelerator.wait_for_everyone()


def _save_gathered(accelerator, step_module, config: TrainConfig, path: Path) -> None:
    """PlumeModel.save_pretrained of the FSDP-sharded weights: every process sends its
    shards (accelerator.get_state_dict), the main process loads the full state into an
    unsharded copy of the model and saves that."""
    full = accelerator.get_state_dict(step_module)  # the whole state on the main process only
    if accelerator.is_main_process:
        copy = build_model(config)
        prefix = "model."  # TrainStep holds the PlumeModel as .model
        copy.load_state_dict({k.removeprefix(prefix): v for k, v in full.items()}, strict=True)
        copy.save_pretrained(path)
    accelerator.wait_for_everyone()


def _diverged(out_dir, ckpt_root, step, stage, values, main):
    last = latest_verified(ckpt_root)  # "good": its sha256s were checked now
    bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
    msg = (
        f"training diverged at step {step} (stage {stage.index}, {stage.n_latent} latent steps): "
        f"{bad}; stopped before that update. Last good checkpoint: "
        f"{last if last else 'none'} (lower lr and resume with --resume)"
    )
    if main:
        write_json(out_dir / "summary.json", {"finished": False, "stopped": msg, "step": step})
    raise TrainingDiverged(msg)


def _read_log(path: Path) -> tuple[list[tuple[int, str]], int]:
    """([(step, line)] of log.jsonl, bytes of a torn last line dropped (0 if none)).

    A kill during an append leaves a torn last line: it is dropped and everything before
    kept. A bad line anywhere else means the file is not the log this run wrote:
    CheckpointError naming the line."""
    if not path.exists():
        return [], 0
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, expected the run's log")
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    records, torn = [], 0
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
            step = record["step"] if isinstance(record, dict) else None
        except (UnicodeDecodeError, ValueError, KeyError):
            step = None
        if isinstance(step, int) and not isinstance(step, bool):
            records.append((step, raw.decode("utf-8")))
        elif number == len(lines):
            torn = len(raw)
        else:
            raise CheckpointError(
                f"{path}: line {number} of {len(lines)} is not a step record; the log is "
                "damaged (only a torn last line is repaired): move it away to resume"
            )
    return records, torn


def _write_log(path: Path, records: list[tuple[int, str]], step: int) -> None:
    """Keep the log records of steps up to `step` (later ones are redone), atomically."""
    if not path.exists() and not records:
        return
    atomic_write_text(path, "".join(line + "\n" for s, line in records if s <= step))


def _summary(
    config, history, stages_seen, start, stop, finished, resumed_from, wall, procs, out_dir, ckpt_root
):
    tail = history[-min(len(history), 20) :]
    final = (
        {
            k: round(sum(r[k] for r in tail) / len(tail), 5)
            for k in tail[0]
            if k in ("total", "ce_q", "ce_c", "nce_gen", "nce_disc", "balance")
        }
        if tail
        else {}
    )
    steps = stop - start
    pairs = steps * config.batch_size * config.grad_accum * procs
    last = latest_checkpoint(ckpt_root)
    return {
        "mode": config.mode,
        "finished": finished,
        "step": stop,
        "max_steps": config.max_steps,
        "resumed_from": resumed_from,
        "steps_this_run": steps,
        "wall_s": round(wall, 2),
        "pairs_per_s": round(pairs / wall, 2) if wall > 0 else None,
        "final_losses_last20": final,
        "stages": [{"from_step": s, "stage": i, "drop_answer": d} for s, i, d in stages_seen],
        "checkpoint": str(last) if last else None,
        "model": str(out_dir / "model") if finished else None,
        "log": str(out_dir / "log.jsonl"),
    }


# ----------------------------------------------------------------------------- CLI
