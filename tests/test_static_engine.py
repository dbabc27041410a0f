"""The static-cache latent engine (plume_lite/static_rollout.py) gives what the eager loop
gives: embeddings and traces of a mixed, left-padded batch of text, image, video and PDF
items, for K = 8 and K = 0 and both latent-position conventions; the CUDA-graph replay
too, where a GPU is present."""

import pytest
import torch

from plume_lite.errors import InputError
from plume_lite.model import PlumeModel
from plume_lite.static_rollout import PREFIX_BUCKET

TOL = 1e-5  # fp32


def _mixed(media):
    return [
        {"text": "three red bars above the line", "instruction": "Find the chart."},
        {"image": media["image"], "text": "What is left of the blue square?"},
        {"video": media["video"], "instruction": "Which object moved last?"},
        {"pdf": media["pdf"], "page": 1, "text": "page"},
    ]


def _assert_same(model, items, steps, engine="static", tol=TOL):
    eager, eager_traces = model.encode(items, steps=steps, batch_size=len(items), return_trace=True)
    fast, fast_traces = model.encode(
        items, steps=steps, batch_size=len(items), return_trace=True, engine=engine
    )
    assert (fast - eager).abs().max() <= tol
    for e, f in zip(eager_traces, fast_traces):
        assert len(f["latents"]) == steps and f["steps"] == steps
        assert (f["anchor"] - e["anchor"]).abs().max() <= tol
        for ze, zf in zip(e["latents"], f["latents"]):
            assert (zf - ze).abs().max() <= tol
        if steps:  # moe adapter: same router probabilities and the same experts chosen
            assert (f["gates"] - e["gates"]).abs().max() <= tol
            assert torch.equal(f["chosen"], e["chosen"])


@pytest.mark.parametrize("positions", ["mrope", "authors"])
@pytest.mark.parametrize("steps", [8, 0])
def test_static_engine_equals_eager_on_a_mixed_batch(tiny_model, media_files, steps, positions):
    saved = tiny_model.config.positions
    tiny_model.config.positions = positions
    try:
        items = _mixed(media_files)
        inputs, _ = tiny_model.batcher(items, "latent", tiny_model.device)
        assert (inputs["attention_mask"] == 0).any(), "rows of different lengths must be left-padded"
        assert inputs["input_ids"].shape[1] % PREFIX_BUCKET, (
            "the masked gap before the latent columns is tested"
        )
        _assert_same(tiny_model, items, steps)
    finally:
        tiny_model.config.positions = saved


def test_static_engine_equals_eager_on_the_trained_tiny_checkpoint(media_files):
    from plume_lite.apps.defaults import shipped_checkpoint

    model = PlumeModel.from_pretrained(shipped_checkpoint("latent")).eval()
    _assert_same(model, _mixed(media_files), model.config.latent_steps)


def test_graph_engine_runs_as_static_on_a_cpu(tiny_model):
    items = ["a red circle", "two blue squares under a line"]
    static = tiny_model.encode(items, engine="static")
    assert torch.equal(tiny_model.encode(items, engine="graph"), static)
    # direct mode has no steps: any engine gives the one-pass result
    assert torch.equal(
        tiny_model.encode(items, mode="direct", engine="static"), tiny_model.encode(items, mode="direct")
    )


def test_compiled_engine_equals_eager_on_a_mixed_batch(tiny_model, media_files, monkeypatch):
    """engine="compiled" traced by dynamo; the "eager" backend skips inductor's code
    generation (minutes on a CPU: benchmarks/compile_probe.py measures that)."""
    from plume_lite import static_rollout

    monkeypatch.setattr(static_rollout, "COMPILE_BACKEND", "eager")
    tiny_model._engine_key = None  # a fresh engine, built under the patched backend
    _assert_same(tiny_model, _mixed(media_files), 8, engine="compiled")
    assert tiny_model._static_engine("compiled").steps is not None
    tiny_model._engine_key = None


def test_unknown_engine_is_a_one_line_input_error(tiny_model):
    with pytest.raises(InputError) as err:
        tiny_model.encode(["a red circle"], engine="turbo")
    assert "\n" not in str(err.value) and "turbo" in str(err.value) and "eager" in str(err.value)


def test_static_engine_refuses_post_suffix_decoding(tiny_model):
    saved = tiny_model.config.post_suffix_decode
    tiny_model.config.post_suffix_decode = 4
    try:
        with pytest.raises(InputError, match="post-suffix decoding"):
            tiny_model.encode(["a red circle"], engine="static")
    finally:
        tiny_model.config.post_suffix_decode = saved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_graph_engine_equals_eager_on_cuda(media_files):
    torch.manual_seed(0)
    model = PlumeModel.from_backbone("tiny", device="cuda").eval()
    items = _mixed(media_files)
    _assert_same(model, items, 8, engine="graph", tol=1e-4)  # captures the bucket
    _assert_same(model, items[::-1], 8, engine="graph", tol=1e-4)  # replays it with other data
    assert len(model._engine.graphs) >= 1
