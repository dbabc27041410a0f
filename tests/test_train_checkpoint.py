"""Checkpoints: lossless safetensors+JSON state, exact RNG/optimizer restore, and a
half-written folder is never picked up by a resume."""

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from plume_lite.errors import CheckpointError
from plume_lite.io import sha256_file
from plume_lite.train.checkpoint import (
    LEGACY_FORMATS,
    clean_checkpoint_leftovers,
    flatten,
    foreign_entries,
    is_complete,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    resume_point,
    rng_state,
    save_checkpoint,
    unflatten,
    verify_checkpoint,
)


def small():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model[0].bias.requires_grad_(False)  # a frozen parameter
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return model, opt, sched


def step(model, opt, sched, n=3):
    for _ in range(n):
        loss = model(torch.randn(5, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()


def test_flatten_round_trips_optimizer_state_without_pickle():
    model, opt, sched = small()
    step(model, opt, sched)
    tensors = {}
    encoded = flatten(opt.state_dict(), tensors)
    json.dumps(encoded)  # plain JSON
    back = unflatten(json.loads(json.dumps(encoded)), tensors)
    orig = opt.state_dict()
    assert back["param_groups"] == orig["param_groups"]  # tuples (betas) and ints kept
    assert set(back["state"]) == set(orig["state"]) and all(isinstance(k, int) for k in back["state"])
    for k, v in orig["state"].items():
        for name, t in v.items():
            assert torch.equal(back["state"][k][name], t)


def test_save_load_restores_training_exactly(tmp_path):
    model, opt, sched = small()
    step(model, opt, sched)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    save_checkpoint(tmp_path, 3, model, opt, sched, {"sampler": {"cursor": 7}}, [rng_state()])
    step(model, opt, sched, 2)  # the reference continuation
    expect = [p.detach().clone() for p in model.parameters()]

    model2, opt2, sched2 = small()
    state = load_checkpoint(latest_checkpoint(tmp_path), model2, opt2, sched2)
    assert state["step"] == 3 and state["sampler"] == {"cursor": 7}
    step(model2, opt2, sched2, 2)  # restored RNG draws the same inputs
    for a, b in zip(model2.parameters(), expect):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_rng_state_is_restored(tmp_path):
    model, opt, sched = small()
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    save_checkpoint(tmp_path, 1, model, opt, sched, {}, [rng_state()])
    draws = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    load_checkpoint(tmp_path / "step_00000001", *small())
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == draws


def test_half_written_or_tampered_checkpoints_are_not_trusted(tmp_path):
    model, opt, sched = small()
    for s in (1, 2, 3):
        save_checkpoint(tmp_path, s, model, opt, sched, {}, [rng_state()])
    # a killed writer leaves only a hidden temporary folder
    (tmp_path / ".step_00000004.abc.tmp").mkdir()
    (tmp_path / ".step_00000004.abc.tmp" / "weights.safetensors").write_bytes(b"partial")
    # a folder whose file was truncated after the fact
    (tmp_path / "step_00000003" / "optimizer.safetensors").write_bytes(b"x")
    # a folder without its manifest
    (tmp_path / "step_00000005").mkdir()
    assert not is_complete(tmp_path / "step_00000003")
    assert latest_checkpoint(tmp_path).name == "step_00000002"
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "step_00000003", *small())
    prune_checkpoints(tmp_path, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002"]


def test_changed_frozen_weights_or_parameter_set_are_refused(tmp_path):
    model, opt, sched = small()
    save_checkpoint(tmp_path, 1, model, opt, sched, {}, [rng_state()])
    other, o2, s2 = small()
    with torch.no_grad():
        other[0].bias += 1.0  # frozen base differs
    with pytest.raises(CheckpointError, match="frozen base weights differ"):
        load_checkpoint(tmp_path / "step_00000001", other, o2, s2)
    other, o2, s2 = small()
    other[2].bias.requires_grad_(False)
    with pytest.raises(CheckpointError, match="trainable parameters differ"):
        load_checkpoint(tmp_path / "step_00000001", other, o2, s2)


def test_a_file_corrupted_in_place_fails_its_checksum_and_resume_falls_back(tmp_path):
    model, opt, sched = small()
    for s in (1, 2):
        save_checkpoint(tmp_path, s, model, opt, sched, {}, [rng_state()])
    manifest = json.loads((tmp_path / "step_00000002" / "manifest.json").read_text())
    assert manifest["sha256"]["weights.safetensors"] == sha256_file(
        tmp_path / "step_00000002" / "weights.safetensors"
    )
    path = tmp_path / "step_00000002" / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-4:] = bytes(255 - b for b in data[-4:])  # same size: sizes cannot tell
    path.write_bytes(bytes(data))
    assert is_complete(tmp_path / "step_00000002")
    with pytest.raises(CheckpointError, match="weights.safetensors fails its sha256 check"):
        load_checkpoint(tmp_path / "step_00000002", *small())
    found, note = resume_point(tmp_path)
    assert found.name == "step_00000001" and "step_00000002" in note and "\n" not in note
    (tmp_path / "step_00000001" / "state.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no checkpoint .* can be resumed"):
        resume_point(tmp_path)


def test_legacy_checkpoints_resume_with_a_note_and_foreign_folders_are_named(tmp_path):
    model, opt, sched = small()
    path = save_checkpoint(tmp_path, 1, model, opt, sched, {}, [rng_state()])
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["sha256"]
    manifest["format"] = LEGACY_FORMATS[0]
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert "without checksums" in verify_checkpoint(path)
    assert foreign_entries(tmp_path) == []
    (tmp_path / "step_00000002").mkdir()
    (tmp_path / "step_00000002" / "pytorch_model.bin").write_bytes(b"x")  # another tool's
    (tmp_path / "checkpoint-500").mkdir()
    assert foreign_entries(tmp_path) == ["checkpoint-500", "step_00000002"]


def test_pruning_and_killed_writes_leave_only_hidden_leftovers_that_are_cleaned(tmp_path):
    model, opt, sched = small()
    for s in (1, 2, 3):
        save_checkpoint(tmp_path, s, model, opt, sched, {}, [rng_state()])
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002", "step_00000003"]
    (tmp_path / ".step_00000004.abcd1234.tmp").mkdir()  # killed mid-write
    (tmp_path / ".step_00000001.abcd1234.tmp").mkdir()  # killed mid-prune
    (tmp_path / "step_00000003").rename(tmp_path / ".step_00000003.old")  # killed mid-swap
    (tmp_path / ".unrelated.tmp").write_text("not ours")  # hidden: never written over
    assert foreign_entries(tmp_path) == []
    cleaned = clean_checkpoint_leftovers(tmp_path)
    assert len(cleaned) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".unrelated.tmp", "step_00000002", "step_00000003"]
    verify_checkpoint(tmp_path / "step_00000003")
