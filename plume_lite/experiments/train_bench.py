"""Training-step speed: batched rollout vs a one-sample-at-a-time loop (the authors'
way), and latent K vs direct. Times whole optimizer steps (query + candidate
forward, backward, AdamW) on real training pairs.

The variants run interleaved, one step each per round, on the same batches, so a
machine shared with other jobs slows them alike; wall time and process CPU time are
both reported (CPU time is the fairer one under contention, with --threads 1).

    python -m plume_lite.experiments.train_bench --data DATA [--batch 16] [--steps 6] [--k 8] [--threads 1]
        [--variants latent,latent_loop,direct,latent_fused,latent_ckpt]

`--adapter 128,1536` instead times the MoE adapter alone (forward + backward, train
mode): the per-expert loop against `fused=True`, interleaved, at those widths.

`--shape 2b --device cuda` times the gpu-2b recipe (LoRA r=16 on the language model,
vision frozen, bf16) on random weights of Qwen2-VL-2B-Instruct shapes, nothing
downloaded, with every image and frame sized to 448x448 as the 2B encode benchmark
does; `--batches 16,32,64` times each batch size in turn and stops at the first that
runs out of GPU memory; rows then carry the peak GPU memory; `--out FILE` writes
every row as JSON (atomically). `--media-cache DIR` reads decoded media through the disk
layer of media_cache.py; time one variant per process with it (variants in one process
share the memory layer, so the first one decodes for all).

`--memory VARIANT` runs one step of that variant (after a 2-pair warm-up step) and
prints the growth of the process's peak RSS during it: run it once per variant, each in
its own process (the peak never goes down). CPU only; a rough measure (the allocator
keeps pages), but the same for both.

Variant names: a mode, then optional tags: `_loop` one sample at a time, `_fused` the
fused MoE experts (TransitionAdapter.fused), `_ckpt` the prefix pass checkpointed
(TrainConfig.checkpoint_prefix).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time
from types import SimpleNamespace

import torch

from plume_lite.curriculum import Curriculum
from plume_lite.runtime import configure_threads
from plume_lite.train.batches import TaskBatchSampler, make_batch
from plume_lite.train.losses import item_ids, plume_loss
from plume_lite.train.step import TrainStep


def _mean(outs, key):
    """Mean of one scalar training output over per-sample outputs (None stays None)."""
    if getattr(outs[0], key) is None:
        return None
    return torch.stack([torch.as_tensor(getattr(o, key)) for o in outs]).mean()


def per_sample_loss(model, batch, mode):
    """The training step's objective (losses.plume_loss), but every sample rolls out
    alone; embeddings are stacked and per-sample CE and balance terms averaged."""
    sides = []
    for items, suffix in ((batch.queries, batch.query_suffix), (batch.positives, batch.positive_suffix)):
        outs = [
            model.forward_train([item], None if suffix is None else [suffix[i]], batch.n_latent, mode)
            for i, item in enumerate(items)
        ]
        sides.append(
            SimpleNamespace(
                disc_emb=torch.cat([o.disc_emb for o in outs]),
                gen_emb=None if outs[0].gen_emb is None else torch.cat([o.gen_emb for o in outs]),
                ce_loss=_mean(outs, "ce_loss"),
                balance_loss=_mean(outs, "balance_loss"),
            )
        )
    ids = dict(q_ids=item_ids(batch.queries), c_ids=item_ids(batch.positives))
    return plume_loss(mode, *sides, **ids)[0]


class StepTimer:
    """One model + optimizer; `step(pairs)` runs and times one training step."""

    def __init__(
        self, model, mode: str, n_latent: int, per_sample: bool = False, checkpoint_prefix: bool = False
    ):
        self.model, self.mode, self.per_sample = model, mode, per_sample
        self.stage = Curriculum(n_latent).stage_at(0.99) if mode == "latent" else None  # all latent
        self.n_latent = n_latent if mode == "latent" else 0
        self.checkpoint_prefix = checkpoint_prefix
        self.step_module = TrainStep(model, mode, checkpoint_prefix=checkpoint_prefix)
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        self.wall, self.cpu = [], []
        model.train()

    def step(self, pairs, record: bool = True) -> None:
        batch = make_batch(pairs, self.mode, self.stage)
        w0, c0 = time.perf_counter(), time.process_time()
        loss = (
            per_sample_loss(self.model, batch, self.mode) if self.per_sample else self.step_module(batch)[0]
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.model.device.type == "cuda":  # the step's kernels, not just their launches
            torch.cuda.synchronize(self.model.device)
        if record:
            self.wall.append(time.perf_counter() - w0)
            self.cpu.append(time.process_time() - c0)

    def result(self, batch_size: int) -> dict:
        wall, cpu = sum(self.wall) / len(self.wall), sum(self.cpu) / len(self.cpu)
        return {
            "mode": self.mode,
            "n_latent": self.n_latent,
            "per_sample": self.per_sample,
            "fused_experts": bool(getattr(self.model.adapter, "fused", False)),
            "checkpoint_prefix": self.checkpoint_prefix,
            "batch": batch_size,
            "steps": len(self.wall),
            "s_per_step": round(wall, 4),
            "cpu_s_per_step": round(cpu, 4),
            "pairs_per_s": round(batch_size / wall, 2),
            "pairs_per_cpu_s": round(batch_size / cpu, 2),
            **gpu_memory(self.model.device),
        }


def gpu_memory(device) -> dict:
    """Peak GPU memory since the last reset, in GiB ({} on a CPU)."""
    if device.type != "cuda":
        return {}
    return {"peak_gpu_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}


def build_bench_model(cfg, shape: str, device: str):
    """The model one timer trains: the profile's (tiny) or random weights of Qwen2-VL-2B
    shapes under `cfg`'s LoRA / frozen-vision / precision settings (2b)."""
    from plume_lite.train.loop import build_model, prepare_for_training

    if shape != "2b":
        return build_model(cfg).to(device)
    from plume_lite.experiments.bench import random_2b_model
    from plume_lite.pixel_budget import set_pixel_budget

    dtype = torch.bfloat16 if (cfg.precision == "bf16" and cfg.lora) else torch.float32  # as build_model
    model = random_2b_model(dtype, device, **cfg.model_kwargs())
    side = 448 * 448  # the 2B encode benchmark's image size; SynthMMEB's 64 px would be 4 tokens
    set_pixel_budget(model.processor, min_pixels=side, max_pixels=side)
    return prepare_for_training(model, cfg).to(device)


def batch_sweep(make_timer, pairs, batches, steps: int, seed: int = 0) -> list[dict]:
    """One fresh timer per batch size, smallest first; the first size that runs out of GPU
    memory gets an `out_of_memory` row and ends the sweep."""
    rows = []
    for b in batches:
        timer = make_timer()
        if timer.model.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(timer.model.device)
        try:
            rows.append(compare({"t": timer}, pairs, b, steps, seed=seed)["t"])
        except torch.OutOfMemoryError:
            rows.append({"mode": timer.mode, "n_latent": timer.n_latent, "batch": b, "out_of_memory": True})
            break
        finally:
            del timer
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return rows


def compare(
    timers: dict, pairs, batch_size: int = 16, steps: int = 6, warmup: int = 1, seed: int = 0
) -> dict:
    """Interleaved timing of every StepTimer on the same sequence of batches."""
    sampler = TaskBatchSampler([p.task for p in pairs], batch_size, seed=seed)
    for i in range(warmup + steps):
        chunk = [pairs[j] for j in sampler.next_batch()]
        for timer in timers.values():
            timer.step(chunk, record=i >= warmup)
    return {name: t.result(batch_size) for name, t in timers.items()}


def adapter_compare(dim: int, batch: int, reps: int, seed: int = 0) -> dict:
    """Median process-CPU time of one adapter forward + backward (train mode, MoE):
    the per-expert loop against fused=True on the same weights, interleaved."""
    from plume_lite.adapter import TransitionAdapter

    torch.manual_seed(seed)
    loop = TransitionAdapter(dim, "moe").train()
    fused = copy.deepcopy(loop)
    fused.fused = True
    z, anchor = torch.randn(batch, dim), torch.randn(batch, dim)
    times = {"loop": [], "fused": []}
    for i in range(reps + 2):  # two warm-up rounds
        for name, adapter in (("loop", loop), ("fused", fused)):
            adapter.zero_grad(set_to_none=True)
            x = z.clone().requires_grad_()
            c0 = time.process_time()
            adapter(x, 1, anchor).x.sum().backward()
            if i >= 2:
                times[name].append(time.process_time() - c0)
    med = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in times.items()}
    return {
        "dim": dim,
        "batch": batch,
        "reps": reps,
        "loop_cpu_ms": round(med["loop"], 3),
        "fused_cpu_ms": round(med["fused"], 3),
        "loop_over_fused": round(med["loop"] / med["fused"], 2),
    }


def peak_rss_growth(timer: "StepTimer", pairs: list) -> dict:
    """Peak-RSS growth (MiB) of one training step on `pairs`, after a 2-pair warm-up."""
    timer.step(pairs[:2], record=False)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    timer.step(pairs, record=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_growth_mib": round((peak - base) / 1024, 1), "baseline_mib": round(base / 1024)}


def main(argv=None) -> None:
    from plume_lite.train.config import resolve_config
    from plume_lite.train.loop import load_pairs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="training data folder (not needed with --adapter)")
    ap.add_argument(
        "--profile", default=None, help="training profile (default: tiny; gpu-2b with --shape 2b)"
    )
    ap.add_argument("--shape", choices=("tiny", "2b"), default="tiny", help="2b: random Qwen2-VL-2B weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", default=None, help="comma list of batch sizes to sweep, smallest first")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--adapter", default=None, help="comma list of widths: time the adapter alone")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions per width (--adapter)")
    ap.add_argument("--memory", default=None, metavar="VARIANT", help="peak-RSS growth of one step")
    ap.add_argument("--out", default=None, help="JSON file for the rows (written atomically)")
    ap.add_argument(
        "--media-cache",
        default=None,
        metavar="DIR",
        help="share decoded media through DIR (media_cache.py), as reproduce's runs do",
    )
    ap.add_argument(
        "--variants",
        default="latent,latent_loop,direct",
        help="comma list of latent, latent_loop, direct, explicit, latent_fused, latent_ckpt",
    )
    args = ap.parse_args(argv)
    if args.threads:
        configure_threads(args.threads)
    if args.adapter:
        for dim in (int(d) for d in args.adapter.split(",")):
            print(json.dumps(adapter_compare(dim, args.batch, args.reps)), flush=True)
        return
    if not args.data:
        ap.error("--data is required (except with --adapter)")
    if args.media_cache:
        from plume_lite.media_cache import DECODED

        DECODED.use_disk(args.media_cache)
    profile = args.profile or ("gpu-2b" if args.shape == "2b" else "tiny")
    cfg = resolve_config(profile, mode="latent", overrides=[f"latent_steps={args.k}", *args.overrides])
    pairs = load_pairs(cfg, args.data)

    def make_timer(name):
        mode, *tags = name.split("_")
        unknown = set(tags) - {"loop", "fused", "ckpt"}
        if unknown:
            ap.error(f"variant {name!r}: unknown tag(s) {', '.join(sorted(unknown))} (loop, fused, ckpt)")
        torch.manual_seed(cfg.seed)
        model = build_bench_model(cfg, args.shape, args.device)
        model.adapter.fused = "fused" in tags
        return StepTimer(model, mode, args.k, "loop" in tags, checkpoint_prefix="ckpt" in tags)

    if args.memory:
        timer = make_timer(args.memory)
        sampler = TaskBatchSampler([p.task for p in pairs], args.batch, seed=cfg.seed)
        chunk = [pairs[j] for j in sampler.next_batch()]
        row = {"variant": args.memory, "task": chunk[0].task, "batch": args.batch, "k": args.k}
        print(json.dumps({**row, **peak_rss_growth(timer, chunk)}))
        return
    names = args.variants.split(",")
    setting = {
        "shape": args.shape,
        "profile": profile,
        "device": args.device,
        "k": args.k,
        "steps": args.steps,
    }
    if args.batches:
        try:
            batches = [int(b) for b in args.batches.split(",")]
        except ValueError:
            ap.error(f"--batches {args.batches!r}: expected comma-separated integers, e.g. 32,64")
        rows = {
            f"{n}@{b}": r
            for n in names
            for b, r in zip(batches, sweep_rows(make_timer, n, pairs, batches, args))
        }
        ratios = {}
    else:
        rows = compare({n: make_timer(n) for n in names}, pairs, args.batch, args.steps)
        ratios = step_ratios(rows)
    for row in rows.values():
        print(json.dumps(row), flush=True)
    print(json.dumps(ratios))
    if args.out:
        from plume_lite.io import atomic_write_text

        doc = {"setting": setting, "rows": rows, "ratios": ratios, "torch": torch.__version__}
        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")


def sweep_rows(make_timer, name, pairs, batches, args) -> list[dict]:
    return [{"variant": name, **r} for r in batch_sweep(lambda: make_timer(name), pairs, batches, args.steps)]


def step_ratios(rows: dict) -> dict:
    ratios = {}
    for key in ("s_per_step", "cpu_s_per_step"):
        if "latent" in rows and "latent_loop" in rows:
            ratios[f"batched_vs_loop_speedup[{key}]"] = round(
                rows["latent_loop"][key] / rows["latent"][key], 2
            )
        for other in ("latent_fused", "latent_ckpt"):
            if "latent" in rows and other in rows:
                ratios[f"{other}_vs_latent_cost[{key}]"] = round(rows[other][key] / rows["latent"][key], 2)
        if "latent" in rows and "direct" in rows:
            ratios[f"latent_vs_direct_cost[{key}]"] = round(rows["latent"][key] / rows["direct"][key], 2)
    return ratios


if __name__ == "__main__":
    main()
