"""FSDP2 training on two CPU processes (gloo) through configs/accelerate/fsdp.yaml:
checkpoints go through accelerator.save_state / load_state (plume_lite/train/
sharded_checkpoint.py) and a resume continues exactly; the all-gathered InfoNCE of the
first step equals the one-process loss on the same global batch.

accelerate 1.15 does not route CPU launches to FSDP, so the launch runs the CLI through
tests/fsdp_on_cpu.py, which sets accelerate's FSDP state on the CPU processes; from
there on, the code is accelerate's FSDP2 path and the training loop's."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).parents[1]
SETTINGS = ["batch_size=2", "latent_steps=2", "curriculum=off", "progress_bar=false", "keep_checkpoints=5"]


def _launch(data, out, *extra):
    exe = Path(sys.executable).with_name("accelerate")
    launcher = [str(exe)] if exe.exists() else [shutil.which("accelerate") or "accelerate"]
    cmd = launcher + [
        "launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "fsdp.yaml"),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        str(ROOT / "tests" / "fsdp_on_cpu.py"),
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "max_steps=4",
        "save_every=2",
        *SETTINGS,
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=out.parent)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def _log(run):
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


@pytest.mark.slow
def test_fsdp_checkpoints_resume_exactly_and_gather_matches_one_process(tmp_path):
    from plume_lite.data import synth
    from plume_lite.train import resolve_config, train

    names = [t.name for t in synth.all_tasks() if t.modality == "image"][:2]
    data = synth.make_synth(tmp_path / "synth", size="tiny", seed=0, tasks=names)

    # uninterrupted: 4 steps, sharded checkpoints at steps 2 and 4, gathered final model
    full = tmp_path / "full"
    _launch(data, full)
    summary = json.loads((full / "summary.json").read_text())
    assert summary["finished"] and summary["step"] == 4
    step2 = full / "checkpoints" / "step_00000002"
    manifest = json.loads((step2 / "manifest.json").read_text())
    assert manifest["format"] == "plume_lite-train-checkpoint-sharded-1"
    # one shard per process of the model and of the optimizer, and no pickled RNG files
    for what in ("pytorch_model_fsdp_0", "optimizer_0"):
        shards = {f"accelerate/{what}/__{rank}_0.distcp" for rank in (0, 1)}
        assert shards <= set(manifest["files"])
    assert not any(name.endswith(".pkl") for name in manifest["files"])
    assert json.loads((step2 / "state.json").read_text())["processes"] == 2

    # killed after step 2: the run folder as it was then, resumed by a second launch
    cut = tmp_path / "cut"
    (cut / "checkpoints").mkdir(parents=True)
    shutil.copytree(step2, cut / "checkpoints" / step2.name)
    for name in ("train_config.json", "train_config.yaml"):
        shutil.copy(full / name, cut / name)
    lines = (full / "log.jsonl").read_text().splitlines()[:2]
    (cut / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    _launch(data, cut, "--resume")
    resumed = json.loads((cut / "summary.json").read_text())
    assert resumed["resumed_from"].endswith("step_00000002") and resumed["steps_this_run"] == 2
    assert _log(cut) == _log(full)  # the same losses, grad norms, lr and batches, to the digit
    for name in ("adapter.safetensors", "backbone/model.safetensors"):
        a, b = load_file(str(full / "model" / name)), load_file(str(cut / "model" / name))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), name

    # the gathered model holds whole tensors: it loads as a PlumeModel
    from plume_lite import PlumeModel

    PlumeModel.from_pretrained(full / "model")
    one = tmp_path / "one"  # one process, the same global batch of 4 pairs, one step
    config = resolve_config("tiny", mode="latent", overrides=["max_steps=1", *SETTINGS, "batch_size=4"])
    train(config, data, one)
    first, single = _log(full)[0], _log(one)[0]
    assert first["task"] == single["task"]
    # before any update the discriminative InfoNCE over the all-gathered batch is the
    # one-process loss; the CE parts are per-process token means, so only close
    assert first["nce_disc"] == pytest.approx(single["nce_disc"], rel=1e-5)
    assert first["total"] == pytest.approx(single["total"], rel=5e-3)
