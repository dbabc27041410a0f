"""`plume-lite eval`: the parser, torch-free, and its handler (the model, the data and
the protocol are imported when it runs)."""

from __future__ import annotations

from pathlib import Path

from plume_lite.arguments import int_at_least, name_list
from plume_lite.config import MODES
from plume_lite.errors import CheckpointError, InputError
from plume_lite.runtime import resolve_device


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint on MMEB-style tasks")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder")
    p.add_argument("--data", required=True, help="data folder or hub id")
    p.add_argument("--tasks", type=name_list, default=None, help="comma-separated task names (default: all)")
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "compositional"],
        help="SynthMMEB: the i.i.d. test split (default) or the held-out attribute combinations",
    )
    p.add_argument("--mode", default="latent", choices=MODES)
    p.add_argument(
        "--steps", type=int_at_least(0), default=None, help="latent steps K (default: the checkpoint's)"
    )
    p.add_argument("--batch-size", type=int_at_least(1), default=16)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 (default auto: cuda when present)")
    p.add_argument("--no-cache", action="store_true", help="do not cache embeddings on disk")
    p.add_argument("--out", required=True, help="results JSON (a .md table is written beside it)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from plume_lite.data.mmeb import load_eval_tasks
    from plume_lite.evaluation.index import checkpoint_fingerprint
    from plume_lite.evaluation.protocol import evaluate, markdown
    from plume_lite.model import PlumeModel

    if not Path(args.checkpoint).is_dir():
        raise CheckpointError(f"checkpoint folder not found: {args.checkpoint}")
    wanted = args.tasks
    tasks = load_eval_tasks(args.data, tasks=wanted, split=args.split)
    missing = sorted(set(wanted or []) - {t.name for t in tasks})
    if missing:
        raise InputError(f"tasks not found in {args.data}: {', '.join(missing)}")
    model = PlumeModel.from_pretrained(args.checkpoint, device=resolve_device(args.device))
    result = evaluate(
        model,
        tasks,
        mode=args.mode,
        steps=args.steps,
        batch_size=args.batch_size,
        out=args.out,
        checkpoint_id=checkpoint_fingerprint(args.checkpoint),
        cache_dir=None if args.no_cache else "auto",
    )
    print(markdown(result), end="")
    return 0
