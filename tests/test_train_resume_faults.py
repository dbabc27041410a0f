"""Faults around a training run's folder: resume refuses what it cannot continue (a
foreign folder, another tool's checkpoints, unverifiable checkpoints, a damaged log)
instead of restarting over it; a checkpoint corrupted in place is caught by its sha256
and the previous verified one is used, said in one line; a torn last log line is
repaired; leftovers of killed runs are removed; a second run on a locked folder fails at
once. Small direct-mode runs on SynthMMEB tiny (a few steps each)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("plume_lite.data.mmeb")
synth = pytest.importorskip("plume_lite.data.synth")

from plume_lite.errors import CheckpointError, ConfigError, PlumeError  # noqa: E402
from plume_lite.io import FolderLocked, folder_lock  # noqa: E402
from plume_lite.train.config import resolve_config  # noqa: E402
from plume_lite.train.loop import LOCK, train  # noqa: E402

FAST = ["batch_size=8", "progress_bar=false", "latent_steps=4", "warmup_steps=2", "train_limit=16"]
# 6 steps in all; the base run stops after 4 with checkpoints at steps 2 and 4
CFG = resolve_config(
    "tiny",
    mode="direct",
    overrides=["max_steps=6", "save_every=2", "keep_checkpoints=2", "max_steps_this_run=4", *FAST],
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    names = [t.name for t in synth.all_tasks() if t.modality == "image"][:2]
    return synth.make_synth(tmp_path_factory.mktemp("synth"), size="tiny", seed=0, tasks=names)


@pytest.fixture(scope="module")
def base_run(data, tmp_path_factory):
    """A run stopped after step 4 of 6: checkpoints step 2 and step 4, log steps 1-4."""
    out = tmp_path_factory.mktemp("base") / "run"
    train(CFG, data, out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    return out


@pytest.fixture
def run(base_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    return out


def steps(out):
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


def snapshot(folder):
    """{relative path: bytes} of every file but the lock's (it holds the last holder's pid):
    proves a refused run changed nothing."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and p.name != LOCK
    }


def one_line(err):
    msg = str(err.value)
    assert "\n" not in msg and msg, msg
    return msg


# ------------------------------------------------------------------ foreign folders
def test_resume_refuses_a_folder_that_is_not_a_training_run(data, tmp_path, tiny_model):
    other = tmp_path / "model_folder"
    tiny_model.save_pretrained(other)  # another format: a PlumeModel folder
    (other / "log.jsonl").write_text("their log\n")
    before = snapshot(other)
    with pytest.raises(ConfigError) as err:
        train(CFG, data, other, resume=True)
    assert "no train_config.json" in one_line(err) and str(other) in str(err.value)
    with pytest.raises(ConfigError, match="not written by a plume_lite training run"):
        train(CFG, data, other)  # a fresh run would delete their log
    assert snapshot(other) == before and not (other / LOCK).exists()
    with pytest.raises(ConfigError, match="does not exist"):
        train(CFG, data, tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()


def test_another_tools_checkpoints_are_never_overwritten(data, run):
    foreign = run / "checkpoints" / "step_00000006"  # would be replaced at step 6
    foreign.mkdir()
    (foreign / "pytorch_model.bin").write_bytes(b"their weights")
    (run / "checkpoints" / "checkpoint-500").mkdir()
    before = snapshot(run)
    with pytest.raises(ConfigError) as err:
        train(CFG, data, run, resume=True)
    msg = one_line(err)
    assert "checkpoint-500" in msg and "step_00000006" in msg and "did not write" in msg
    with pytest.raises(ConfigError):
        train(CFG, data, run)
    assert snapshot(run) == before


def test_an_unreadable_train_config_is_refused_naming_it(data, run):
    (run / "train_config.json").write_text('{"mode": ')
    with pytest.raises(ConfigError) as err:
        train(CFG, data, run, resume=True)
    assert "train_config.json: not valid JSON" in one_line(err)


# ------------------------------------------------------------------ corrupted in place
def corrupt(path):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(255 - b for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))  # same size: only a checksum sees it


def test_a_checkpoint_corrupted_in_place_falls_back_to_the_previous_verified_one(data, run):
    file = run / "checkpoints" / "step_00000004" / "weights.safetensors"
    original = {k: v.clone() for k, v in load_file(str(file)).items()}  # not views of the file
    original_bytes = file.read_bytes()
    corrupt(file)
    summary = train(CFG.replace(max_steps_this_run=2), data, run, resume=True)
    note = summary["resume_note"]
    assert "\n" not in note and "step_00000004" in note and "sha256" in note
    assert "resuming from the previous verified checkpoint step_00000002" in note
    assert summary["resumed_from"].endswith("step_00000002") and summary["step"] == 4
    again = load_file(str(file))
    assert original.keys() == again.keys()
    for k in original:  # steps 3-4 redone bit for bit
        assert torch.equal(original[k], again[k]), k
    assert file.read_bytes() == original_bytes
    assert steps(run) == [1, 2, 3, 4]


def test_resume_refuses_when_no_checkpoint_verifies(data, run):
    for step in ("step_00000002", "step_00000004"):
        corrupt(run / "checkpoints" / step / "optimizer.safetensors")
    before = snapshot(run)
    with pytest.raises(CheckpointError) as err:
        train(CFG, data, run, resume=True)
    msg = one_line(err)
    assert "no checkpoint" in msg and "step_00000004" in msg and "step_00000002" in msg
    assert snapshot(run) == before  # nothing restarted, nothing deleted


# ------------------------------------------------------------------ the log
def test_a_torn_last_log_line_is_dropped_and_the_rest_kept(data, run):
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 5, "stage": 0, "to')  # killed mid-append
    summary = train(CFG.replace(max_steps_this_run=1), data, run, resume=True)
    assert "torn last line" in summary["resume_note"]
    assert summary["resumed_from"].endswith("step_00000004")
    assert steps(run) == [1, 2, 3, 4, 5]


def test_a_corrupted_middle_of_the_log_is_refused(data, run):
    lines = (run / "log.jsonl").read_text().splitlines()
    lines[1] = "#garbage#"
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    before = snapshot(run)
    with pytest.raises(CheckpointError) as err:
        train(CFG, data, run, resume=True)
    assert "log.jsonl: line 2 of 4" in one_line(err)
    assert snapshot(run) == before


# ------------------------------------------------------------------ leftovers of killed runs
def test_leftovers_of_killed_runs_are_removed_and_a_half_swapped_checkpoint_restored(data, run):
    ck = run / "checkpoints"
    (ck / ".step_00000006.k1ll3d00.tmp").mkdir()  # killed while writing
    (ck / ".step_00000006.k1ll3d00.tmp" / "weights.safetensors").write_bytes(b"partial")
    (ck / ".step_00000000.h4lfpr0n.tmp").mkdir()  # killed while pruning
    (run / ".model.k1ll3d01.tmp").mkdir()  # killed while saving the model
    (run / ".log.jsonl.k1ll3d02.tmp").write_text("partial")  # killed in atomic_write_text
    os.replace(ck / "step_00000004", ck / ".step_00000004.old")  # killed between the renames
    (ck / ".step_00000004.k1ll3d03.tmp").mkdir()  # ... of atomic_dir
    (run / "notes.txt").write_text("mine")  # not ours: left alone
    (run / ".notes.tmp").write_text("mine")
    summary = train(CFG.replace(max_steps_this_run=1), data, run, resume=True)
    assert summary["resumed_from"].endswith("step_00000004")  # the previous version is back
    assert sorted(p.name for p in ck.iterdir()) == ["step_00000004", "step_00000005"]
    hidden = sorted(p.name for p in run.iterdir() if p.name.startswith("."))
    assert hidden == [".notes.tmp", LOCK]
    assert (run / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------ one run per folder
def test_a_second_run_on_a_locked_folder_fails_at_once(data, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom plume_lite.io import folder_lock\n"
            f"with folder_lock({str(out)!r}, {LOCK!r}):\n"
            "    print('locked', flush=True)\n    time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        with pytest.raises(FolderLocked) as err:
            train(CFG, data, out)
        assert time.perf_counter() - t0 < 5.0
        msg = one_line(err)
        assert isinstance(err.value, PlumeError)
        assert str(out) in msg and f"pid {holder.pid}" in msg
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing was written
    finally:
        holder.send_signal(signal.SIGKILL)  # the OS releases the lock
        holder.wait()
    with folder_lock(out, LOCK):  # free again after a kill -9
        pass
