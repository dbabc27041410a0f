"""The shipped accelerate configs (configs/accelerate/): they load with accelerate's own
config loader, name their distributed type, use only keys `accelerate launch` knows,
and ddp.yaml trains for real (two CPU processes on gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType

from plume_lite.errors import ConfigError
from plume_lite.train.loop import refuse_sharded

ROOT = Path(__file__).parents[1]
CONFIGS = ROOT / "configs" / "accelerate"
EXPECTED = {
    "ddp.yaml": "MULTI_GPU",
    "fsdp.yaml": "FSDP",
    "deepspeed_zero2.yaml": "DEEPSPEED",
    "deepspeed_zero3.yaml": "DEEPSPEED",
}


def test_every_config_file_is_tested():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_and_names_its_distributed_type(name):
    config = load_config_from_file(str(CONFIGS / name))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == DistributedType(EXPECTED[name])
    assert config.num_machines == 1 and config.machine_rank == 0 and not config.use_cpu
    # `accelerate launch` turns fsdp_config / deepspeed_config entries into its own
    # options (fsdp_config.x -> --fsdp_x); a misspelt key would be ignored silently
    options = {a.dest for a in launch_command_parser()._actions}
    for key in config.fsdp_config:
        assert (key if key.startswith("fsdp") else f"fsdp_{key}") in options, key
    for key in config.deepspeed_config:
        assert key in options, key


def test_fsdp_wraps_the_backbones_layer_classes():
    import transformers.models.qwen2_vl.modeling_qwen2_vl as qwen2_vl

    config = load_config_from_file(str(CONFIGS / "fsdp.yaml"))
    assert config.fsdp_config["fsdp_version"] == 2
    for cls in config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
        assert isinstance(getattr(qwen2_vl, cls), type), cls


def test_zero_stages():
    stages = {n: load_config_from_file(str(CONFIGS / n)).deepspeed_config.get("zero_stage") for n in EXPECTED}
    assert stages["deepspeed_zero2.yaml"] == 2 and stages["deepspeed_zero3.yaml"] == 3


def test_deepspeed_and_fsdp1_are_refused_fsdp2_is_sharded_the_others_not():
    for kind in ("DEEPSPEED", "MEGATRON_LM"):
        with pytest.raises(ConfigError, match=f"{kind} launches are not supported"):
            refuse_sharded(DistributedType(kind))
    with pytest.raises(ConfigError, match="FSDP version 1 launches are not supported"):
        refuse_sharded(DistributedType("FSDP"), fsdp_version=1)
    assert refuse_sharded(DistributedType("FSDP"), fsdp_version=2) is True
    for kind in ("NO", "MULTI_CPU", "MULTI_GPU"):
        assert refuse_sharded(DistributedType(kind)) is False


@pytest.mark.slow
def test_ddp_config_trains_with_two_processes(tmp_path):
    """`accelerate launch --config_file configs/accelerate/ddp.yaml -m plume_lite train`
    on two CPU processes (accelerate falls back to gloo), with the prefix checkpointed
    and the experts fused: the run finishes, checkpoints, and saves a loadable model."""
    from plume_lite.data import synth

    names = [t.name for t in synth.all_tasks() if t.modality == "image"][:2]
    data = synth.make_synth(tmp_path / "synth", size="tiny", seed=0, tasks=names)
    exe = Path(sys.executable).with_name("accelerate")
    launcher = [str(exe)] if exe.exists() else [shutil.which("accelerate") or "accelerate"]
    out = tmp_path / "run"
    cmd = launcher + [
        "launch",
        "--config_file",
        str(CONFIGS / "ddp.yaml"),
        "--num_processes",
        "2",
        "-m",
        "plume_lite",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "max_steps=2",
        "batch_size=4",
        "latent_steps=2",
        "curriculum=off",
        "progress_bar=false",
        "checkpoint_prefix=on",
        "fused_experts=on",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["step"] == 2
    assert summary["pairs_per_s"] > 0 and summary["checkpoint"].endswith("step_00000002")
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["checkpoint_prefix"] and saved["fused_experts"]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and all(r["n_latent"] == 2 for r in records)
    from plume_lite import PlumeModel

    PlumeModel.from_pretrained(out / "model")
