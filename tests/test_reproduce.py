"""`plume-lite reproduce --quick` end to end: data, 9 trainings, evaluation, efficiency,
tables and plot; a second call reuses every finished run and gives the same numbers."""

import json
import time

import pytest

from plume_lite.apps.cli import main


@pytest.mark.slow
def test_reproduce_quick_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "repro"
    assert main(["reproduce", "--out", str(out), "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "## Main table" in printed and "## Component ablation" in printed and "K = 4" in printed
    report = json.loads((out / "results.json").read_text())
    names = [r["run"]["name"] for r in report["runs"]]
    assert names == [
        "direct-s0",
        "explicit-s0",
        "latent-s0",
        "latent-no-adapter-s0",
        "latent-mlp-s0",
        "latent-no-anchor-s0",
        "latent-no-curriculum-s0",
        "latent-k4-s0",
        "latent-k6-s0",
    ]
    for r in report["runs"]:
        assert set(r["eval"]["modalities"]) == {"image", "video", "visdoc"}
        assert 0 <= r["eval"]["overall"]["score"] <= 100
        assert len(r["tasks"]) >= 12
    modes = {row["mode"] for row in report["efficiency"]["rows"]}
    assert modes == {"direct", "explicit", "latent"}
    assert (out / "accuracy_vs_latency.png").stat().st_size > 1000
    assert "PLUME (K=8)" in (out / "tables.md").read_text()

    # finished runs are reused: no training, no evaluation, identical scores
    start = time.time()
    assert main(["reproduce", "--out", str(out), "--quick"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert [r["eval"] for r in again["runs"]] == [r["eval"] for r in report["runs"]]
    assert time.time() - start < 60
