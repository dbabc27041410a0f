"""`plume-lite pretrain`: the parser, torch-free, and its handler (plume_lite/train/pretrain.py)."""

from __future__ import annotations

import shlex
import sys

from plume_lite.arguments import int_at_least


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pre-train the tiny backbone on captions and lookups (language-model loss)",
        description="Pre-train a fresh tiny Qwen2-VL backbone (plume_lite/train/pretrain.py); "
        "the result is a backbone folder, usable as `backbone=DIR` in training.",
    )
    p.add_argument("--out", required=True, help="backbone folder to write (replaced atomically)")
    p.add_argument("--steps", type=int_at_least(1), default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int_at_least(1), default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int_at_least(1), default=1)
    p.add_argument("--init", default=None, help="continue a backbone folder written by `pretrain`")
    p.add_argument(
        "--by-kind", action="store_true", help="one kind per batch (cheaper steps; learns row shapes slower)"
    )
    p.add_argument(
        "--ordinals",
        default="left_to_right",
        help="order of a row caption's ordinal clauses: left_to_right (the shipped backbone's) or "
        "by_shape (each ordinal bound to its shape)",
    )
    p.add_argument(
        "--neighbours",
        action="store_true",
        help="row captions also name the shape just left of each shape (left-of's last step)",
    )
    p.add_argument("--gate-queries", type=int_at_least(1), default=64, help="held-out samples per kind")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    from plume_lite.train.pretrain import pretrain

    command = "plume-lite " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    record = pretrain(
        args.out,
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        threads=args.threads,
        gate_queries=args.gate_queries,
        mixed=not args.by_kind,
        init=args.init,
        command=command,
        ordinals=args.ordinals,
        neighbours=args.neighbours,
    )
    gate = ", ".join(f"{k} {v}" for k, v in record["gate"]["exact_match"].items())
    print(f"pre-trained {record['steps']} steps in {record['train_cpu_s']} CPU-s; exact match %: {gate}")
    print(f"backbone: {args.out}")
    return 0
