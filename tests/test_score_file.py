"""VLM2Vec score-file output and the comparator (RELEASED_CHECKPOINTS.md §7, P1 item 12)."""

import json

import pytest

from plume_lite.apps.cli import main
from plume_lite.errors import InputError
from plume_lite.evaluation import score_file


def _task(modality, metric, score, ranks):
    return {
        "modality": modality,
        "metric": metric,
        "score": score,
        "n_queries": len(ranks),
        "per_query": [{"rank": r, "score": float(r == 1)} for r in ranks],
    }


RESULT = {  # an `evaluate` result, reduced to what the score file reads
    "tasks": {
        "ImageNet-1K": _task("image", "hit@1", 50.0, [1, 3, 7, 1]),
        "MSR-VTT": _task("video", "hit@1", 25.0, [1, 12, 2, 30]),
        "ViDoRe_arxivqa": _task("visdoc", "ndcg@5", 40.0, [1, 2, 9, 4]),
    },
    "overall": {"score": 115 / 3},
    "modalities": {"image": {"score": 50.0}, "video": {"score": 25.0}, "visdoc": {"score": 40.0}},
    "meta_tasks": {"image": {"classification": {"score": 50.0}}, "video": {"retrieval": {"score": 25.0}}},
}
PUBLISHED = {
    "metadata": {"model_name": "VLM2Vec-V2.0-Qwen2VL-2B", "report_generated_date": "2025-06-01"},
    "metrics": {
        "image": {
            "ImageNet-1K": {"hit@1": 0.6, "num_pred": 1000, "num_data": 1000},
            "N24News": {"hit@1": 0.5},
        },
        "video": {"MSR-VTT": {"hit@1": 0.35}},
        "visdoc": {"ViDoRe_arxivqa": {"ndcg_linear@5": 0.7}},
    },
}


def test_score_file_keys_are_fractions_and_hit_at_k_comes_from_the_ranks():
    out = score_file.to_score_file(RESULT, "tiny-latent", date="2026-12-01T00:00:00+00:00")
    assert out["metadata"] == {
        "model_name": "tiny-latent",
        "report_generated_date": "2026-12-01T00:00:00+00:00",
    }
    img = out["metrics"]["image"]["ImageNet-1K"]
    assert img == {"hit@1": 0.5, "hit@5": 0.75, "hit@10": 1.0, "num_pred": 4, "num_data": 4}
    doc = out["metrics"]["visdoc"]["ViDoRe_arxivqa"]
    assert doc == {"ndcg_linear@5": 0.4, "num_pred": 4, "num_data": 4}  # no hit@k for graded tasks


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "run.json"
    written = score_file.to_score_file(RESULT, "tiny-latent")
    path.write_text(json.dumps(written))
    assert score_file.read_score_file(path) == written


def test_deltas_and_means_equal_hand_values():
    run = score_file.to_score_file(RESULT, "tiny-latent")
    c = score_file.compare(run, PUBLISHED, "VLM2Vec-V2.0-Qwen2VL-2B.json")
    deltas = {r["task"]: round(r["delta"], 6) for r in c["rows"]}
    assert deltas == {"ImageNet-1K": -10.0, "MSR-VTT": -10.0, "ViDoRe_arxivqa": -30.0}
    # means over the run's three tasks only (N24News is not in the run)
    assert c["means"]["all"]["run"] == pytest.approx(115 / 3)
    assert c["means"]["all"]["published"] == pytest.approx((60 + 35 + 70) / 3)
    assert c["means"]["all"]["delta"] == pytest.approx(-50 / 3)
    assert c["means"]["image"] == pytest.approx(
        {"n_tasks": 1, "run": 50.0, "published": 60.0, "delta": -10.0}
    )
    assert c["warning"] is None  # file name and metadata agree


def test_a_task_name_mismatch_is_refused():
    result = {"tasks": {"SSv2": _task("video", "hit@1", 10.0, [1, 4])}}
    with pytest.raises(InputError, match="video/SSv2"):
        score_file.compare(score_file.to_score_file(result, "x"), PUBLISHED, "VLM2Vec.json")


def test_the_copied_ume_r1_file_is_flagged():
    warning = score_file.copied_file_warning(PUBLISHED, "all_scores/UME-R1-Qwen2VL-2B.json")
    assert "only its video hit@1" in warning


def test_paper_meta_rows_put_the_run_next_to_the_papers_table():
    rows = {r["group"]: r for r in score_file.paper_meta_rows(RESULT)}
    assert rows["I-CLS"] == {"group": "I-CLS", "run": 50.0, "paper": 66.5}
    assert rows["V-RET"]["run"] == 25.0 and rows["I-QA"]["run"] is None
    assert rows["all"] == {"group": "all", "run": pytest.approx(115 / 3), "paper": 61.6}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"metrics": {"audio": {}}}), "not a VLM2Vec score file"),
        (json.dumps({"metrics": {"image": {"A": {"hit@1": 3.0}}}}), "image/A has no hit@1 fraction"),
    ],
)
def test_bad_score_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "scores.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        score_file.read_score_file(path)


def test_cli_compare(tmp_path, capsys):
    run, scores, out = tmp_path / "results.json", tmp_path / "VLM2Vec-V2.0-Qwen2VL-2B.json", tmp_path / "c.md"
    run.write_text(json.dumps(RESULT))
    scores.write_text(json.dumps(PUBLISHED))
    assert main(["compare", "--run", str(run), "--scores", str(scores), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| ImageNet-1K | image | hit@1 | 50.0 | 60.0 | -10.0 |" in text
    assert "| I-CLS | 50.0 | 66.5 |" in text
    assert out.read_text() == text
    bad = tmp_path / "ssv2.json"
    bad.write_text(json.dumps({"tasks": {"SSv2": _task("video", "hit@1", 10.0, [1])}}))
    assert main(["compare", "--run", str(bad), "--scores", str(scores)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plume-lite compare: error: tasks of the run not in") and "\n" not in err


def test_a_missing_file_is_one_line(tmp_path, capsys):
    with pytest.raises(InputError, match="is missing"):
        score_file.read_score_file(tmp_path / "nope.json")
    scores = tmp_path / "s.json"
    scores.write_text(json.dumps(PUBLISHED))
    assert main(["compare", "--run", str(tmp_path / "gone.json"), "--scores", str(scores)]) == 2
    err = capsys.readouterr().err.strip()
    assert "gone.json is missing" in err and "\n" not in err
