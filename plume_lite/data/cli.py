"""`plume-lite synth` (generate SynthMMEB) and `plume-lite data show` (inspect any source)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from plume_lite.arguments import int_at_least, name_list


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="generate SynthMMEB, an offline MMEB-v2-shaped benchmark with rationales"
    )
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument(
        "--size",
        default="tiny",
        choices=["tiny", "lite", "small"],  # synth.SIZES (kept literal: this module is import-light)
        help="tiny: 120 training pairs, 32 test + 32 compositional queries per task (tests); "
        "lite: 480 and 128 + 128 (the reproduction run); small: 600 and 64 + 64",
    )
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--tasks", type=name_list, default=None, help="only these task names (comma-separated)")
    p.add_argument(
        "--train-pairs",
        type=int_at_least(1),
        default=None,
        help="training pairs per task instead of the size's (test query counts stay; scenes differ)",
    )
    p.set_defaults(func=_synth)

    d = subparsers.add_parser("data", help="inspect data sources")
    sub = d.add_subparsers(dest="action", required=True)
    s = sub.add_parser("show", help="print tasks, sizes, modalities and one example each")
    s.add_argument("source", help="SynthMMEB folder, local MMEB/UME/BEIR folder, or hub id")
    s.add_argument("--tasks", type=name_list, default=None, help="only these task names (comma-separated)")
    s.add_argument("--media-root", default=None, help="folder media paths are relative to")
    s.add_argument(
        "--split",
        default="test",
        choices=["test", "compositional"],
        help="evaluation split (compositional: SynthMMEB's held-out attribute combinations)",
    )
    s.set_defaults(func=_show)


def _synth(args) -> int:
    from plume_lite.data.synth import make_synth, read_manifest

    t0 = time.perf_counter()
    out = make_synth(
        args.out, size=args.size, seed=args.seed, tasks=args.tasks, verbose=True, train_pairs=args.train_pairs
    )
    m = read_manifest(out)
    n_train = sum(t["n_train"] for t in m["tasks"])
    n_test = sum(t["n_test_queries"] for t in m["tasks"])
    n_comp = sum(t["n_compositional_queries"] for t in m["tasks"])
    print(
        f"SynthMMEB {args.size} (seed {args.seed}): {len(m['tasks'])} tasks, {n_train} "
        f"training pairs, {n_test} test + {n_comp} compositional queries -> {out} "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    if m["tasks"]:
        print(
            f"dataset card {out / 'README.md'}; load a task with "
            f"datasets.load_dataset({str(out)!r}, {m['tasks'][0]['name']!r})"
        )
    return 0


def _short(v, root: Path):
    if isinstance(v, list):
        return f"[{len(v)} frames: {_short(v[0], root)} ...]" if v else "[]"
    if isinstance(v, str) and v.startswith(str(root) + "/"):
        return v[len(str(root)) + 1 :]
    return v if isinstance(v, (str, int)) else f"<{type(v).__name__}>"


def _fmt(item: dict, root: Path) -> str:
    return "{" + ", ".join(f"{k}: {_short(v, root)!r}" for k, v in item.items()) + "}"


def _show(args) -> int:
    from plume_lite.data.mmeb import load_eval_tasks, load_train_pairs
    from plume_lite.data.storage import DataError

    root = Path(args.source).resolve()
    pairs, tasks, errors = [], [], []
    try:
        pairs = load_train_pairs(args.source, tasks=args.tasks, media_root=args.media_root)
    except DataError as e:
        errors.append(e)
    try:
        tasks = load_eval_tasks(args.source, tasks=args.tasks, media_root=args.media_root, split=args.split)
    except DataError as e:
        errors.append(e)
    if not pairs and not tasks:
        raise errors[-1] if errors else DataError(f"{args.source}: holds no data")
    for e in errors:  # the half that did load is shown; say why the other is missing
        print(f"note: {e}", file=sys.stderr)
    n_train = Counter(p.task for p in pairs)
    by_name = {t.name: t for t in tasks}
    names = list(dict.fromkeys([t.name for t in tasks] + list(n_train)))
    print(
        f"{args.source}: {len(names)} tasks, {len(pairs)} training pairs, "
        f"{sum(len(t.queries) for t in tasks)} {args.split} queries, "
        f"{sum(t.reasoning for t in tasks)} reasoning tasks"
    )
    print(
        f"{'task':<22}{'modality':<9}{'meta_task':<18}{'protocol':<9}{'metric':<8}"
        f"{'reason':<7}{'train':>6}{'test':>6}{'cands':>7}"
    )
    for n in names:
        t = by_name.get(n)
        cols = (
            (
                t.modality,
                t.meta_task,
                t.protocol,
                t.metric,
                "yes" if t.reasoning else "-",
                len(t.queries),
                len(t.candidates),
            )
            if t
            else ("?", "?", "?", "?", "?", 0, 0)
        )
        print(
            f"{n:<22}{cols[0]:<9}{cols[1]:<18}{cols[2]:<9}{cols[3]:<8}{cols[4]:<7}"
            f"{n_train.get(n, 0):>6}{cols[5]:>6}{cols[6]:>7}"
        )
    for n in names:
        print(f"\n== {n}")
        p = next((p for p in pairs if p.task == n), None)
        if p:
            print(f"  train query     {_fmt(p.query, root)}")
            print(f"    rationale     {p.query_rationale or '-'}")
            print(f"    answer        {p.query_answer or '-'}")
            print(f"  train positive  {_fmt(p.positive, root)}")
            print(f"    rationale     {p.positive_rationale or '-'}")
            print(f"    answer        {p.positive_answer or '-'}")
            for neg in p.negatives[:1]:
                print(f"  train negative  {_fmt(neg, root)}")
        t = by_name.get(n)
        if t:
            best = max(t.qrels[0], key=t.qrels[0].get)
            print(f"  test query      {_fmt(t.queries[0], root)}")
            print(
                f"  its positive    {_fmt(t.candidates[best], root)}  "
                f"(relevance {t.qrels[0][best]}, {len(t.qrels[0])} relevant)"
            )
    return 0
