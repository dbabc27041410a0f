"""`plume-lite bench`: latency and throughput of the three encode modes.

    plume-lite bench --backbone tiny --batch-sizes 1,16 --steps 8 --out bench.json
    plume-lite bench --random-2b --device cuda --dtype bfloat16 --image-size 448

Each (mode, batch size) is timed over `--repeats` calls after a warm-up call, on
image+text queries (the paper's setting). ms/query = call time / batch size.
"""

from __future__ import annotations

import statistics
import time

import torch
from PIL import Image, ImageDraw

from plume_lite.runtime import resolve_device


def bench_queries(n: int, image_size: int) -> list[dict]:
    """Distinct image+text queries (a coloured disc on a grey canvas)."""
    items = []
    for i in range(n):
        img = Image.new("RGB", (image_size, image_size), (128, 128, 128))
        r = image_size // 4
        ImageDraw.Draw(img).ellipse([r, r, 3 * r, 3 * r], fill=((37 * i) % 256, (91 * i) % 256, 200))
        items.append({"image": img, "text": f"What is shown in picture {i}?"})
    return items


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(model, mode: str, batch_size: int, steps: int, repeats: int, image_size: int) -> dict:
    items = bench_queries(batch_size, image_size)
    _, traces = model.encode(items, mode=mode, steps=steps, batch_size=batch_size, return_trace=True)
    times = []
    for _ in range(repeats):
        _sync(model.device)
        start = time.perf_counter()
        model.encode(items, mode=mode, steps=steps, batch_size=batch_size)
        _sync(model.device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    row = {
        "mode": mode,
        "batch_size": batch_size,
        "steps": steps if mode == "latent" else 0,
        "ms_per_query": 1000 * seconds / batch_size,
        "queries_per_s": batch_size / seconds,
        "ms_per_call": 1000 * seconds,
        "repeats": repeats,
    }
    if mode == "explicit":
        row["generated_tokens"] = statistics.mean(t["generated_tokens"] for t in traces)
    return row


def run_bench(
    model,
    modes=("direct", "latent", "explicit"),
    batch_sizes=(1, 16),
    steps: int = 8,
    repeats: int = 3,
    image_size: int = 64,
) -> dict:
    rows = [time_mode(model, mode, b, steps, repeats, image_size) for b in batch_sizes for mode in modes]
    by = {(r["mode"], r["batch_size"]): r["ms_per_query"] for r in rows}
    ratios = {}
    for b in batch_sizes:
        if ("latent", b) in by and ("direct", b) in by:
            ratios[f"latent/direct@{b}"] = by[("latent", b)] / by[("direct", b)]
        if ("explicit", b) in by and ("latent", b) in by:
            ratios[f"explicit/latent@{b}"] = by[("explicit", b)] / by[("latent", b)]
    return {
        "device": str(model.device),
        "dtype": str(next(model.parameters()).dtype),
        "torch_threads": torch.get_num_threads(),
        "image_size": image_size,
        "max_new_tokens": model.config.max_new_tokens,
        "rows": rows,
        "ratios": ratios,
    }


def format_table(result: dict) -> str:
    lines = ["| mode | batch | K | ms/query | queries/s | tokens written |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['mode']} | {r['batch_size']} | {r['steps']} | {r['ms_per_query']:.2f} | "
            f"{r['queries_per_s']:.1f} | {r.get('generated_tokens', '')} |"
        )
    lines += [f"{k}: {v:.2f}x" for k, v in result["ratios"].items()]
    return "\n".join(lines)


def load_for_bench(args):
    from plume_lite.backbone import QWEN2VL_2B_SIZES, make_backbone
    from plume_lite.config import PlumeConfig
    from plume_lite.model import PlumeModel

    dtype = getattr(torch, args.dtype)
    if args.checkpoint:
        model = PlumeModel.from_pretrained(args.checkpoint, dtype=dtype)
    elif args.random_2b:
        backbone, processor = make_backbone(dtype=dtype, **QWEN2VL_2B_SIZES)
        model = PlumeModel(backbone, processor, PlumeConfig(backbone="random-2b"))
    else:
        model = PlumeModel.from_backbone(args.backbone, dtype=dtype)
    model.config.max_new_tokens = args.max_new_tokens
    return model.to(device=resolve_device(args.device), dtype=dtype).eval()
