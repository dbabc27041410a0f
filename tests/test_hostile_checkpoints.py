"""Hostile checkpoint folders: every damaged PlumeModel folder (wrong types or ranges in
plume_config.json, truncated / garbage / empty / missing files, a directory where a file
goes, missing tokenizer or processor files, wrong tensor shapes, pickle-only weights)
ends in one PlumeError line that names the file, never in a library traceback. The same
holds for a damaged train_config.json."""

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from plume_lite.config import PlumeConfig
from plume_lite.errors import ConfigError, PlumeError
from plume_lite.model import PlumeModel
from plume_lite.train.config import TrainConfig


@pytest.fixture(scope="session")
def good(tmp_path_factory, tiny_model):
    """One good full checkpoint and one good LoRA checkpoint, saved once per session."""
    root = tmp_path_factory.mktemp("good")
    tiny_model.save_pretrained(root / "full")
    torch.manual_seed(0)
    lora = PlumeModel.from_backbone("tiny")
    lora.enable_lora(r=4, alpha=8, dropout=0.0)
    lora.save_pretrained(root / "lora")
    return root


# ------------------------------------------------------------------ ways to damage a folder
def edit_config(**changes):
    def damage(ck):
        cfg = json.loads((ck / "plume_config.json").read_text())
        cfg.update(changes)
        (ck / "plume_config.json").write_text(json.dumps(cfg))  # NaN is written as NaN

    return damage


def write(name, data: bytes):
    def damage(ck):
        (ck / name).write_bytes(data)

    return damage


def truncate(name):
    def damage(ck):
        data = (ck / name).read_bytes()
        (ck / name).write_bytes(data[: len(data) // 2])

    return damage


def remove(name):
    def damage(ck):
        path = ck / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return damage


def into_directory(name):
    def damage(ck):
        remove(name)(ck)
        (ck / name).mkdir()

    return damage


def tensors(name, change):
    def damage(ck):
        state = load_file(str(ck / name))
        change(state)
        save_file(state, str(ck / name))

    return damage


def first_key(state, pattern=""):
    return sorted(k for k in state if pattern in k)[0]


def reshape(pattern=""):
    def change(state):
        state[first_key(state, pattern)] = torch.zeros(3, 3)

    return change


def drop(pattern=""):
    def change(state):
        del state[first_key(state, pattern)]

    return change


def poison(state):
    key = first_key(state)
    state[key] = torch.full_like(state[key], float("nan"))


def pickle_only(ck):
    state = load_file(str(ck / "backbone" / "model.safetensors"))
    (ck / "backbone" / "model.safetensors").unlink()
    torch.save(state, ck / "backbone" / "pytorch_model.bin")


GARBAGE = bytes(range(256)) * 16

# (id, which good checkpoint, damage, the file the message must name)
CASES = [
    ("latent_steps-string", "full", edit_config(latent_steps="eight"), "plume_config.json"),
    ("num_experts-list", "full", edit_config(num_experts=[4]), "plume_config.json"),
    ("top_k-null", "full", edit_config(top_k=None), "plume_config.json"),
    ("step_table_size-negative", "full", edit_config(step_table_size=-1), "plume_config.json"),
    ("latent_steps-negative", "full", edit_config(latent_steps=-3), "plume_config.json"),
    ("latent_steps-bool", "full", edit_config(latent_steps=True), "plume_config.json"),
    ("top_k-above-experts", "full", edit_config(top_k=9), "plume_config.json"),
    ("num_experts-zero", "full", edit_config(num_experts=0, top_k=0), "plume_config.json"),
    ("expert_dropout-nan", "full", edit_config(expert_dropout=math.nan), "plume_config.json"),
    ("step_table-huge", "full", edit_config(step_table_size=10**12), "plume_config.json"),
    ("adapter-unknown", "full", edit_config(adapter="moee"), "plume_config.json"),
    ("backbone-number", "full", edit_config(backbone=7), "plume_config.json"),
    ("lora-string", "full", edit_config(lora="yes"), "plume_config.json"),
    ("unknown-key", "full", edit_config(latent_step=4), "plume_config.json"),
    ("config-invalid-json", "full", truncate("plume_config.json"), "plume_config.json"),
    ("config-empty", "full", write("plume_config.json", b""), "plume_config.json"),
    ("config-binary", "full", write("plume_config.json", GARBAGE), "plume_config.json"),
    ("config-a-list", "full", write("plume_config.json", b"[1, 2]"), "plume_config.json"),
    ("config-directory", "full", into_directory("plume_config.json"), "plume_config.json"),
    ("config-missing", "full", remove("plume_config.json"), "plume_config.json"),
    ("config-other-experts", "full", edit_config(num_experts=8), "adapter.safetensors"),
    ("adapter-truncated", "full", truncate("adapter.safetensors"), "adapter.safetensors"),
    ("adapter-garbage", "full", write("adapter.safetensors", GARBAGE), "adapter.safetensors"),
    ("adapter-empty", "full", write("adapter.safetensors", b""), "adapter.safetensors"),
    ("adapter-directory", "full", into_directory("adapter.safetensors"), "adapter.safetensors"),
    ("adapter-missing", "full", remove("adapter.safetensors"), "adapter.safetensors"),
    ("adapter-wrong-shape", "full", tensors("adapter.safetensors", reshape()), "adapter.safetensors"),
    ("adapter-tensor-missing", "full", tensors("adapter.safetensors", drop()), "adapter.safetensors"),
    ("adapter-nan", "full", tensors("adapter.safetensors", poison), "adapter.safetensors"),
    ("weights-truncated", "full", truncate("backbone/model.safetensors"), "backbone/model.safetensors"),
    ("weights-garbage", "full", write("backbone/model.safetensors", GARBAGE), "backbone/model.safetensors"),
    ("weights-empty", "full", write("backbone/model.safetensors", b""), "backbone/model.safetensors"),
    (
        "weights-tensor-missing",
        "full",
        tensors("backbone/model.safetensors", drop("norm")),
        "backbone/model.safetensors",
    ),
    (
        "weights-wrong-shape",
        "full",
        tensors("backbone/model.safetensors", reshape("norm")),
        "backbone/model.safetensors",
    ),
    ("weights-pickle-only", "full", pickle_only, "backbone/model.safetensors"),
    ("backbone-config-invalid", "full", truncate("backbone/config.json"), "backbone/config.json"),
    ("backbone-config-directory", "full", into_directory("backbone/config.json"), "backbone/config.json"),
    ("backbone-config-missing", "full", remove("backbone/config.json"), "config.json"),
    ("tokenizer-missing", "full", remove("backbone/tokenizer.json"), "tokenizer.json"),
    ("tokenizer-config-empty", "full", write("backbone/tokenizer_config.json", b""), "tokenizer_config.json"),
    ("tokenizer-garbage", "full", write("backbone/tokenizer.json", GARBAGE), "backbone/tokenizer.json"),
    ("processor-config-missing", "full", remove("backbone/processor_config.json"), "processor_config.json"),
    ("chat-template-binary", "full", write("backbone/chat_template.jinja", GARBAGE), "chat_template.jinja"),
    ("backbone-missing", "full", remove("backbone"), "backbone"),
    ("backbone-a-file", "full", lambda ck: (remove("backbone")(ck), write("backbone", b"x")(ck)), "backbone"),
    (
        "lora-tensor-missing",
        "lora",
        tensors("lora/adapter_model.safetensors", drop("lora_B")),
        "lora/adapter_model.safetensors",
    ),
    (
        "lora-wrong-shape",
        "lora",
        tensors("lora/adapter_model.safetensors", reshape("lora_A")),
        "lora/adapter_model.safetensors",
    ),
    ("lora-truncated", "lora", truncate("lora/adapter_model.safetensors"), "lora/adapter_model.safetensors"),
    (
        "lora-config-r-string",
        "lora",
        lambda ck: (ck / "lora" / "adapter_config.json").write_text(
            json.dumps({**json.loads((ck / "lora" / "adapter_config.json").read_text()), "r": "eight"})
        ),
        "lora/adapter_config.json",
    ),
    ("lora-config-missing", "lora", remove("lora/adapter_config.json"), "lora/adapter_config.json"),
    ("lora-settings-bad", "lora", edit_config(lora={"r": 4}), "plume_config.json"),
    (
        "lora-settings-differ",
        "lora",
        edit_config(lora={"r": 8, "alpha": 8, "dropout": 0.0, "targets": ["q_proj"]}),
        "adapter_config.json",
    ),
    (
        "token-rows-wrong-shape",
        "lora",
        tensors("token_rows.safetensors", reshape("input")),
        "token_rows.safetensors",
    ),
    ("token-rows-missing", "lora", remove("token_rows.safetensors"), "token_rows.safetensors"),
    ("lora-processor-tokenizer-missing", "lora", remove("processor/tokenizer.json"), "processor"),
    ("lora-folder-missing", "lora", remove("lora"), "lora"),
]


def test_there_are_at_least_twenty_damaged_folders():
    assert len(CASES) >= 20


@pytest.mark.parametrize("kind, damage, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_damaged_checkpoint_is_one_line_naming_the_file(good, tmp_path, kind, damage, names):
    ck = tmp_path / "ck"
    shutil.copytree(good / kind, ck)
    damage(ck)
    with pytest.raises(PlumeError) as err:
        PlumeModel.from_pretrained(ck)
    msg = str(err.value)
    assert "\n" not in msg and msg.strip() == msg and len(msg) < 600, msg
    assert names in msg, msg


def test_the_good_checkpoints_still_load(good):
    for kind in ("full", "lora"):
        model = PlumeModel.from_pretrained(good / kind)
        assert model.lora_enabled == (kind == "lora")


def test_a_file_instead_of_a_folder(tmp_path):
    (tmp_path / "ck").write_text("x")
    with pytest.raises(PlumeError, match="is a file"):
        PlumeModel.from_pretrained(tmp_path / "ck")


@pytest.mark.parametrize(
    "value, words",
    [
        ({"latent_steps": "eight"}, "latent_steps must be int"),
        ({"num_experts": [4]}, "num_experts must be int"),
        ({"top_k": None}, "top_k may not be null"),
        ({"step_table_size": -1}, "step_table_size must be in"),
        ({"expert_dropout": 1.5}, "expert_dropout must be in"),
        ({"max_new_tokens": 0}, "max_new_tokens must be"),
        ({"lora": {"r": 0, "alpha": 8, "dropout": 0.0, "targets": ["q_proj"]}}, "lora needs r >= 1"),
    ],
)
def test_plume_config_checks_types_and_ranges(value, words):
    with pytest.raises(ConfigError, match=words):
        PlumeConfig.from_dict(value)
    assert PlumeConfig.from_dict({"expert_dropout": 0}).expert_dropout == 0.0  # int → float


TRAIN_DAMAGE = [
    ("wrong-type", lambda p: p.write_text(json.dumps({"max_steps": "many"})), "max_steps must be int"),
    ("negative", lambda p: p.write_text(json.dumps({"lora_r": -1})), "lora_r must be >= 1"),
    ("nan", lambda p: p.write_text('{"lr": NaN}'), "lr must be a finite number"),
    ("seed", lambda p: p.write_text(json.dumps({"seed": -1})), "seed must be in"),
    ("null", lambda p: p.write_text(json.dumps({"batch_size": None})), "batch_size may not be null"),
    ("invalid", lambda p: p.write_text('{"lr": '), "not valid JSON"),
    ("empty", lambda p: p.write_text(""), "empty"),
    ("binary", lambda p: p.write_bytes(GARBAGE), "not valid JSON"),
    ("directory", lambda p: p.mkdir(), "is a directory"),
    ("a-list", lambda p: p.write_text("[1]"), "expected a mapping"),
    ("unknown", lambda p: p.write_text(json.dumps({"max_step": 3})), "did you mean 'max_steps'"),
]


@pytest.mark.parametrize("damage, words", [d[1:] for d in TRAIN_DAMAGE], ids=[d[0] for d in TRAIN_DAMAGE])
def test_damaged_train_config_is_one_line_naming_the_file(tmp_path, damage, words):
    damage(tmp_path / "train_config.json")
    with pytest.raises(ConfigError) as err:
        TrainConfig.load(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "train_config.json" in msg and words in msg, msg
