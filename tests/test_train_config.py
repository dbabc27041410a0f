"""TrainConfig: profiles, typed key=value overrides, YAML files, closest-key errors."""

import dataclasses

import pytest

from plume_lite.config import PlumeConfig
from plume_lite.errors import ConfigError
from plume_lite.train.config import LORA_TARGETS, PROFILES, TrainConfig, parse_overrides, resolve_config


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("mode", ["latent", "explicit", "direct"])
def test_every_profile_resolves_in_every_mode(profile, mode):
    cfg = resolve_config(profile, mode=mode)
    assert cfg.mode == mode and cfg.grad_clip == 1.0
    PlumeConfig(**cfg.model_kwargs())


def test_profiles_follow_the_recipes():
    tiny, gpu = resolve_config("tiny"), resolve_config("gpu-2b")
    assert tiny.backbone == "tiny" and not tiny.lora and tiny.batch_size == 16 and tiny.lr <= 3e-4
    assert gpu.backbone == "Qwen/Qwen2-VL-2B-Instruct" and gpu.lora and gpu.lora_r == 16
    assert gpu.lora_targets == list(LORA_TARGETS) and gpu.freeze_vision and gpu.precision == "bf16"
    assert gpu.grad_accum > 1 and gpu.batch_size <= 16


def test_overrides_are_parsed_by_field_type():
    cfg = resolve_config(
        "tiny",
        overrides=[
            "lr=1e-4",
            "max_steps=50",
            "curriculum=off",
            "adapter=mlp",
            "tasks=a,b",
            "train_limit=null",
            "weight_decay=0",
            "instruction_prompt=Embed: 1e-4 yes",
            "latent_steps=4",
        ],
    )
    assert cfg.lr == 1e-4 and cfg.max_steps == 50 and cfg.curriculum is False
    assert cfg.adapter == "mlp" and cfg.tasks == ["a", "b"] and cfg.train_limit is None
    assert cfg.weight_decay == 0.0 and isinstance(cfg.weight_decay, float)
    assert cfg.instruction_prompt == "Embed: 1e-4 yes" and cfg.model_kwargs()["latent_steps"] == 4
    assert parse_overrides(["tasks=[x, y]"]) == {"tasks": ["x", "y"]}


@pytest.mark.parametrize(
    "item, words",
    [
        ("lr_schedul=cosine", "did you mean 'lr_schedule'"),
        ("batchsize=4", "did you mean 'batch_size'"),
        ("lr=fast", "lr must be float"),
        ("batch_size=2.5", "batch_size must be int"),
        ("curriculum=maybe", "curriculum must be bool"),
        ("adapter=moee", "adapter must be one of"),
        ("precision=fp8", "precision must be one of"),
        ("latent_steps=99", "latent_steps must be in"),
        ("batch_size=1", "in-batch negatives"),
        ("lr", "key=value"),
    ],
)
def test_bad_overrides_name_the_problem(item, words):
    with pytest.raises(ConfigError, match=words):
        resolve_config("tiny", overrides=[item])


def test_yaml_file_then_overrides_and_unknown_profile(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lr: 3e-5\nadapter: moe_no_anchor\nlatent_steps: 6\n")
    cfg = resolve_config("tiny", files=[path], overrides=["latent_steps=4"])
    assert cfg.lr == 3e-5 and cfg.adapter == "moe_no_anchor" and cfg.latent_steps == 4
    (tmp_path / "bad.yaml").write_text("adaptor: mlp\n")
    with pytest.raises(ConfigError, match="did you mean 'adapter'"):
        resolve_config("tiny", files=[tmp_path / "bad.yaml"])
    with pytest.raises(ConfigError, match="unknown profile"):
        resolve_config("gpu-7b")


def test_saved_config_round_trips(tmp_path):
    cfg = resolve_config("gpu-2b", mode="explicit", overrides=["tasks=[t1]"])
    cfg.save(tmp_path)
    assert TrainConfig.load(tmp_path) == cfg
    assert TrainConfig.load(tmp_path / "train_config.yaml") == cfg
    assert dataclasses.asdict(cfg) == cfg.to_dict()
