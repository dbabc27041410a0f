"""`plume-lite bench`: latency and throughput of the encode modes and latent engines.

    plume-lite bench --batch-sizes 1,16 --steps 8 --out bench.json          # tiny, CPU
    plume-lite bench --shape 2b --device cuda --batch-sizes 1,16,64 --out b.json

Variants: "direct", "latent" (the eager loop), "latent-static" / "latent-graph" (the
static-cache engine, plume_lite/static_rollout.py; graph = replayed CUDA graphs) and
"explicit". For each batch size every variant runs once as a warm-up (a graph is
captured there), then `--repeats` rounds time one call of each variant in turn, so
a machine shared with other jobs slows them alike; the median is reported. The same
rounds time the processor alone (items -> tensors) for direct and latent prompts. The
warm-up outputs give the parity check: the max abs difference of each fast engine's
embeddings from the eager loop's. Ratios to direct come three ways: wall time, process
CPU time (fairer on a shared CPU), and "without processor" (each median call less its
prompt's median processor time: the model's share, approximately; on a GPU the
processor runs on the CPU and can dominate large batches). Queries are image+text (the paper's setting);
ms/query = call time / batch size.
"""

from __future__ import annotations

import platform
import statistics
import time

import torch
from PIL import Image, ImageDraw

from plume_lite.runtime import resolve_device

VARIANTS = ("direct", "latent", "latent-static", "latent-graph", "explicit")
SHAPES = ("tiny", "2b")


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
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def variant_call(variant: str) -> tuple[str, str]:
    """(mode, engine) of a variant name."""
    mode, _, engine = variant.partition("-")
    return mode, engine or "eager"


def _timed(model, fn) -> float:
    _sync(model.device)
    start = time.perf_counter()
    fn()
    _sync(model.device)
    return time.perf_counter() - start


def time_mode(model, mode: str, batch_size: int, steps: int, repeats: int, image_size: int) -> dict:
    """One mode alone (the eager engine): median ms of `repeats` calls after a warm-up."""
    items = bench_queries(batch_size, image_size)
    _, traces = model.encode(items, mode=mode, steps=steps, batch_size=batch_size, return_trace=True)
    times = [
        _timed(model, lambda: model.encode(items, mode=mode, steps=steps, batch_size=batch_size))
        for _ in range(repeats)
    ]
    row = _row(mode, "eager", batch_size, steps, statistics.median(times), repeats)
    if mode == "explicit":
        row["generated_tokens"] = statistics.mean(t["generated_tokens"] for t in traces)
    return row


def _row(mode, engine, batch_size, steps, seconds, repeats) -> dict:
    return {
        "mode": mode,
        "engine": engine,
        "batch_size": batch_size,
        "steps": steps if mode == "latent" else 0,
        "ms_per_query": 1000 * seconds / batch_size,
        "queries_per_s": batch_size / seconds,
        "ms_per_call": 1000 * seconds,
        "repeats": repeats,
    }


def bench_batch(model, variants, batch_size: int, steps: int, repeats: int, image_size: int):
    """Rows, processor times and parity for one batch size, the variants interleaved."""
    items = bench_queries(batch_size, image_size)

    def encode(variant, **kw):
        mode, engine = variant_call(variant)
        return model.encode(items, mode=mode, steps=steps, batch_size=batch_size, engine=engine, **kw)

    warm = {v: encode(v, return_trace=True) for v in variants}  # graph capture happens here
    peak = {}
    times = {v: [] for v in variants}
    cpu_times = {v: [] for v in variants}  # process CPU time: fairer on a shared CPU
    prompts = [m for m in ("direct", "latent") if any(variant_call(v)[0] == m for v in variants)]
    processor = {m: [] for m in prompts}
    for _ in range(repeats):
        for v in variants:
            if model.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(model.device)
            cpu_start = time.process_time()
            times[v].append(_timed(model, lambda v=v: encode(v)))
            cpu_times[v].append(time.process_time() - cpu_start)
            if model.device.type == "cuda":
                peak[v] = torch.cuda.max_memory_allocated(model.device) / 2**30
        for m in prompts:
            processor[m].append(_timed(model, lambda m=m: model.batcher(items, m, model.device)))
    rows = []
    for v in variants:
        mode, engine = variant_call(v)
        row = _row(mode, engine, batch_size, steps, statistics.median(times[v]), repeats)
        row["cpu_ms_per_call"] = 1000 * statistics.median(cpu_times[v])
        if mode == "explicit":
            row["generated_tokens"] = statistics.mean(t["generated_tokens"] for t in warm[v][1])
        if v in peak:
            row["peak_gib"] = round(peak[v], 2)
        rows.append(row)
    parity = {
        f"{v}@{batch_size}": float((warm[v][0] - warm["latent"][0]).abs().max())
        for v in variants
        if v.startswith("latent-") and "latent" in warm
    }
    processor_ms = {f"{m}@{batch_size}": 1000 * statistics.median(t) for m, t in processor.items()}
    return rows, processor_ms, parity


def run_bench(
    model,
    variants=("direct", "latent", "latent-static"),
    batch_sizes=(1, 16),
    steps: int = 8,
    repeats: int = 3,
    image_size: int = 64,
) -> dict:
    """All variants at every batch size; returns the JSON-ready result."""
    rows, processor_ms, parity = [], {}, {}
    for b in batch_sizes:
        r, p, q = bench_batch(model, variants, b, steps, repeats, image_size)
        rows += r
        processor_ms.update(p)
        parity.update(q)
    by = {
        (r["mode"] + ("" if r["engine"] == "eager" else "-" + r["engine"]), r["batch_size"]): r for r in rows
    }
    ratios = {}
    for b in batch_sizes:
        for v in variants:
            if v.startswith("latent") and ("direct", b) in by:
                ratios[f"{v}/direct@{b}"] = by[(v, b)]["ms_per_query"] / by[("direct", b)]["ms_per_query"]
                cpu = by[(v, b)]["cpu_ms_per_call"] / by[("direct", b)]["cpu_ms_per_call"]
                ratios[f"{v}/direct@{b} (cpu time)"] = cpu
                # the model alone: each call's median less its prompt's median processor time
                model_ms = by[(v, b)]["ms_per_call"] - processor_ms[f"latent@{b}"]
                ratios[f"{v}/direct@{b} (without processor)"] = model_ms / (
                    by[("direct", b)]["ms_per_call"] - processor_ms[f"direct@{b}"]
                )
        if ("explicit", b) in by and ("latent", b) in by:
            ratios[f"explicit/latent@{b}"] = (
                by[("explicit", b)]["ms_per_query"] / by[("latent", b)]["ms_per_query"]
            )
    return {
        "device": str(model.device),
        "device_name": _device_name(model.device),
        "dtype": str(next(model.parameters()).dtype),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "hidden_size": model.backbone.config.text_config.hidden_size,
        "num_layers": model.backbone.config.text_config.num_hidden_layers,
        "image_size": image_size,
        "steps": steps,
        "max_new_tokens": model.config.max_new_tokens,
        "rows": rows,
        "processor_ms_per_call": processor_ms,
        "ratios": ratios,
        "parity_max_abs_diff": parity,
    }


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def format_table(result: dict) -> str:
    lines = [
        "| mode | engine | batch | K | ms/query | queries/s | CPU ms/call | tokens written |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['mode']} | {r['engine']} | {r['batch_size']} | {r['steps']} | {r['ms_per_query']:.2f} | "
            f"{r['queries_per_s']:.1f} | {r.get('cpu_ms_per_call', float('nan')):.1f} | "
            f"{r.get('generated_tokens', '')} |"
        )
    lines += [f"{k}: {v:.2f}x" for k, v in result["ratios"].items()]
    lines += [f"processor {k}: {v:.1f} ms/call" for k, v in result["processor_ms_per_call"].items()]
    lines += [f"parity {k}: max |fast - eager| = {v:.2e}" for k, v in result["parity_max_abs_diff"].items()]
    return "\n".join(lines)


def default_batch_sizes(device: str) -> list[int]:
    """1/16/64 on a GPU; 1/16 on a CPU, where batch 64 only repeats batch 16's story slowly."""
    return [1, 16, 64] if torch.device(device).type == "cuda" else [1, 16]


def fast_variant(engine: str, device: str) -> str | None:
    """The fast latent variant to run beside the eager one ("auto": graph on CUDA)."""
    if engine == "none":
        return None
    if engine == "auto":
        engine = "graph" if torch.device(device).type == "cuda" else "static"
    return f"latent-{engine}"


def random_2b_model(dtype, device, **settings):
    """A PlumeModel on random weights of Qwen2-VL-2B-Instruct shapes (nothing downloaded),
    initialised on `device` (a 2B init on a CPU is slow); `settings`: PlumeConfig fields."""
    from plume_lite.backbone import QWEN2VL_2B_SIZES, make_backbone
    from plume_lite.config import PlumeConfig
    from plume_lite.model import PlumeModel

    with torch.device(device):
        backbone, processor = make_backbone(dtype=dtype, **QWEN2VL_2B_SIZES)
    return PlumeModel(backbone, processor, PlumeConfig.from_dict({**settings, "backbone": "random-2b"}))


def load_for_bench(args):
    """The model to time: a checkpoint, a backbone, or random weights of `args.shape`."""
    from plume_lite.model import PlumeModel

    dtype = getattr(torch, args.dtype)
    if args.checkpoint:
        model = PlumeModel.from_pretrained(args.checkpoint, dtype=dtype)
    elif args.shape == "2b":
        model = random_2b_model(dtype, args.device)
    else:
        model = PlumeModel.from_backbone(args.backbone, dtype=dtype)
    model.config.max_new_tokens = args.max_new_tokens
    # the backbone is loaded in `dtype`; the adapter stays float32 (it computes in float32)
    return model.to(device=args.device).eval()


def resolve_bench_args(args):
    """Fill the device-dependent defaults in place (device, dtype, image size, batches)."""
    args.device = resolve_device(args.device)
    big = args.shape == "2b"
    if args.dtype is None:
        args.dtype = "bfloat16" if big and torch.device(args.device).type == "cuda" else "float32"
    if args.image_size is None:
        args.image_size = 448 if big else 64
    if args.batch_sizes is None:
        args.batch_sizes = default_batch_sizes(args.device)
    return args
