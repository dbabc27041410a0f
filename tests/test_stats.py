"""Paired statistics (plume_lite.evaluation.stats) on synthetic per-query results: no model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from plume_lite.errors import InputError
from plume_lite.evaluation import stats
from plume_lite.evaluation.protocol import aggregate

# name: (metric, reasoning flag)
TASKS = {
    "cls": ("hit@1", False),
    "count": ("hit@1", True),
    "chart": ("hit@1", True),
    "doc": ("ndcg@5", False),
}


def make_result(scores: dict[str, np.ndarray]) -> dict:
    """An evaluation result shaped as protocol.evaluate writes it, headline from aggregate()."""
    tasks = {}
    for name, values in scores.items():
        metric, reasoning = TASKS[name]
        tasks[name] = {
            "name": name,
            "modality": "visdoc" if metric.startswith("ndcg") else "image",
            "meta_task": "retrieval" if metric.startswith("ndcg") else "classification",
            "protocol": "local",
            "metric": metric,
            "reasoning": reasoning,
            "score": 100.0 * float(np.mean(values)),
            "n_queries": len(values),
            "fingerprint": f"fp-{name}-{len(values)}",
            "per_query": [{"score": float(v), "rank": 1 if v == 1 else 2} for v in values],
        }
    return {
        "schema": "plume_lite.eval/1",
        "complete": True,
        **aggregate(tasks),
        "tasks": tasks,
        "pending": [],
    }


def base_scores(rng, n=128) -> dict[str, np.ndarray]:
    out = {}
    for name, (metric, _) in TASKS.items():
        out[name] = rng.random(n) if metric.startswith("ndcg") else (rng.random(n) < 0.5).astype(float)
    return out


def fix_failures(scores: dict[str, np.ndarray], rng, share=0.3) -> dict[str, np.ndarray]:
    """B = A with `share` of A's hit@1 failures turned into hits (ndcg tasks unchanged)."""
    out = {}
    for name, v in scores.items():
        v = v.copy()
        if TASKS[name][0].startswith("hit"):
            fails = np.flatnonzero(v == 0)
            v[rng.choice(fails, size=round(share * len(fails)), replace=False)] = 1.0
        out[name] = v
    return out


@pytest.fixture(scope="module")
def systems():
    rng = np.random.default_rng(7)
    a_scores = [base_scores(rng) for _ in range(3)]
    b_scores = [fix_failures(s, rng) for s in a_scores]
    return [make_result(s) for s in a_scores], [make_result(s) for s in b_scores]


def test_known_effect_gives_a_ci_excluding_zero_with_the_right_sign(systems):
    a, b = systems
    d = stats.paired_difference(b, a, n_boot=1000)
    assert d.diff > 0 and d.ci_low > 0 and d.excludes_zero
    assert d.ci_low < d.diff < d.ci_high
    reverse = stats.paired_difference(a, b, n_boot=1000)
    assert reverse.diff == pytest.approx(-d.diff) and reverse.ci_high < 0 and reverse.excludes_zero
    assert (d.n_seeds, d.n_queries, d.tasks) == (3, 4 * 128, tuple(TASKS))


def test_identical_systems_give_zero_and_a_ci_containing_zero(systems):
    a, _ = systems
    d = stats.paired_difference(a, [json.loads(json.dumps(r)) for r in a], n_boot=500)
    assert d.diff == 0 and d.mean_a == d.mean_b
    assert d.ci_low <= 0 <= d.ci_high and not d.excludes_zero
    assert stats.verdict(d, "a", "b") == "n.s."


def test_bootstrap_is_deterministic_for_a_seed(systems):
    a, b = systems
    first = stats.paired_difference(a, b, n_boot=600, seed=3)
    assert stats.paired_difference(a, b, n_boot=600, seed=3) == first
    other = stats.paired_difference(a, b, n_boot=600, seed=4)
    assert other.diff == first.diff and (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_point_estimate_equals_the_aggregate_headline_difference(systems):
    a, b = systems
    reasoning = stats.reasoning_tasks(a[0])
    d_all = stats.paired_difference(a, b, n_boot=200)
    d_reason = stats.paired_difference(a, b, tasks=reasoning, n_boot=200)
    for d, pick in ((d_all, lambda r: r["overall"]), (d_reason, lambda r: r["reasoning"]["reasoning"])):
        mean_a = np.mean([pick(r)["score"] for r in a])
        mean_b = np.mean([pick(r)["score"] for r in b])
        assert d.mean_a == pytest.approx(mean_a, abs=1e-9) and d.mean_b == pytest.approx(mean_b, abs=1e-9)
        assert d.diff == pytest.approx(mean_a - mean_b, abs=1e-9)
    assert d_reason.tasks == ("count", "chart")


def test_seed_level_spread_widens_the_ci():
    """Per-query differences constant inside a seed: only the seed draw can move the mean."""

    def runs(gains):  # graded (ndcg) scores: every query of a seed gets the same value
        return [make_result({"doc": np.full(40, g)}) for g in gains]

    a = runs([0.0] * 4)
    steady = stats.paired_difference(runs([0.1] * 4), a, n_boot=500)
    assert steady.ci_low == pytest.approx(10.0) and steady.ci_high == pytest.approx(10.0)
    spread = stats.paired_difference(runs([0.0, 0.2, 0.0, 0.2]), a, n_boot=500)
    assert spread.diff == pytest.approx(10.0) and spread.ci_low < 10.0 < spread.ci_high
    assert spread.seed_diffs == pytest.approx((0.0, 20.0, 0.0, 20.0))


def test_mcnemar_matches_binomtest_on_hand_counted_discordant_pairs(systems):
    a, b = systems
    for ra, rb in zip(a, b):
        t = stats.mcnemar(ra, rb)
        assert t.tasks == ("cls", "count", "chart")  # the ndcg task is not 0/1
        b10 = b01 = 0
        for name in t.tasks:
            for qa, qb in zip(ra["tasks"][name]["per_query"], rb["tasks"][name]["per_query"]):
                b10 += qa["score"] == 1 and qb["score"] == 0
                b01 += qa["score"] == 0 and qb["score"] == 1
        assert (t.b10, t.b01, t.n_queries) == (b10, b01, 3 * 128)
        assert b10 == 0 < b01  # B only fixes A's failures
        assert t.p == pytest.approx(binomtest(b10, b10 + b01, 0.5).pvalue)


def test_mcnemar_small_case_by_hand():
    a = make_result({"count": np.array([1, 1, 1, 1, 0, 0, 1.0])})
    b = make_result({"count": np.array([0, 0, 0, 0, 0, 1, 1.0])})
    t = stats.mcnemar(a, b)
    # 4 pairs favour A, 1 favours B: p = 2 * P(X <= 1 | n=5, 1/2) = 2 * (1 + 5) / 32
    assert (t.b10, t.b01, t.n_queries) == (4, 1, 7)
    assert t.p == pytest.approx(12 / 32)
    assert stats.mcnemar(a, a).p == 1.0  # no discordant pair
    with pytest.raises(InputError, match="hit@K"):
        stats.mcnemar(make_result({"doc": np.ones(3)}), make_result({"doc": np.ones(3)}))


def test_mismatched_query_counts_raise_a_one_line_error(systems):
    a, _ = systems
    short = make_result({name: v[:-1] for name, v in base_scores(np.random.default_rng(1)).items()})
    for call in (lambda: stats.paired_difference(a[:1], [short]), lambda: stats.mcnemar(a[0], short)):
        with pytest.raises(InputError, match="128 queries in A but 127 in B") as e:
            call()
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="one result per seed"):
        stats.paired_difference(a, a[:2])
    with pytest.raises(InputError, match="task set differs"):
        stats.paired_difference(a[:1], [make_result({"cls": np.ones(128)})])


def test_compare_table_and_markdown(systems, tmp_path):
    a, b = systems
    paths = []
    for i, r in enumerate(b):  # results may also be given as JSON paths
        paths.append(tmp_path / f"b{i}.json")
        paths[-1].write_text(json.dumps(r))
    manifest = {"tasks": [{"name": n, "reasoning": r} for n, (_, r) in TASKS.items()]}
    groups = {"all": None, "reasoning": stats.reasoning_tasks(manifest)}
    rows = stats.compare_table(
        {"fixed": paths, "base": a, "copy": a}, [("fixed", "base"), ("base", "copy")], groups, n_boot=300
    )
    assert [(r["a"], r["b"], r["group"]) for r in rows] == [
        ("fixed", "base", "all"),
        ("fixed", "base", "reasoning"),
        ("base", "copy", "all"),
        ("base", "copy", "reasoning"),
    ]
    assert [r["verdict"] for r in rows] == ["fixed > base", "fixed > base", "n.s.", "n.s."]
    assert all(len(r["mcnemar"]) == 3 for r in rows)
    table = stats.markdown(rows).splitlines()
    assert len(table) == 2 + len(rows)
    d = rows[0]["result"]
    assert (
        f"| fixed \u2212 base | all (4) | {d.mean_a:.1f} | {d.mean_b:.1f} | +{d.diff:.1f} [+{d.ci_low:.1f}, "
        in table[2]
    )
    assert table[4].count("n.s.") == 1 and "+0.0 [+0.0, +0.0]" in table[4]
    with pytest.raises(InputError, match="unknown system"):
        stats.compare_table({"base": a}, [("base", "latent")])


def test_the_paired_command_prints_the_same_rows_as_compare_table(systems, tmp_path, capsys):
    from plume_lite.apps.cli import main

    paths = {}
    for name, runs in zip("ab", systems):
        paths[name] = []
        for i, r in enumerate(runs):
            p = tmp_path / f"{name}{i}.json"
            p.write_text(json.dumps(r))
            paths[name].append(str(p))
    out = tmp_path / "paired.md"
    args = ["paired", "--system", "a=" + ",".join(paths["a"]), "--system", "b=" + ",".join(paths["b"])]
    assert main([*args, "--boot", "300", "--out", str(out)]) == 0
    groups = {"all": list(TASKS), "reasoning": ["count", "chart"]}
    expected = stats.markdown(
        stats.compare_table({"a": paths["a"], "b": paths["b"]}, [("a", "b")], groups, 300)
    )
    assert capsys.readouterr().out == expected == out.read_text()
    assert "| a − b | reasoning (2) |" in expected and "a < b" in expected
    assert main(["paired", "--system", "a=" + paths["a"][0], "--system", "a=x.json"]) == 2
    assert "given twice" in capsys.readouterr().err


def with_written(result: dict, correct: dict[str, np.ndarray]) -> dict:
    """`result` with explicit's per-query written answers on the tasks in `correct`."""
    result = json.loads(json.dumps(result))
    for name, values in correct.items():
        task = result["tasks"][name]
        task["written_answer_accuracy"] = 100.0 * float(np.mean(values))
        for q, v in zip(task["per_query"], values):
            q["written_correct"] = bool(v)
    return result


def test_the_paired_command_compares_written_answers_on_the_tasks_that_have_them(tmp_path, capsys):
    from plume_lite.apps.cli import main

    rng = np.random.default_rng(3)
    scores = base_scores(rng)
    a_ok = {"cls": rng.random(128) < 0.4, "count": rng.random(128) < 0.2}
    b_ok = {"cls": a_ok["cls"] | (rng.random(128) < 0.5), "count": a_ok["count"].copy()}
    paths = []
    for name, ok in (("a", a_ok), ("b", b_ok)):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(with_written(make_result(scores), ok)))
        paths.append(str(p))
    assert main(["paired", "--written", "--system", f"a={paths[0]}", "--system", f"b={paths[1]}"]) == 0
    table = capsys.readouterr().out
    # the retrieval scores are identical; the written answers are not, on cls only
    expected = 100.0 * np.mean([np.mean(a_ok[t].astype(float) - b_ok[t]) for t in ("cls", "count")])
    row = next(line for line in table.splitlines() if "| all (2) |" in line)
    assert f"{expected:+.1f}".replace("-", "−") in row and "a < b" in row
    b10 = int((a_ok["cls"] & ~b_ok["cls"]).sum())
    b01 = int((~a_ok["cls"] & b_ok["cls"]).sum())
    assert f"({b10}/{b01})" in row
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(make_result(scores)))
    assert main(["paired", "--written", "--system", f"a={plain}", "--system", f"b={plain}"]) == 2
    assert "has no written answers" in capsys.readouterr().err
