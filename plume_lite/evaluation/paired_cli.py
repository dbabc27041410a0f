"""`plume-lite paired`: the paired bootstrap CI and McNemar tests (evaluation/stats.py)
of any eval results, outside `reproduce`:

    plume-lite paired --system latent=s0/eval-k8.json,s1/eval-k8.json \\
                      --system direct=s0/eval-direct.json,s1/eval-direct.json [--pair latent,direct]

Results of one system are listed in seed order; systems are paired by that position.
Rows cover all tasks and, where there are any, the reasoning tasks. With --written the
value compared is explicit's written answer (right or wrong per query) on the tasks
that have one, instead of the retrieval score."""

from __future__ import annotations

from plume_lite.arguments import int_at_least, name_list
from plume_lite.errors import InputError


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("paired", help="paired bootstrap CIs between eval results (one per seed)")
    p.add_argument(
        "--system",
        action="append",
        required=True,
        metavar="NAME=R1.json,R2.json",
        help="a system and its eval results, one per seed (repeat for each system)",
    )
    p.add_argument(
        "--pair", action="append", default=None, metavar="A,B", help="A - B to test (default: the first two)"
    )
    p.add_argument("--tasks", type=name_list, default=None, help="only these tasks (comma-separated)")
    p.add_argument(
        "--written",
        action="store_true",
        help="compare explicit's written-answer accuracy (the tasks with written answers)",
    )
    p.add_argument("--boot", type=int_at_least(1), default=2000, help="bootstrap replicates")
    p.add_argument("--out", default=None, help="also write the table to this .md file (atomically)")
    p.set_defaults(func=_run)


def parse_systems(specs) -> dict:
    systems = {}
    for spec in specs:
        name, sep, paths = spec.partition("=")
        if not sep or not name or not paths:
            raise InputError(f"--system {spec!r}: expected NAME=RESULT.json[,RESULT.json...]")
        if name in systems:
            raise InputError(f"--system {name}: given twice")
        systems[name] = [p for p in paths.split(",") if p]
    return systems


def _run(args) -> int:
    from plume_lite.evaluation import stats
    from plume_lite.io import atomic_write_text

    systems = parse_systems(args.system)
    if args.pair:
        bad = [p for p in args.pair if len(p.split(",")) != 2]
        if bad:
            raise InputError(f"--pair {bad[0]!r}: expected A,B")
        pairs = [tuple(p.split(",")) for p in args.pair]
    elif len(systems) >= 2:
        pairs = [tuple(list(systems)[:2])]
    else:
        raise InputError("give two --system entries (or a --pair)")
    first = stats.load_result(systems[pairs[0][0]][0])
    written = [n for n, t in first["tasks"].items() if "written_answer_accuracy" in t]
    if args.written and not written:
        source = systems[pairs[0][0]][0]
        raise InputError(f"--written: {source} has no written answers (it is not an explicit-mode eval)")
    tasks = args.tasks or (written if args.written else list(first["tasks"]))
    reasoning = [t for t in stats.reasoning_tasks(first) if t in tasks]
    groups = {"all": tasks, **({"reasoning": reasoning} if reasoning and reasoning != tasks else {})}
    field = "written_correct" if args.written else "score"
    table = stats.markdown(stats.compare_table(systems, pairs, groups, n_boot=args.boot, field=field))
    print(table, end="")
    if args.out:
        atomic_write_text(args.out, table)
    return 0
