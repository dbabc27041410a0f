"""Training-step speed: batched rollout vs a one-sample-at-a-time loop (the authors'
way), and latent K vs direct. Times whole optimizer steps (query + candidate
forward, backward, AdamW) on real training pairs.

    python -m plume_lite.train_bench --data DATA [--batch 16] [--steps 6] [--k 8]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from plume_lite.curriculum import Curriculum
from plume_lite.losses import info_nce
from plume_lite.train_data import TaskBatchSampler, make_batch
from plume_lite.train_step import TrainStep


def _per_sample_loss(model, batch, mode):
    """Same objective, but every sample rolls out alone, then the embeddings are stacked."""
    outs = {"q": [], "c": []}
    for side, items, suffix in (("q", batch.queries, batch.query_suffix),
                                ("c", batch.positives, batch.positive_suffix)):
        for i, item in enumerate(items):
            outs[side].append(model.forward_train([item], None if suffix is None else [suffix[i]],
                                                  batch.n_latent, mode))
    total = info_nce(torch.cat([o.disc_emb for o in outs["q"]]), torch.cat([o.disc_emb for o in outs["c"]]))
    if mode != "direct":
        total = total + info_nce(torch.cat([o.gen_emb for o in outs["q"]]),
                                 torch.cat([o.gen_emb for o in outs["c"]]))
        total = total + sum(o.ce_loss for side in outs.values() for o in side) / len(batch.queries)
        total = total + 0.1 * sum(o.balance_loss for side in outs.values() for o in side) / len(batch.queries)
    return total


def time_steps(model, pairs, mode: str, n_latent: int, batch_size: int = 16, steps: int = 6,
               warmup: int = 1, per_sample: bool = False, seed: int = 0) -> dict:
    """Mean seconds per optimizer step and training pairs/s over `steps` timed steps."""
    torch.manual_seed(seed)
    sampler = TaskBatchSampler([p.task for p in pairs], batch_size, seed=seed)
    stage = Curriculum(n_latent).stage_at(0.99)         # all latent, inference-format suffix
    step_module = TrainStep(model, mode)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    times = []
    for i in range(warmup + steps):
        batch = make_batch([pairs[j] for j in sampler.next_batch()], mode,
                           stage if mode == "latent" else None)
        t0 = time.perf_counter()
        loss = _per_sample_loss(model, batch, mode) if per_sample else step_module(batch)[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    s = sum(times) / len(times)
    return {"mode": mode, "n_latent": n_latent if mode == "latent" else 0, "per_sample": per_sample,
            "batch": batch_size, "s_per_step": round(s, 4), "pairs_per_s": round(batch_size / s, 2)}


def main(argv=None) -> None:
    from plume_lite.train import build_model, load_pairs
    from plume_lite.train_config import resolve_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--k", type=int, default=8)
    args = ap.parse_args(argv)
    cfg = resolve_config(args.profile, mode="latent", overrides=[f"latent_steps={args.k}"])
    pairs = load_pairs(cfg, args.data)
    rows = []
    for mode, per_sample in (("latent", False), ("latent", True), ("direct", False), ("explicit", False)):
        torch.manual_seed(0)
        model = build_model(cfg)
        rows.append(time_steps(model, pairs, mode, args.k, args.batch, args.steps, per_sample=per_sample))
        print(json.dumps(rows[-1]), flush=True)
    batched, looped, direct = rows[0], rows[1], rows[2]
    print(json.dumps({"batched_vs_loop_speedup": round(looped["s_per_step"] / batched["s_per_step"], 2),
                      "latent_vs_direct_cost": round(batched["s_per_step"] / direct["s_per_step"], 2)}))


if __name__ == "__main__":
    main()
