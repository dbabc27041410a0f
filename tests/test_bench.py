"""`plume-lite bench`: the variants run interleaved at each batch size, and the JSON holds
their rows, ratios, processor times and the fast engine's parity with the eager loop."""

import json

from plume_lite.apps.cli import main
from plume_lite.experiments.bench import fast_variant, run_bench, variant_call


def test_bench_times_every_variant_and_checks_parity(tiny_model):
    variants = ["direct", "latent", "latent-static"]
    result = run_bench(tiny_model, variants, batch_sizes=[1, 3], steps=2, repeats=1, image_size=32)
    assert [(r["mode"], r["engine"], r["batch_size"]) for r in result["rows"]] == [
        (*variant_call(v), b) for b in (1, 3) for v in variants
    ]
    assert all(
        r["ms_per_call"] > 0 and r["steps"] == (2 if r["mode"] == "latent" else 0) for r in result["rows"]
    )
    expected = {
        f"{v}/direct@{b}{t}"
        for v in variants[1:]
        for b in (1, 3)
        for t in ("", " (cpu time)", " (without processor)")
    }
    assert set(result["ratios"]) == expected
    assert set(result["processor_ms_per_call"]) == {"direct@1", "latent@1", "direct@3", "latent@3"}
    parity = result["parity_max_abs_diff"]
    assert set(parity) == {"latent-static@1", "latent-static@3"} and max(parity.values()) <= 1e-5


def test_fast_variant_follows_the_device():
    assert fast_variant("auto", "cpu") == "latent-static"
    assert fast_variant("auto", "cuda") == "latent-graph"
    assert fast_variant("none", "cuda") is None


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--batch-sizes", "2", "--steps", "1", "--repeats", "1", "--image-size", "28"]
    assert main([*argv, "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["shape"] == "tiny" and result["device"] == "cpu"
    assert {(r["mode"], r["engine"]) for r in result["rows"]} == {
        ("direct", "eager"),
        ("latent", "eager"),
        ("latent", "static"),
    }
    assert "latent-static/direct@2" in capsys.readouterr().out


def test_graph_engine_on_a_cpu_is_a_one_line_error(capsys):
    assert main(["bench", "--device", "cpu", "--engine", "graph"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a CUDA device" in err[0]


def test_bench_model_in_bfloat16_keeps_a_float32_adapter():
    import argparse

    import torch

    from plume_lite.experiments.bench import load_for_bench

    args = argparse.Namespace(
        checkpoint=None, shape="tiny", backbone="tiny", dtype="bfloat16", device="cpu", max_new_tokens=8
    )
    model = load_for_bench(args)
    assert next(model.backbone.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.adapter.parameters())
    assert model.encode(["a red circle"], steps=1, engine="static").shape == (1, 128)
