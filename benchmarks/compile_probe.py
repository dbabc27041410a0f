"""What `torch.compile` of the static engine's K steps + suffix buys on the CPU (issue 14,
item 3: compile as an opt-in only). Not a package feature: each (batch, prefix bucket)
shape compiles once, for minutes on this machine, which no encode call should pay
unasked.

    PLUME_THREADS=1 python benchmarks/compile_probe.py --data DIR [--checkpoint CKPT] [--out F.json]

Median process-CPU ms per encode call (15 calls after one warm-up) of direct and latent
(static engine) at batch 1 and 16, before and after `engine.run_steps` is compiled
(inductor, dynamic=False), with the compile time of each shape and the largest
difference of the compiled embeddings from the eager ones."""

from __future__ import annotations

import argparse
import json
import time

import torch

from plume_lite.data.mmeb import load_eval_tasks
from plume_lite.io import atomic_write_text
from plume_lite.model import PlumeModel
from plume_lite.runtime import configure_threads


def cpu_ms(fn, calls: int = 15) -> float:
    fn()
    times = []
    for _ in range(calls):
        c0 = time.process_time()
        fn()
        times.append(time.process_time() - c0)
    return sorted(times)[calls // 2] * 1e3


def measure(model, queries, batches) -> dict:
    rows = {}
    for b in batches:
        items = queries[:b]
        direct = cpu_ms(lambda items=items: model.encode(items, mode="direct", batch_size=len(items)))
        latent = cpu_ms(
            lambda items=items: model.encode(items, mode="latent", batch_size=len(items), engine="static")
        )
        rows[b] = {
            "direct_ms": round(direct, 1),
            "latent_ms": round(latent, 1),
            "ratio": round(latent / direct, 2),
        }
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a SynthMMEB folder")
    ap.add_argument("--task", default="img_qa_majority")
    ap.add_argument("--checkpoint", default="plume_lite/apps/checkpoints/tiny-latent")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    configure_threads()
    batches = [int(b) for b in args.batches.split(",")]
    model = PlumeModel.from_pretrained(args.checkpoint).eval()
    queries = load_eval_tasks(args.data, tasks=[args.task])[0].queries[: max(batches)]
    eager = measure(model, queries, batches)
    reference = {b: model.encode(queries[:b], mode="latent", batch_size=b, engine="static") for b in batches}
    engine = model._static_engine("static")
    engine.run_steps = torch.compile(engine.run_steps, dynamic=False)
    compile_s, diff = {}, {}
    for b in batches:
        w0 = time.perf_counter()
        out = model.encode(queries[:b], mode="latent", batch_size=b, engine="static")
        compile_s[b] = round(time.perf_counter() - w0, 1)
        diff[b] = float((out - reference[b]).abs().max())
    compiled = measure(model, queries, batches)
    doc = {
        "checkpoint": args.checkpoint,
        "task": args.task,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "eager": eager,
        "compiled": compiled,
        "first_call_s": compile_s,
        "max_abs_diff": diff,
    }
    print(json.dumps(doc, indent=1))
    if args.out:
        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
