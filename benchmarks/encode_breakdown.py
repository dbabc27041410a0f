"""Where an encode call spends its time (issue 14, item 3): processor, prefix forward
(vision tower + decoder), latent-step decoder calls and adapter calls, per engine.

    PLUME_THREADS=1 python benchmarks/encode_breakdown.py --batch-sizes 1,16 --calls 10 --out FILE

Process CPU time (fair on a shared CPU), mean per encode call, on the tiny backbone with
the bench's image+text queries. Parts are timed by wrapping the model's pieces (forward
hooks on the VLM, wrappers around the batcher, the adapter, the eager loop's
rollout.cached_step and the static engine's decoder call), so "other" is what the call
spends outside them (positions, masks, normalisation, the loop itself).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch

from plume_lite import rollout
from plume_lite.experiments.bench import bench_queries
from plume_lite.io import atomic_write_text
from plume_lite.model import PlumeModel
from plume_lite.runtime import configure_threads, thread_count


class PartTimer:
    """Accumulates process CPU time per named part."""

    def __init__(self):
        self.seconds = defaultdict(float)

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.process_time() - start

        return timed

    def hook_module(self, name, module):
        started = {}
        module.register_forward_pre_hook(lambda m, a: started.__setitem__("t", time.process_time()))
        module.register_forward_hook(
            lambda m, a, o: self.seconds.__setitem__(
                name, self.seconds[name] + time.process_time() - started["t"]
            )
        )


def instrument(model) -> PartTimer:
    timer = PartTimer()
    batcher = model.batcher
    model.batcher = type("TimedBatcher", (), {"__call__": staticmethod(timer.wrap("processor", batcher))})()
    model.batcher.suffix_ids = batcher.suffix_ids
    timer.hook_module("prefix forward", model.vlm)
    model.adapter.forward = timer.wrap("adapter", model.adapter.forward)
    # the K steps and the suffix: rollout.cached_step in the eager loop (looked up by
    # name at call time, so patching the module attribute reaches it), the engine's
    # direct decoder-layer call in the static one
    rollout.cached_step = timer.wrap("step+suffix decoder calls", rollout.cached_step)
    engine = model._static_engine("static")
    engine._decoder = timer.wrap("step+suffix decoder calls", engine._decoder)
    return timer


def breakdown(model, timer, batch_size: int, calls: int) -> list[dict]:
    items = bench_queries(batch_size, 64)
    rows = []
    for mode, engine in (("direct", "eager"), ("latent", "eager"), ("latent", "static")):
        model.encode(items, mode=mode, engine=engine, batch_size=batch_size)  # warm-up
        timer.seconds.clear()
        start = time.process_time()
        for _ in range(calls):
            model.encode(items, mode=mode, engine=engine, batch_size=batch_size)
        total = (time.process_time() - start) / calls
        parts = {k: 1000 * v / calls for k, v in timer.seconds.items()}
        parts["other"] = 1000 * total - sum(parts.values())
        rows.append(
            {"batch_size": batch_size, "mode": mode, "engine": engine, "cpu_ms": 1000 * total, **parts}
        )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    configure_threads(thread_count())
    torch.manual_seed(0)
    model = PlumeModel.from_backbone("tiny").eval()
    timer = instrument(model)
    rows = [r for b in args.batch_sizes.split(",") for r in breakdown(model, timer, int(b), args.calls)]
    for r in rows:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r.items() if k not in ("batch_size", "mode", "engine"))
        print(f"b={r['batch_size']} {r['mode']}/{r['engine']}: {parts} (CPU ms)")
    if args.out:
        atomic_write_text(args.out, json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
