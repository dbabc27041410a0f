"""`plume-lite eval`: the parser, torch-free, and its handler (the model, the data and
the protocol are imported when it runs)."""

from __future__ import annotations

from pathlib import Path

from plume_lite.arguments import int_at_least, name_list
from plume_lite.baselines import BASELINES
from plume_lite.config import MODES
from plume_lite.data.mmeb_text import TEXT_PROTOCOLS
from plume_lite.errors import CheckpointError, InputError
from plume_lite.runtime import DTYPES, resolve_device, resolve_dtype

BASELINE_TEXTS = {"ume_r1": "ume", "vlm2vec": "vlm2vec"}  # the MMEB strings each harness fed


def effective_text_protocol(text_protocol: str | None, baseline: str | None) -> str:
    """The item texts `eval` builds: the one asked for, else the baseline's own, else
    this package's."""
    return text_protocol or BASELINE_TEXTS.get(baseline, "plume_lite")


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint on MMEB-style tasks")
    p.add_argument(
        "--checkpoint", required=True, help="checkpoint folder (with --baseline: a folder or hub id)"
    )
    p.add_argument(
        "--baseline",
        choices=BASELINES,
        default=None,
        help="score a baseline as its authors ran it (ume_r1: mode explicit or direct; vlm2vec: direct)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int_at_least(1),
        default=8192,
        help="ume_r1 explicit mode's generation budget",
    )
    p.add_argument("--data", required=True, help="data folder or hub id")
    p.add_argument("--tasks", type=name_list, default=None, help="comma-separated task names (default: all)")
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "compositional"],
        help="SynthMMEB: the i.i.d. test split (default) or the held-out attribute combinations",
    )
    p.add_argument("--mode", default=None, choices=MODES, help="default: latent (a baseline: its own)")
    p.add_argument(
        "--text-protocol",
        default=None,
        choices=["plume_lite", *TEXT_PROTOCOLS],
        help="item texts: plume_lite's (default), or the authors' MMEB-v2 parser strings as "
        "plume, ume or vlm2vec is fed them (default with --baseline: the baseline's own)",
    )
    p.add_argument(
        "--steps", type=int_at_least(0), default=None, help="latent steps K (default: the checkpoint's)"
    )
    p.add_argument("--batch-size", type=int_at_least(1), default=16)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 (default auto: cuda when present)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="weights' dtype (default auto: bfloat16 on CUDA, as saved on the CPU)",
    )
    p.add_argument(
        "--max-pixels",
        type=int_at_least(1),
        default=None,
        help="largest area an image or video frame is resized to (default: the checkpoint's processor)",
    )
    p.add_argument("--no-cache", action="store_true", help="do not cache embeddings on disk")
    p.add_argument(
        "--out",
        required=True,
        help="results JSON (a .md table and a VLM2Vec-format .vlm2vec.json are written beside it)",
    )
    p.set_defaults(func=_cli)

    c = subparsers.add_parser(
        "compare", help="diff an eval result against a published VLM2Vec score file and the paper's table"
    )
    c.add_argument("--run", required=True, help="results JSON of `plume-lite eval` (or a score file)")
    c.add_argument("--scores", required=True, help="a VLM2Vec all_scores/<model>.json file")
    c.add_argument("--out", default=None, help="also write the tables to this .md file")
    c.set_defaults(func=_compare_cli)


def _compare_cli(args) -> int:
    from plume_lite.evaluation import score_file
    from plume_lite.io import atomic_write_text, read_json

    path = Path(args.run)
    run = read_json(path, InputError)
    if not isinstance(run, dict) or not ("tasks" in run or "metrics" in run):
        raise InputError(f"{path}: neither a `plume-lite eval` result nor a score file")
    published = score_file.read_score_file(args.scores)
    meta = score_file.paper_meta_rows(run) if "tasks" in run else None
    scores = score_file.to_score_file(run, path.stem) if "tasks" in run else run
    text = score_file.markdown(score_file.compare(scores, published, args.scores), meta)
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0


def _cli(args) -> int:
    from plume_lite.data.mmeb import load_eval_tasks
    from plume_lite.evaluation.index import checkpoint_fingerprint
    from plume_lite.evaluation.protocol import evaluate, markdown
    from plume_lite.model import PlumeModel

    if args.baseline is None and not Path(args.checkpoint).is_dir():
        raise CheckpointError(f"checkpoint folder not found: {args.checkpoint}")
    wanted = args.tasks
    # the option is passed only when set, so a loader without it reads the default texts
    text_protocol = effective_text_protocol(args.text_protocol, args.baseline)
    texts = {} if text_protocol == "plume_lite" else {"text_protocol": text_protocol}
    tasks = load_eval_tasks(args.data, tasks=wanted, split=args.split, **texts)
    missing = sorted(set(wanted or []) - {t.name for t in tasks})
    if missing:
        raise InputError(f"tasks not found in {args.data}: {', '.join(missing)}")
    device = resolve_device(args.device)
    if args.baseline is not None:
        from plume_lite.baselines import load_baseline

        extra = {"max_new_tokens": args.max_new_tokens} if args.baseline == "ume_r1" else {}
        model = load_baseline(
            args.baseline, args.checkpoint, device=device, dtype=resolve_dtype(args.dtype, device), **extra
        )
        mode, checkpoint_id = args.mode or model.default_mode, model.checkpoint_id
        if mode not in model.modes:
            raise InputError(f"--baseline {args.baseline} runs --mode {' or '.join(model.modes)}, not {mode}")
    else:
        model = PlumeModel.from_pretrained(
            args.checkpoint, device=device, dtype=resolve_dtype(args.dtype, device)
        )
        mode, checkpoint_id = args.mode or "latent", checkpoint_fingerprint(args.checkpoint)
    if args.max_pixels is not None:
        from plume_lite.pixel_budget import set_pixel_budget

        set_pixel_budget(model.processor, max_pixels=args.max_pixels)
    result = evaluate(
        model,
        tasks,
        mode=mode,
        steps=args.steps,
        batch_size=args.batch_size,
        out=args.out,
        checkpoint_id=checkpoint_id,
        cache_dir=None if args.no_cache else "auto",
    )
    write_score_file(result, args.out, model_name=args.baseline or Path(args.checkpoint).name)
    print(markdown(result), end="")
    return 0


def write_score_file(result: dict, out, model_name: str) -> Path:
    """The result's per-task scores in VLM2Vec's score-file format, beside `out`."""
    import json

    from plume_lite.evaluation.score_file import to_score_file
    from plume_lite.io import atomic_write_text

    path = Path(out).with_suffix(".vlm2vec.json")
    atomic_write_text(path, json.dumps(to_score_file(result, model_name), indent=1))
    return path
