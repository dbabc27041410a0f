"""`plume-lite reproduce` and `plume-lite bench`: the parsers, torch-free, and their
handlers, which import the experiment code only when they run."""

from __future__ import annotations

from pathlib import Path

from plume_lite.arguments import int_at_least, int_list, name_list
from plume_lite.errors import InputError
from plume_lite.runtime import DTYPES


def add_cli(subparsers) -> None:
    add_reproduce(subparsers)
    add_bench(subparsers)


def add_reproduce(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="the paper's tables at lite scale (data, training, eval)")
    p.add_argument("--out", required=True, help="output folder (reused: finished runs are skipped)")
    p.add_argument("--quick", action="store_true", help="a few steps per run: the pipeline in ~3 minutes")
    p.add_argument(
        "--seeds", type=int_at_least(1), default=None, help="seeds of the main systems (default 3; quick 1)"
    )
    p.add_argument(
        "--workers", type=int_at_least(1), default=2, help="runs trained side by side, one core each"
    )
    p.add_argument("--profile", default="tiny", choices=["tiny", "gpu-2b"])
    p.add_argument("--data", default=None, help="training data folder or hub id (default: SynthMMEB tiny)")
    p.add_argument("--eval-data", default=None, help="evaluation data (default: the same as --data)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="readouts' weights dtype (default auto: float32 for tiny, bfloat16 on CUDA for gpu-2b)",
    )
    p.add_argument(
        "--runs", type=name_list, default=None, help="only these runs of the plan (and the runs they need)"
    )
    p.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
        help="a training setting for every run, e.g. backbone=tiny-pretrained (repeatable)",
    )  # fmt: skip
    p.set_defaults(func=_reproduce)


def _reproduce(args) -> int:
    from plume_lite.experiments.reproduce import reproduce

    report = reproduce(
        args.out,
        quick=args.quick,
        seeds=args.seeds,
        profile=args.profile,
        data=args.data,
        eval_data=args.eval_data,
        workers=args.workers,
        only=args.runs,
        dtype=args.dtype,
        settings=tuple(args.settings),
    )
    print((Path(args.out) / "tables.md").read_text())
    print(f"results: {Path(args.out) / 'results.json'} ({report['wall_seconds'] / 60:.1f} min)")
    return 0


def add_bench(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="latency and throughput of the encode modes and latent engines (JSON out)"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a saved PlumeModel folder")
    src.add_argument("--backbone", default="tiny", help="hub id, local folder, or 'tiny' (default)")
    src.add_argument(
        "--shape",
        default="tiny",
        choices=["tiny", "2b"],
        help="2b: random weights with Qwen2-VL-2B shapes (nothing downloaded; for a GPU)",
    )
    src.add_argument(
        "--random-2b", dest="shape", action="store_const", const="2b", default="tiny", help="= --shape 2b"
    )
    p.add_argument(
        "--modes", type=name_list, default=["direct", "latent"], help="comma list of direct, latent, explicit"
    )
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "static", "graph", "compiled", "none"],
        help="fast latent engine timed beside the eager loop (auto: graph on CUDA, static on CPU)",
    )
    p.add_argument(
        "--batch-sizes",
        type=int_list(1),
        default=None,
        help="comma-separated (default 1,16; 1,16,64 on CUDA)",
    )
    p.add_argument("--steps", type=int_at_least(0), default=8, help="latent steps K")
    p.add_argument(
        "--max-new-tokens", type=int_at_least(1), default=64, help="explicit mode rationale budget"
    )
    p.add_argument("--repeats", type=int_at_least(1), default=3)
    p.add_argument("--image-size", type=int_at_least(28), default=None, help="default 64 (tiny), 448 (2b)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 (default auto: cuda when present)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="default float32 (bfloat16 for --shape 2b on CUDA)",
    )
    p.add_argument(
        "--fused-experts",
        action="store_true",
        help="MoE adapter experts as two matmuls (TransitionAdapter.fused) in every variant",
    )
    p.add_argument("--out", help="write the results as JSON here")
    p.set_defaults(func=_bench)


def _bench(args) -> int:
    import json

    import torch

    from plume_lite.experiments import bench
    from plume_lite.io import atomic_write_text

    if bad := [m for m in args.modes if m not in ("direct", "latent", "explicit")]:
        raise InputError(f"unknown mode(s) {bad}; choose from direct, latent, explicit")
    bench.resolve_bench_args(args)
    if args.engine == "graph" and not args.device.startswith("cuda"):
        raise InputError(f"--engine graph needs a CUDA device, got --device {args.device}")
    variants = list(args.modes)
    fast = bench.fast_variant(args.engine, args.device)
    if fast and "latent" in variants:
        variants.insert(variants.index("latent") + 1, fast)
    torch.manual_seed(0)
    model = bench.load_for_bench(args)
    model.adapter.fused = args.fused_experts  # a plain attribute: weights unchanged
    result = bench.run_bench(model, variants, args.batch_sizes, args.steps, args.repeats, args.image_size)
    result["shape"] = "checkpoint" if args.checkpoint else args.shape
    result["fused_experts"] = args.fused_experts
    print(bench.format_table(result))
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0
