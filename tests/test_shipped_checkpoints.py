"""The tiny checkpoints shipped in plume_lite/apps/checkpoints/ load, carry their recipe,
and pass their quality gate again here: the score recorded when they were made is
reproduced by evaluating them now, and it is above the gate (random embeddings: 9.7)."""

import json

import pytest

from plume_lite.apps.defaults import (
    DEFAULT_OVERRIDES,
    GATE_MIN_SCORE,
    default_checkpoint,
    gate_score,
    shipped_checkpoint,
)
from plume_lite.config import MODES
from plume_lite.model import PlumeModel


@pytest.mark.parametrize("mode", MODES)
def test_shipped_checkpoint_loads_and_states_its_recipe(mode):
    folder = shipped_checkpoint(mode)
    assert folder is not None, f"no shipped tiny-{mode} checkpoint"
    record = json.loads((folder / "shipped.json").read_text())
    assert record["mode"] == mode and record["overrides"] == list(DEFAULT_OVERRIDES)
    assert record["command"] == "python -m plume_lite.apps.defaults" and record["seed"] == 0
    steps = [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 150  # its training log ships with it
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 20 * 2**20
    model = PlumeModel.from_pretrained(folder)
    assert model.encode(["a red circle"]).shape[0] == 1
    assert default_checkpoint(mode) == folder  # the default recipe uses it, no training


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_shipped_checkpoint_passes_its_gate_again(mode):
    folder = shipped_checkpoint(mode)
    recorded = json.loads((folder / "shipped.json").read_text())["gate"]["score"]
    score = gate_score(folder, mode)
    assert score >= GATE_MIN_SCORE
    assert score == pytest.approx(recorded, abs=0.05)


def test_another_recipe_is_not_served_by_the_shipped_checkpoint(tmp_path, monkeypatch):
    import plume_lite.train.loop as loop

    calls = []
    monkeypatch.setattr(loop, "train", lambda config, data, run, resume=False: calls.append(config.max_steps))
    monkeypatch.setenv("PLUME_CACHE", str(tmp_path))
    default_checkpoint("latent", overrides=("max_steps=3",))
    assert calls == [3]
