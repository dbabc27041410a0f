"""The training-step benchmark's 2B path and batch sweep, at small shapes on the CPU
(the real run is benchmarks/gpu_check.sh on a GPU)."""

import json

import pytest
import torch

from plume_lite import backbone
from plume_lite.experiments import train_bench
from plume_lite.pixel_budget import pixel_budget
from plume_lite.train.config import resolve_config

synth = pytest.importorskip("plume_lite.data.synth")

SMALL_2B = dict(  # the 2B recipe's code path at a size a CPU test can run
    hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=128,
    vision_depth=1, vision_dim=32, vision_heads=2, patch_size=14, image_pixels=448 * 448,
)  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth.make_synth(tmp_path_factory.mktemp("tb"), size="tiny", tasks=["img_cls_colorshape"])


def test_the_2b_model_is_the_gpu_2b_recipe_on_random_weights(monkeypatch, data):
    from plume_lite.train.loop import load_pairs

    monkeypatch.setattr(backbone, "QWEN2VL_2B_SIZES", SMALL_2B)
    cfg = resolve_config("gpu-2b", mode="latent", overrides=["latent_steps=2"])
    model = train_bench.build_bench_model(cfg, "2b", "cpu")
    assert model.lora_enabled and model.config.backbone == "random-2b"
    assert not any(p.requires_grad for p in model.backbone.model.visual.parameters())
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert next(model.backbone.model.language_model.parameters()).dtype == torch.bfloat16
    # every image as large as the encode benchmark's: 64 px SynthMMEB would be 4 tokens
    assert pixel_budget(model.processor) == (448 * 448, 448 * 448)
    timer = train_bench.StepTimer(model, "latent", 2)  # one bf16 LoRA step runs and moves LoRA weights
    before = {n: p.detach().clone() for n, p in model.backbone.named_parameters() if p.requires_grad}
    timer.step(load_pairs(cfg, data)[:2])
    after = dict(model.backbone.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_the_sweep_times_each_batch_and_stops_at_the_first_out_of_memory(data):
    cfg = resolve_config("tiny", mode="latent", overrides=["latent_steps=2"])
    from plume_lite.train.loop import load_pairs

    pairs = load_pairs(cfg, data)
    built = []

    def make_timer():
        torch.manual_seed(0)
        timer = train_bench.StepTimer(train_bench.build_bench_model(cfg, "tiny", "cpu"), "latent", 2)
        if len(built) == 1:  # the second size "runs out of memory"
            timer.step = lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory"))
        built.append(timer)
        return timer

    rows = train_bench.batch_sweep(make_timer, pairs, [2, 4, 8], steps=1)
    assert [r["batch"] for r in rows] == [2, 4] and len(built) == 2
    assert rows[0]["steps"] == 1 and rows[0]["pairs_per_s"] > 0 and "out_of_memory" not in rows[0]
    assert rows[1]["out_of_memory"] is True


def test_the_cli_writes_its_rows_as_json(data, tmp_path):
    out = tmp_path / "tb.json"
    train_bench.main(
        ["--data", str(data), "--batches", "2", "--steps", "1", "--k", "2", "--variants", "direct",
         "--set", "lora=true", "--out", str(out)]
    )  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["setting"]["shape"] == "tiny" and doc["rows"]["direct@2"]["batch"] == 2
