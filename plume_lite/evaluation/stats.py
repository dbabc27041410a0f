"""Paired statistics that decide whether one system beats another (LITE_DIAGNOSIS §7).

Inputs are evaluation results as `protocol.evaluate(..., keep_per_query=True)` returns
or writes them (a dict, or the path of its JSON): `result["tasks"][name]["per_query"]`
holds one {"score", "rank", ...} per test query, in the task's query order. A system is
a list of results, one per seed; systems A and B are paired by seed (position in the
list) and, within a seed, by task and query position. Two results are only paired when
each task has the same number of queries and, where both carry it, the same task
fingerprint (same test data); otherwise a one-line InputError says which task differs.

The score is the package's headline score: per task 100 x the mean per-query score,
then the plain mean over tasks (as `protocol.aggregate` computes "overall" and the
reasoning split), then the mean over seeds. It equals the mean of the results'
"overall" scores up to the 6-decimal rounding of the stored per-query scores.

    from plume_lite.evaluation import stats

    latent = [json.load(open(p)) for p in latent_paths]   # one result per seed
    direct = [json.load(open(p)) for p in direct_paths]
    d = stats.paired_difference(latent, direct, tasks=None, n_boot=2000, seed=0)
    d.diff, (d.ci_low, d.ci_high), d.excludes_zero      # A - B in points, 95 % CI

    reasoning = stats.reasoning_tasks(read_manifest("data/synth"))  # or from a result
    [stats.mcnemar(a, b, tasks=reasoning) for a, b in zip(latent, direct)]  # per seed

    rows = stats.compare_table(
        {"latent": latent, "direct": direct, "explicit": explicit},
        pairs=[("latent", "direct"), ("latent", "explicit")],
        groups={"all": None, "reasoning": reasoning},
    )
    print(stats.markdown(rows))   # | latent − direct | all | ... | +2.1 [−0.4, +4.6] | n.s. | ...

The CI is a hierarchical paired percentile bootstrap: each replicate draws seeds with
replacement, then, inside each drawn seed and each task, query positions with
replacement (the same positions for A and B), and recomputes the difference. With few
seeds (3) the seed level of the bootstrap is coarse; the CI is then a lower bound on
the true between-seed uncertainty. An ordering is claimed only where the CI excludes 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plume_lite.errors import InputError

CHUNK = 250  # bootstrap replicates drawn at once: bounds the [chunk, seeds, queries] index block
MINUS = "\u2212"  # typographic minus for the tables


@dataclass(frozen=True)
class PairedDifference:
    """Mean scores (points, 0-100) of A and B, their difference A - B and its 95 % CI."""

    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    n_seeds: int
    n_queries: int  # per seed, summed over the tasks compared
    excludes_zero: bool
    seed_diffs: tuple[float, ...]  # A - B per seed: their spread is the seed noise
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test on one seed's binary (hit@K) queries: b10 = A right and B
    wrong, b01 = A wrong and B right; p is the two-sided binomial p on b10 + b01."""

    b01: int
    b10: int
    n_queries: int
    p: float
    tasks: tuple[str, ...]


def load_result(run) -> dict:
    """An evaluation result: a dict as given, or read from a JSON path."""
    if isinstance(run, dict):
        result = run
    else:
        try:
            result = json.loads(Path(run).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{run}: cannot read an evaluation result ({e})") from None
    if not isinstance(result, dict) or not isinstance(result.get("tasks"), dict):
        raise InputError(
            f"{'result' if isinstance(run, dict) else run}: not an evaluation result (no 'tasks' mapping)"
        )
    return result


def reasoning_tasks(source: dict) -> list[str]:
    """Names of the reasoning tasks, from a loaded dataset manifest (tasks.json, e.g.
    `plume_lite.data.synth.read_manifest(folder)`: a "tasks" list) or from an
    evaluation result (a "tasks" mapping); both carry a "reasoning" flag per task."""
    tasks = source.get("tasks") if isinstance(source, dict) else None
    if isinstance(tasks, dict):
        tasks = list(tasks.values())
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and "name" in t for t in tasks):
        raise InputError(
            "expected a dataset manifest or an evaluation result with per-task 'reasoning' flags"
        )
    return [t["name"] for t in tasks if t.get("reasoning")]


def _task_names(results: list[dict], tasks) -> list[str]:
    """The tasks compared: `tasks`, or all tasks of the first result, which then every
    result must have (else the headline scores would not be comparable)."""
    names = list(results[0]["tasks"]) if tasks is None else list(dict.fromkeys(tasks))
    if not names:
        raise InputError("no tasks to compare")
    for i, r in enumerate(results):
        missing = [n for n in names if n not in r["tasks"]]
        extra = [n for n in r["tasks"] if n not in names] if tasks is None else []
        if missing or extra:
            raise InputError(f"run {i}: task set differs (missing {missing}, extra {extra})")
    return names


def _per_query(result: dict, name: str, field: str = "score") -> np.ndarray:
    rows = result["tasks"][name].get("per_query")
    if not rows:
        raise InputError(f"task {name}: no per-query results (evaluate with keep_per_query=True)")
    if any(q.get(field) is None for q in rows):
        why = "" if field == "score" else " (written answers come from explicit-mode evals only)"
        raise InputError(f"task {name}: a query has no {field!r}{why}")
    return np.array([float(q[field]) for q in rows], dtype=np.float64)


def _check_pair(a: dict, b: dict, name: str, label: str) -> None:
    ta, tb = a["tasks"][name], b["tasks"][name]
    na, nb = len(ta.get("per_query") or ()), len(tb.get("per_query") or ())
    if na != nb:
        raise InputError(
            f"{label}, task {name}: {na} queries in A but {nb} in B; queries are paired by position"
        )
    fa, fb = ta.get("fingerprint"), tb.get("fingerprint")
    if fa is not None and fb is not None and fa != fb:
        raise InputError(f"{label}, task {name}: A and B were scored on different test data ({fa} != {fb})")


def _paired_scores(a_runs, b_runs, tasks, field="score"):
    """Per task a [seeds, queries] array of A's and of B's per-query `field` (the
    score, or "written_correct": explicit's written answer was right)."""
    a_runs, b_runs = [load_result(r) for r in a_runs], [load_result(r) for r in b_runs]
    if not a_runs or len(a_runs) != len(b_runs):
        raise InputError(f"need one result per seed for both systems, got {len(a_runs)} and {len(b_runs)}")
    names = _task_names(a_runs + b_runs, tasks)
    a, b = {}, {}
    for n in names:
        for s, (ra, rb) in enumerate(zip(a_runs, b_runs)):
            _check_pair(ra, rb, n, f"seed {s}")
        lengths = {len(r["tasks"][n]["per_query"]) for r in a_runs}
        if len(lengths) != 1:  # a task's test set must not change between seeds
            raise InputError(f"task {n}: query counts differ between seeds ({sorted(lengths)})")
        a[n] = np.stack([_per_query(r, n, field) for r in a_runs])
        b[n] = np.stack([_per_query(r, n, field) for r in b_runs])
    return names, a, b


def headline(per_task: dict[str, np.ndarray]) -> np.ndarray:
    """Per seed: the mean over tasks of 100 x each task's mean per-query score."""
    return 100.0 * np.mean([v.mean(axis=1) for v in per_task.values()], axis=0)


def _bootstrap(diffs: dict[str, np.ndarray], n_boot: int, seed: int) -> np.ndarray:
    """Replicates of the headline difference: seeds drawn with replacement, then query
    positions drawn with replacement inside each drawn seed and task."""
    rng = np.random.default_rng(seed)
    n_seeds = next(iter(diffs.values())).shape[0]
    out = []
    for start in range(0, n_boot, CHUNK):
        m = min(CHUNK, n_boot - start)
        picked = rng.integers(0, n_seeds, size=(m, n_seeds))
        total = np.zeros((m, n_seeds))
        for d in diffs.values():
            q = rng.integers(0, d.shape[1], size=(m, n_seeds, d.shape[1]))
            total += d[picked[:, :, None], q].mean(axis=2)
        out.append(100.0 * (total / len(diffs)).mean(axis=1))
    return np.concatenate(out)


def paired_difference(
    a_runs, b_runs, tasks=None, n_boot: int = 2000, seed: int = 0, field: str = "score"
) -> PairedDifference:
    """Headline score of A and B (mean over seeds), A - B and its hierarchical paired
    bootstrap 95 % percentile CI; `tasks`: the tasks averaged (None: all, = "overall");
    `field`: the per-query value compared (see _paired_scores)."""
    if not isinstance(n_boot, int) or n_boot < 100:
        raise InputError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    names, a, b = _paired_scores(a_runs, b_runs, tasks, field)
    ha, hb = headline(a), headline(b)
    boots = _bootstrap({n: a[n] - b[n] for n in names}, n_boot, seed)
    low, high = (float(x) for x in np.percentile(boots, [2.5, 97.5]))
    return PairedDifference(
        mean_a=float(ha.mean()),
        mean_b=float(hb.mean()),
        diff=float((ha - hb).mean()),
        ci_low=low,
        ci_high=high,
        n_seeds=len(ha),
        n_queries=sum(a[n].shape[1] for n in names),
        excludes_zero=low > 0 or high < 0,
        seed_diffs=tuple(float(x) for x in ha - hb),
        tasks=tuple(names),
    )


def binary_tasks(result: dict, tasks=None) -> list[str]:
    """The tasks among `tasks` (None: all) whose metric is hit@K: 0/1 per query."""
    names = list(result["tasks"]) if tasks is None else list(tasks)
    return [n for n in names if str(result["tasks"].get(n, {}).get("metric", "")).lower().startswith("hit@")]


def mcnemar(a_run, b_run, tasks=None, field: str = "score") -> McNemar:
    """Exact two-sided McNemar test of one seed's A against B, pooled over the hit@K
    tasks among `tasks` (None: all tasks; ndcg tasks are left out: not 0/1); a `field`
    other than the score (written_correct) is 0/1 on every task."""
    from scipy.stats import binomtest  # scipy comes with scikit-learn; imported only here

    a, b = load_result(a_run), load_result(b_run)
    names = _task_names([a, b], tasks)
    names = binary_tasks(a, names) if field == "score" else names
    if not names:
        raise InputError("McNemar needs hit@K tasks (0/1 per query); none among the tasks given")
    b01 = b10 = n = 0
    for name in names:
        _check_pair(a, b, name, "McNemar")
        sa, sb = _per_query(a, name, field), _per_query(b, name, field)
        if not (np.isin(sa, (0.0, 1.0)).all() and np.isin(sb, (0.0, 1.0)).all()):
            raise InputError(f"task {name}: per-query scores are not 0/1; McNemar needs a hit@K metric")
        b10 += int(((sa == 1) & (sb == 0)).sum())
        b01 += int(((sa == 0) & (sb == 1)).sum())
        n += len(sa)
    p = binomtest(b10, b10 + b01, 0.5).pvalue if b10 + b01 else 1.0
    return McNemar(b01=b01, b10=b10, n_queries=n, p=float(p), tasks=tuple(names))


def verdict(d: PairedDifference, a: str, b: str) -> str:
    """The ordering the CI supports, or "n.s." when it contains 0."""
    if d.ci_low > 0:
        return f"{a} > {b}"
    if d.ci_high < 0:
        return f"{a} < {b}"
    return "n.s."


def compare_table(
    systems: dict, pairs, groups=None, n_boot: int = 2000, seed: int = 0, field: str = "score"
) -> list[dict]:
    """One row per (pair, group): paired difference, CI, verdict and McNemar per seed.

    systems: {name: [result per seed]}; pairs: [(a, b), ...]; groups: {label: task names
    or None for all tasks}, default {"all": None}; field: what is compared per query."""
    groups = {"all": None} if groups is None else groups
    unknown = sorted({s for p in pairs for s in p} - set(systems))
    if unknown:
        raise InputError(f"unknown system(s) {unknown}; known: {sorted(systems)}")
    loaded = {name: [load_result(r) for r in runs] for name, runs in systems.items()}
    rows = []
    for a, b in pairs:
        for label, tasks in groups.items():
            d = paired_difference(loaded[a], loaded[b], tasks, n_boot=n_boot, seed=seed, field=field)
            has_hits = field != "score" or bool(binary_tasks(loaded[a][0], d.tasks))
            tests = [mcnemar(x, y, d.tasks, field) for x, y in zip(loaded[a], loaded[b])] if has_hits else []
            rows.append(
                {"a": a, "b": b, "group": label, "result": d, "verdict": verdict(d, a, b), "mcnemar": tests}
            )
    return rows


def _signed(x: float) -> str:
    x = round(x, 1) + 0.0  # + 0.0: a difference that rounds to zero prints as +0.0, not -0.0
    return f"{x:+.1f}".replace("-", MINUS)


def markdown(rows: list[dict]) -> str:
    """A markdown table of `compare_table` rows."""
    lines = [
        f"| comparison | tasks | A | B | A {MINUS} B [95 % CI] | verdict | McNemar p per seed (b10/b01) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        d = row["result"]
        tests = ", ".join(f"{t.p:.3g} ({t.b10}/{t.b01})" for t in row["mcnemar"]) or "–"
        ci = f"{_signed(d.diff)} [{_signed(d.ci_low)}, {_signed(d.ci_high)}]"
        lines.append(
            f"| {row['a']} {MINUS} {row['b']} | {row['group']} ({len(d.tasks)}) "
            f"| {d.mean_a:.1f} | {d.mean_b:.1f} | {ci} | {row['verdict']} | {tests} |"
        )
    return "\n".join(lines) + "\n"
