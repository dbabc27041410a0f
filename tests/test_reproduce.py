"""`plume-lite reproduce --quick` end to end: data, the chain (U -> latent) with its
controls and ablations, every readout, paired statistics, efficiency, tables and plot; a
second call reuses every finished run and gives the same numbers."""

import json

import pytest

from plume_lite.apps.cli import main
from plume_lite.errors import ConfigError
from plume_lite.experiments.plan import Budget, cpu_matched_steps, plan_runs, select_runs
from plume_lite.experiments.reproduce import reproduce
from plume_lite.experiments.runner import run_plan


def test_plan_is_the_chain_with_its_controls():
    runs = {r.name: r for r in plan_runs(3, Budget(explicit=600, latent=300))}
    for s in range(3):
        assert runs[f"latent-s{s}"].init == f"explicit-s{s}"
        assert "first_stage=1" in runs[f"latent-s{s}"].overrides  # no stage 0 from U
        assert runs[f"direct-s{s}"].init is None and runs[f"direct-s{s}"].steps == 900
        assert runs[f"direct-from-u-s{s}"].init == f"explicit-s{s}"
        assert runs[f"direct-from-u-s{s}"].steps == 300
        assert set(runs[f"direct-cpu-s{s}"].requires()) == {f"explicit-s{s}", f"latent-s{s}", f"direct-s{s}"}
        assert {r.name for r in runs[f"latent-s{s}"].readouts} == {"k8", "k0", "disc"}
    assert all(runs[n].init == "explicit-s0" for n in runs if n.startswith("latent-") and n.endswith("-s0")
               and n != "latent-s0")  # fmt: skip
    # 160 + 75 CPU-s at 0.13 s per direct step
    assert cpu_matched_steps([160.0, 75.0], 117.0, 900) == 1808


def test_a_subset_of_the_plan_brings_the_runs_it_needs():
    runs = plan_runs(2)
    names = [r.name for r in select_runs(runs, ["direct-cpu-s1", "direct-from-u-s0"])]
    # in the plan's order: what direct-cpu-s1 matches and the U that direct-from-u-s0 starts from
    expected = ["explicit-s0", "direct-from-u-s0", "explicit-s1", "latent-s1", "direct-s1", "direct-cpu-s1"]
    assert names == expected
    with pytest.raises(ConfigError, match="no run latent-s7 in the plan"):
        select_runs(runs, ["latent-s7"])


def test_a_wrong_setting_or_run_name_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="backbon"):
        reproduce(tmp_path / "a", quick=True, settings=("backbon=tiny-pretrained",))
    with pytest.raises(ConfigError, match="no run nope"):
        reproduce(tmp_path / "b", quick=True, only=["nope"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # no data generated


def _job(run, done, log):
    log.append((run.name, sorted(done)))
    return run.name


def test_runner_respects_dependencies_in_process():
    log = []
    runs = plan_runs(2)
    out = run_plan(runs, _job, workers=1, log=log)
    assert set(out) == {r.name for r in runs}
    finished = set()
    for name, seen in log:
        run = next(r for r in runs if r.name == name)
        assert set(run.requires()) <= set(seen) <= finished
        finished.add(name)


@pytest.mark.slow
def test_reproduce_quick_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "repro"
    assert main(["reproduce", "--out", str(out), "--quick"]) == 0
    printed = capsys.readouterr().out
    for heading in ("## Main table", "## Paired differences", "## Explicit's written answers", "K = 4"):
        assert heading in printed
    report = json.loads((out / "results.json").read_text())
    names = [r["run"]["name"] for r in report["runs"]]
    assert names == [r.name for r in plan_runs(1)]
    by_name = {r["run"]["name"]: r for r in report["runs"]}
    assert all(r["train_cpu_seconds"] > 0 for r in report["runs"])  # CPU time, not wall time
    cost = [by_name[n]["train_cpu_seconds"] for n in ("explicit-s0", "latent-s0")]
    ref = by_name["direct-s0"]
    assert by_name["direct-cpu-s0"]["steps"] == cpu_matched_steps(
        cost, ref["train_cpu_seconds"], ref["steps"]
    )
    for r in report["runs"]:
        for entry in r["readouts"].values():
            assert set(entry["eval"]["modalities"]) == {"image", "video", "visdoc"}
            assert 0 <= entry["eval"]["overall"]["score"] <= 100
            assert len(entry["tasks"]) >= 12
    latent = next(r for r in report["runs"] if r["run"]["name"] == "latent-s0")
    assert set(latent["readouts"]) == {"k8", "k8-compositional", "k0", "disc", "disc-compositional"}
    modes = {row["mode"] for row in report["efficiency"]["rows"]}
    assert modes == {"direct", "explicit", "latent"}
    assert (out / "accuracy_vs_latency.png").stat().st_size > 1000
    tables = (out / "tables.md").read_text()
    assert "latent K=8 (from U) − direct, step-matched" in tables.replace("PLUME ", "")

    # finished runs are reused: no training, no evaluation, identical scores
    # a training run appends to log.jsonl; a scored task writes its part file
    written = sorted((out / "runs").glob("*/log.jsonl")) + sorted((out / "runs").glob("*/*.work/parts/**/*"))
    assert len(written) > len(report["runs"])
    stamps = {p: p.stat().st_mtime_ns for p in written}
    assert main(["reproduce", "--out", str(out), "--quick"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert [r["readouts"] for r in again["runs"]] == [r["readouts"] for r in report["runs"]]
    assert {p: p.stat().st_mtime_ns for p in written} == stamps  # nothing trained or scored again


def test_readouts_load_in_the_dtype_asked_for():
    import torch

    from plume_lite.experiments.reproduce import eval_dtype

    assert eval_dtype("auto", "tiny", "cuda") is None  # the tiny profile scores in float32 everywhere
    assert eval_dtype("auto", "gpu-2b", "cuda") == torch.bfloat16
    assert eval_dtype("auto", "gpu-2b", "cpu") is None
    assert eval_dtype("float16", "tiny", "cpu") == torch.float16
    with pytest.raises(ConfigError, match="dtype must be one of"):
        eval_dtype("int8", "tiny", "cpu")
