"""The authors' released layout loads exactly (spec ../shared/RELEASED_CHECKPOINTS.md §7, P0.1):
detected single and sharded, every adapter tensor bitwise after the rename, the backbone
and vocabulary untouched, the checkpoint's own token ids, strict one-line errors naming a
missing or extra tensor, the compatibility settings recorded, convert + reload the same
state, and hub ids through huggingface_hub.snapshot_download."""

import json
import logging
import shutil

import pytest
import torch
from authors_checkpoints import (
    GP,
    MARKER,
    PLUME_ALL_TOKENS,
    build_authors_checkpoint,
    read_authors_adapter,
    read_backbone_tensors,
)
from safetensors import safe_open
from safetensors.torch import save_file

from plume_lite import CheckpointError, ConfigError, PlumeModel
from plume_lite.released import is_authors_layout

# authors' adapter name -> this package's (spec §1.3 table), restated for the test
RENAME = [
    ("ln.", "norm."),
    ("step_embed.", "step_emb."),
    ("shared_expert.fc1.", "shared.0."),
    ("shared_expert.fc2.", "shared.3."),
    (".fc1.", ".0."),
    (".fc2.", ".3."),
]


def package_key(name: str) -> str:
    for old, new in RENAME:
        if name.startswith(old) or (old.startswith(".") and old in name):
            return name.replace(old, new, 1)
    return name


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory):
    """authors_checkpoint(kind="plume", sharded=False, **kw) -> folder, built once per module."""
    built = {}

    def make(kind="plume", sharded=False, **kw):
        key = (kind, sharded, tuple(sorted(kw.items())))
        if key not in built:
            out = tmp_path_factory.mktemp(f"{kind}{'-sharded' if sharded else ''}")
            built[key] = build_authors_checkpoint(out / "ckpt", kind, sharded=sharded, **kw)
        return built[key]

    return make


@pytest.fixture(scope="module")
def loaded(authors_checkpoint):
    return {s: PlumeModel.from_pretrained(authors_checkpoint(sharded=s)) for s in (False, True)}


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _edit_weights(folder, edit):
    """Rewrite the file holding the adapter with `edit(tensors)` applied."""
    for path in sorted(folder.glob("model*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if any(k.startswith(MARKER) for k in tensors):
            edit(tensors)
            save_file(tensors, str(path), metadata={"format": "pt"})
            index = folder / "model.safetensors.index.json"
            if index.exists():
                data = json.loads(index.read_text())
                data["weight_map"] = {k: v for k, v in data["weight_map"].items() if v != path.name}
                data["weight_map"] |= dict.fromkeys(tensors, path.name)
                index.write_text(json.dumps(data))
            return


def test_the_layout_is_detected(authors_checkpoint, tiny_model, tmp_path):
    assert is_authors_layout(authors_checkpoint())
    assert is_authors_layout(authors_checkpoint(sharded=True))
    assert not is_authors_layout(authors_checkpoint("ume"))  # no adapter: a baseline, not PLUME
    tiny_model.save_pretrained(tmp_path / "own")
    assert not is_authors_layout(tmp_path / "own")  # this package's layout
    assert not is_authors_layout(tmp_path / "own" / "backbone")  # a plain backbone


@pytest.mark.parametrize("sharded", [False, True])
def test_every_adapter_tensor_is_the_checkpoints_after_the_rename(authors_checkpoint, loaded, sharded):
    stored = read_authors_adapter(authors_checkpoint(sharded=sharded))
    assert len(stored) == 25 and all(t.dtype == torch.bfloat16 for t in stored.values())
    state = loaded[sharded].adapter.state_dict()
    assert sorted(state) == sorted(package_key(k) for k in stored)
    for name, tensor in stored.items():
        assert torch.equal(state[package_key(name)], tensor.to(torch.float32)), name


@pytest.mark.parametrize("sharded", [False, True])
def test_the_backbone_is_the_saved_one(authors_checkpoint, loaded, sharded):
    saved = read_backbone_tensors(authors_checkpoint(sharded=sharded))
    state = loaded[sharded].backbone.state_dict()

    def current(name):  # the legacy names saved, as transformers 5 names them in memory
        if name.startswith("visual."):
            return "model." + name
        return "model.language_model." + name[len("model.") :]

    assert len(saved) > 20
    for name, tensor in saved.items():
        assert torch.equal(state[current(name)], tensor), name
    emb = state["model.language_model.embed_tokens.weight"]
    assert torch.equal(loaded[sharded].backbone.lm_head.weight, emb)  # tied, as saved


def test_transformers5_names_load_the_same_model(authors_checkpoint, loaded):
    folder = authors_checkpoint(legacy_names=False)
    saved = read_backbone_tensors(folder)
    assert any(k.startswith("model.language_model.") for k in saved)
    model = PlumeModel.from_pretrained(folder)
    a, b = loaded[False].state_dict(), model.state_dict()
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_token_ids_and_rows_are_the_checkpoints(authors_checkpoint, loaded):
    from transformers import AutoTokenizer

    folder = authors_checkpoint()
    tok = AutoTokenizer.from_pretrained(folder)
    model = loaded[False]
    assert model.token_ids == {t: tok.convert_tokens_to_ids(t) for t in PLUME_ALL_TOKENS}
    assert len(model.processor.tokenizer) == len(tok)  # nothing added
    rows = read_backbone_tensors(folder)["model.embed_tokens.weight"]
    assert rows.shape[0] == len(tok)  # the released matrix was shrunk to the tokenizer: kept so
    assert torch.equal(model.backbone.get_input_embeddings().weight, rows)  # nothing re-initialised


def test_the_compatibility_settings_are_recorded(authors_checkpoint, loaded, tmp_path):
    config = loaded[False].config
    assert (config.adapter, config.num_experts, config.top_k, config.step_table_size) == ("moe", 4, 2, 32)
    assert (config.latent_steps, config.protocol, config.positions) == (8, "plume", "authors")
    assert config.instruction_prompt == GP
    assert config.backbone == str(authors_checkpoint())
    loaded[False].save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "plume_config.json").read_text())
    assert (saved["protocol"], saved["positions"], saved["latent_steps"]) == ("plume", "authors", 8)


def test_k_comes_from_trainer_state_with_a_warning(authors_checkpoint, caplog):
    folder = authors_checkpoint(latent_tokens=6.0)
    with caplog.at_level(logging.WARNING, logger="plume_lite"):
        model = PlumeModel.from_pretrained(folder)
    assert model.config.latent_steps == 6
    assert any("K = 6" in r.getMessage() for r in caplog.records)
    assert PlumeModel.from_pretrained(folder, latent_steps=8).config.latent_steps == 8


def test_settings_the_weights_do_not_record_can_be_given(authors_checkpoint, tiny_model, tmp_path):
    folder = authors_checkpoint()
    model = PlumeModel.from_pretrained(folder, adapter="moe_no_anchor", positions="mrope", top_k=1)
    assert (model.config.adapter, model.config.positions, model.config.top_k) == ("moe_no_anchor", "mrope", 1)
    with pytest.raises(ConfigError, match="num_experts is read from the checkpoint"):
        PlumeModel.from_pretrained(folder, num_experts=2)
    with pytest.raises(ConfigError, match="latent_stepz"):
        PlumeModel.from_pretrained(folder, latent_stepz=4)
    tiny_model.save_pretrained(tmp_path / "own")
    with pytest.raises(ConfigError, match="only to the authors' released layout"):
        PlumeModel.from_pretrained(tmp_path / "own", latent_steps=4)


@pytest.mark.parametrize("sharded", [False, True])
@pytest.mark.parametrize(
    "case, edit, named",
    [
        ("missing", lambda t: t.pop(MARKER + "experts.2.fc2.bias"), MARKER + "experts.2.fc2.bias is missing"),
        (
            "missing-router",
            lambda t: t.pop(MARKER + "router.weight"),
            MARKER + "router.weight is missing",
        ),
        (
            "extra",
            lambda t: t.__setitem__(MARKER + "gate.weight", torch.zeros(4, dtype=torch.bfloat16)),
            "unexpected adapter tensor " + MARKER + "gate.weight",
        ),
        (
            "fifth-expert",
            lambda t: t.__setitem__(
                MARKER + "experts.4.fc1.weight", t[MARKER + "experts.0.fc1.weight"].clone()
            ),
            "unexpected adapter tensor " + MARKER + "experts.4.fc1.weight",
        ),
        (
            "wrong-shape",
            lambda t: t.__setitem__(MARKER + "experts.1.fc1.bias", torch.zeros(3, dtype=torch.bfloat16)),
            MARKER + "experts.1.fc1.bias has shape [3], expected [256]",
        ),
        (
            "nan",
            lambda t: t[MARKER + "ln.bias"].fill_(float("nan")),
            MARKER + "ln.bias holds NaN",
        ),
    ],
)
def test_a_missing_or_extra_adapter_tensor_is_one_line_naming_it(
    authors_checkpoint, tmp_path, sharded, case, edit, named
):
    folder = _copy(authors_checkpoint(sharded=sharded), tmp_path)
    _edit_weights(folder, edit)
    with pytest.raises(CheckpointError) as err:
        PlumeModel.from_pretrained(folder)
    message = str(err.value)
    assert named in message and "\n" not in message, message


def test_a_tokenizer_without_the_plume_tokens_is_refused(authors_checkpoint, tmp_path):
    # UME-R1's tokenizer beside a PLUME adapter: nothing is added, the load is refused
    folder = _copy(authors_checkpoint(), tmp_path)
    ume = authors_checkpoint("ume")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ume / name, folder / name)
    with pytest.raises(CheckpointError, match=r"lacks the PLUME tokens \['<bot>', '<ct>', '<eot>'\]"):
        PlumeModel.from_pretrained(folder)


def test_pickle_only_weights_are_refused_by_name(authors_checkpoint, tmp_path):
    folder = _copy(authors_checkpoint(), tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"only pickle weights \['pytorch_model.bin'\]"):
        PlumeModel.from_pretrained(folder)


def test_a_baseline_folder_says_what_it_is(authors_checkpoint):
    with pytest.raises(CheckpointError, match="no latent_moe_transition"):
        PlumeModel.from_pretrained(authors_checkpoint("ume"))


def test_convert_then_reload_gives_the_same_state(authors_checkpoint, loaded, tmp_path):
    from plume_lite.apps.cli import main

    src = authors_checkpoint(sharded=True)
    assert main(["convert", str(src), str(tmp_path / "converted")]) == 0
    folder = tmp_path / "converted"
    assert {"plume_config.json", "adapter.safetensors", "backbone"} <= {p.name for p in folder.iterdir()}
    with safe_open(str(folder / "backbone" / "model.safetensors"), framework="pt") as f:
        assert not [k for k in f.keys() if MARKER in k]  # the adapter lives in adapter.safetensors
    again = PlumeModel.from_pretrained(folder)
    first = loaded[True]
    assert again.config == first.config
    a, b = first.state_dict(), again.state_dict()
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert again.token_ids == first.token_ids


def test_convert_function_and_its_refusal(authors_checkpoint, tmp_path):
    from plume_lite.released import convert_authors_checkpoint

    out = convert_authors_checkpoint(
        authors_checkpoint(), tmp_path / "c", dtype=torch.bfloat16, latent_steps=4
    )
    config = json.loads((out / "plume_config.json").read_text())
    assert config["latent_steps"] == 4 and config["positions"] == "authors"
    with pytest.raises(CheckpointError, match="not a checkpoint in the authors' released layout"):
        convert_authors_checkpoint(out, tmp_path / "d")


def test_a_hub_id_goes_through_snapshot_download(authors_checkpoint, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(authors_checkpoint())

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = PlumeModel.from_pretrained("CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B")
    assert [c[0] for c in calls] == ["CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B"]
    assert "*.bin" in calls[0][1].get("ignore_patterns", [])  # pickles are never fetched
    assert model.config.backbone == "CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B"  # the source is recorded

    def offline(repo_id, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("Cannot find the requested files in the cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="hub repository could not be fetched") as err:
        PlumeModel.from_pretrained("someone/missing-model")
    assert "\n" not in str(err.value)
