"""`plume-lite train`: PLUME (latent) and its two baselines (explicit, direct).

    from plume_lite.train.loop import train
    from plume_lite.train.config import resolve_config
    summary = train(resolve_config("tiny", mode="latent"), "data/synth", "runs/latent")

accelerate runs the loop on CPU, one GPU, or several processes (`accelerate launch`
with DDP, FSDP or DeepSpeed). Output folder:

    train_config.json/.yaml   the resolved config      log.jsonl     one line per step
    checkpoints/step_*/       see checkpoint.py        summary.json  written at the end
    model/                    PlumeModel.save_pretrained of the final weights
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import torch

from plume_lite.train.checkpoint import (latest_checkpoint, list_checkpoints, load_checkpoint,
                                   prune_checkpoints, rng_state, save_checkpoint, write_json)
from plume_lite.curriculum import Curriculum, Stage
from plume_lite.errors import ConfigError, PlumeError
from plume_lite.runtime import using_threads
from plume_lite.train.config import RESUME_FREE, TrainConfig
from plume_lite.train.batches import TaskBatchSampler, make_batch
from plume_lite.train.step import TrainStep

FIXED_STAGE = Stage(index=0, ratio=0.0, n_latent=0, drop_answer=False, m=0)   # explicit / direct


class TrainingDiverged(PlumeError):
    """The loss or gradient norm became NaN/inf; the run stopped before that update."""


def build_model(config: TrainConfig):
    """The PlumeModel to train: backbone + adapter, LoRA or full, vision frozen or not."""
    from plume_lite.model import PlumeModel
    # bf16 base weights only where they stay frozen (LoRA); full fine-tuning keeps fp32
    # master weights and lets accelerate autocast.
    dtype = torch.bfloat16 if (config.precision == "bf16" and config.lora) else None
    model = PlumeModel.from_backbone(config.backbone, dtype=dtype, **config.model_kwargs())
    if config.lora:
        model.enable_lora(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                          targets=tuple(config.lora_targets))
    if config.freeze_vision:
        model.freeze_vision()
    return model


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
    inner = getattr(optimizer, "optimizer", optimizer)     # accelerate's wrapper
    inner.state.clear()


def check_out_dir(config: TrainConfig, out_dir: Path, resume: bool) -> TrainConfig:
    saved = out_dir / "train_config.json"
    if not resume:
        if list_checkpoints(out_dir / "checkpoints") or (out_dir / "model").exists():
            raise ConfigError(f"{out_dir} already holds a training run; pass --resume to continue "
                              "it or choose another --out")
        return config
    if not saved.exists():
        return config
    old = TrainConfig.load(saved).to_dict()
    new = config.to_dict()
    diff = [k for k in old if k not in RESUME_FREE and old[k] != new[k]]
    if diff:
        raise ConfigError(f"--resume with settings that differ from the saved run: "
                          + ", ".join(f"{k}={new[k]!r} (saved {old[k]!r})" for k in diff))
    return config


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
            the same settings as the saved `train_config.json` except the logging and
            saving fields (`RESUME_FREE`). Without a checkpoint it starts from step 0.
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
        saved model path, or None if not finished) and "log".

    Raises:
        ConfigError: `out_dir` already holds a run and `resume` is False; `resume` with
            settings that differ from the saved run; no training pairs in `data_dir`; no
            task with a full global batch; accelerate set up another number of processes
            than were launched.
        DataError: `data_dir` is missing or malformed, or names unknown tasks.
        CheckpointError: the checkpoint being resumed does not match this model.
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
    with using_threads(config.threads):        # a process-wide setting: restored afterwards
        return _train(config, data_dir, out_dir, resume, on_step)


def _train(config: TrainConfig, data_dir, out_dir, resume: bool, on_step) -> dict:
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import gather_object, set_seed

    out_dir, ckpt_root = Path(out_dir), Path(out_dir) / "checkpoints"
    config = check_out_dir(config, out_dir, resume)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    # without cpu=True, accelerate on a machine without a GPU ignores the launcher and
    # every process would train alone (into the same folder)
    cpu = config.cpu or (launched > 1 and not torch.cuda.is_available())
    if launched == 1:
        # accelerate keeps one global state per process and refuses a second run with
        # other settings (e.g. bf16 after fp32 in the same notebook): start it afresh
        from accelerate.state import AcceleratorState
        AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(cpu=cpu, mixed_precision=config.precision, kwargs_handlers=[
        DistributedDataParallelKwargs(find_unused_parameters=True)])  # direct mode skips the adapter
    if accelerator.num_processes != launched:
        raise ConfigError(f"launched {launched} processes but accelerate set up {accelerator.num_processes}")
    main = accelerator.is_main_process
    if main:
        config.save(out_dir)
    if config.backbone.startswith("tiny"):
        # build the cached tiny backbone once, before seeding: building it reseeds torch
        from plume_lite.backbone import tiny_backbone_path
        with accelerator.main_process_first():
            tiny_backbone_path(int(config.backbone.split(":")[1]) if ":" in config.backbone else 0)
    set_seed(config.seed)
    model = build_model(config)
    pairs = load_pairs(config, data_dir)
    sampler = TaskBatchSampler([p.task for p in pairs], config.batch_size, accelerator.num_processes,
                               accelerator.process_index, config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    # not passed to prepare(): accelerate would step it once per process
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    step_module = TrainStep(model, config.mode, config.logit_scale, config.balance_weight,
                            config.mask_duplicates)
    step_module, optimizer = accelerator.prepare(step_module, optimizer)
    plume = accelerator.unwrap_model(step_module).model

    curriculum = Curriculum(config.latent_steps, enabled=config.curriculum)
    start, prev_stage, resumed_from = 0, None, None
    last = latest_checkpoint(ckpt_root) if resume else None
    if last is not None:
        state = load_checkpoint(last, plume, optimizer, scheduler, accelerator.process_index)
        sampler.load_state_dict(state["sampler"])
        start, prev_stage, resumed_from = state["step"], state["stage_index"], str(last)
        if main:
            _truncate_log(out_dir / "log.jsonl", start)
    elif main:
        (out_dir / "log.jsonl").unlink(missing_ok=True)

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
                total, parts, stats = step_module(batch)
                accelerator.backward(total / config.grad_accum)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() / config.grad_accum
        grad_norm = accelerator.clip_grad_norm_(params, config.grad_clip) if config.grad_clip > 0 \
            else torch.zeros(())
        values = _reduce(accelerator, {**sums, "grad_norm": torch.as_tensor(grad_norm).float()})
        # fp16's loss scaler overflows now and then: it skips that update by itself
        checked = {k: v for k, v in values.items() if k != "grad_norm" or config.precision != "fp16"}
        if not all(math.isfinite(v) for v in checked.values()):
            _diverged(out_dir, ckpt_root, step + 1, stage, values, main)
        lr = scheduler.get_last_lr()[0]            # the rate this update uses
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        record = {"step": step + 1, "stage": stage.index, "ratio": stage.ratio, "n_latent": stage.n_latent,
                  "drop_answer": stage.drop_answer, "task": task, "epoch": sampler.epoch,
                  "lr": lr, **{k: round(v, 6) for k, v in values.items()}}
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
        if (step + 1) % config.save_every == 0 or step + 1 == stop:
            _save(accelerator, gather_object, ckpt_root, step + 1, plume, optimizer, scheduler,
                  sampler, stage, config)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{values['total']:.3f}", stage=f"{stage.index}:{stage.n_latent}")
        if main and on_step is not None:
            on_step(record)
    if bar is not None:
        bar.close()

    finished = stop == config.max_steps
    if main and finished:
        plume.save_pretrained(out_dir / "model")
    accelerator.wait_for_everyone()
    summary = _summary(config, history, stages_seen, start, stop, finished, resumed_from,
                       time.perf_counter() - t0, accelerator.num_processes, out_dir, ckpt_root)
    if main:
        write_json(out_dir / "summary.json", summary)
    return summary


def _reduce(accelerator, values: dict) -> dict:
    keys = sorted(values)
    stacked = torch.stack([values[k].reshape(()).to(accelerator.device) for k in keys])
    if accelerator.num_processes > 1:
        stacked = accelerator.reduce(stacked, reduction="mean")
    return dict(zip(keys, stacked.tolist()))


def _save(accelerator, gather_object, root, step, model, optimizer, scheduler, sampler, stage, config):
    rngs = gather_object([rng_state()])          # every process's generators, in rank order
    if accelerator.is_main_process:
        save_checkpoint(root, step, model, optimizer, scheduler,
                        {"sampler": sampler.state_dict(), "stage_index": stage.index,
                         "stage": {"ratio": stage.ratio, "n_latent": stage.n_latent,
                                   "drop_answer": stage.drop_answer},
                         "mode": config.mode}, rngs)
        prune_checkpoints(root, config.keep_checkpoints)
    accelerator.wait_for_everyone()


def _diverged(out_dir, ckpt_root, step, stage, values, main):
    last = latest_checkpoint(ckpt_root)
    bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
    msg = (f"training diverged at step {step} (stage {stage.index}, {stage.n_latent} latent steps): "
           f"{bad}; stopped before that update. Last good checkpoint: "
           f"{last if last else 'none'} (lower lr and resume with --resume)")
    if main:
        write_json(out_dir / "summary.json", {"finished": False, "stopped": msg, "step": step})
    raise TrainingDiverged(msg)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines of steps after the checkpoint being resumed (they are redone)."""
    if not path.exists():
        return
    from plume_lite.io import atomic_write_text
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _summary(config, history, stages_seen, start, stop, finished, resumed_from, wall, procs, out_dir, ckpt_root):
    tail = history[-min(len(history), 20):]
    final = {k: round(sum(r[k] for r in tail) / len(tail), 5) for k in tail[0]
             if k in ("total", "ce_q", "ce_c", "nce_gen", "nce_disc", "balance")} if tail else {}
    steps = stop - start
    pairs = steps * config.batch_size * config.grad_accum * procs
    last = latest_checkpoint(ckpt_root)
    return {"mode": config.mode, "finished": finished, "step": stop, "max_steps": config.max_steps,
            "resumed_from": resumed_from, "steps_this_run": steps, "wall_s": round(wall, 2),
            "pairs_per_s": round(pairs / wall, 2) if wall > 0 else None,
            "final_losses_last20": final,
            "stages": [{"from_step": s, "stage": i, "drop_answer": d} for s, i, d in stages_seen],
            "checkpoint": str(last) if last else None,
            "model": str(out_dir / "model") if finished else None, "log": str(out_dir / "log.jsonl")}


# ----------------------------------------------------------------------------- CLI
def add_cli(subparsers) -> None:
    from plume_lite.config import MODES
    from plume_lite.train.config import PROFILES
    p = subparsers.add_parser("train", help="train PLUME (latent) or a baseline (explicit, direct)",
                              description="Train on a data folder; key=value overrides any TrainConfig field.")
    p.add_argument("--data", required=True, help="training data folder (e.g. from `plume-lite synth`)")
    p.add_argument("--mode", choices=MODES, default=None, help="default: latent (or the resumed run's)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="tiny")
    p.add_argument("--out", required=True, help="run folder (config, log, checkpoints, model)")
    p.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML/JSON config file")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    from plume_lite.train.config import parse_overrides, read_config_file, resolve_config
    saved = Path(args.out) / "train_config.json"
    if args.resume and saved.exists():
        # continue the saved run; only what is given on this command line changes
        config = TrainConfig.load(saved)
        changes = {}
        for path in args.config:
            changes.update(read_config_file(path))
        changes.update(parse_overrides(args.overrides))
        config = config.replace(**changes)
    else:
        config = resolve_config(args.profile, mode=args.mode or "latent", files=args.config,
                                overrides=args.overrides)
    if args.mode is not None and config.mode != args.mode:
        raise ConfigError(f"--mode {args.mode} but the run in {args.out} trains mode {config.mode}")
    summary = train(config, args.data, args.out, resume=args.resume)
    if summary.get("finished"):
        print(f"trained {summary['mode']} for {summary['step']} steps in {summary['wall_s']} s "
              f"({summary['pairs_per_s']} pairs/s); model: {summary['model']}")
    else:
        print(f"stopped at step {summary['step']} of {summary['max_steps']}; "
              f"continue with --resume (checkpoint {summary['checkpoint']})")
    return 0
