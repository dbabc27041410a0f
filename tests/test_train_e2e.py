"""End-to-end training on SynthMMEB (two small tasks, tiny backbone, CPU): the CLI,
the log and checkpoints, exact interrupt → resume, the NaN guard, one-line errors."""

import json

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("plume_lite.data.mmeb")
synth = pytest.importorskip("plume_lite.data.synth")

from plume_lite.apps import cli  # noqa: E402
from plume_lite.errors import ConfigError  # noqa: E402
from plume_lite.train.config import resolve_config  # noqa: E402
from plume_lite.train.loop import TrainingDiverged, train  # noqa: E402
from plume_lite.train.step import TrainStep  # noqa: E402

FAST = ["batch_size=8", "progress_bar=false", "latent_steps=4", "warmup_steps=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    names = [t.name for t in synth.all_tasks() if t.modality == "image"][:2]
    return synth.make_synth(tmp_path_factory.mktemp("synth"), size="tiny", seed=0, tasks=names)


class Killed(Exception):
    pass


def kill_at(step):
    def hook(record):
        if record["step"] == step:
            raise Killed

    return hook


def weights(run, step):
    return load_file(str(run / "checkpoints" / f"step_{step:08d}" / "weights.safetensors"))


def test_cli_latent_run_writes_log_checkpoints_and_a_loadable_model(data, tmp_path, capsys, monkeypatch):
    import plume_lite.train.loop as train_module

    resets, reset = [], train_module.reset_moments

    def spy(optimizer):
        inner = getattr(optimizer, "optimizer", optimizer)
        resets.append(len(inner.state))
        reset(optimizer)
        assert len(inner.state) == 0

    monkeypatch.setattr(train_module, "reset_moments", spy)
    out = tmp_path / "run"
    rc = cli.main(
        [
            "train",
            "--data",
            str(data),
            "--mode",
            "latent",
            "--out",
            str(out),
            "max_steps=8",
            "save_every=4",
            *FAST,
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "trained latent for 8 steps" in capsys.readouterr().out
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    assert [r["n_latent"] for r in log] == [0, 1, 2, 3, 4, 4, 4, 4]
    assert [r["drop_answer"] for r in log][-2:] == [True, True]
    assert len(resets) == 4 and all(n > 0 for n in resets)  # Adam moments dropped at each switch
    for key in ("total", "ce_q", "ce_c", "nce_gen", "nce_disc", "balance", "lr", "grad_norm", "task"):
        assert key in log[-1]
    assert len(log[-1]["expert_load"]) == 4 and log[-1]["router_entropy"] > 0
    assert all(len({r["task"]}) == 1 for r in log)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["step"] == 8
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000004", "step_00000008"]
    assert json.loads((out / "train_config.json").read_text())["latent_steps"] == 4
    from plume_lite.model import PlumeModel

    model = PlumeModel.from_pretrained(out / "model")
    emb = model.encode([{"text": "a red circle"}, {"text": "a blue square"}], mode="latent")
    assert emb.shape[0] == 2 and torch.isfinite(emb).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [[], ["lora=true", "precision=bf16", "freeze_vision=true"]], ids=["full", "lora-bf16"]
)
def test_interrupted_then_resumed_run_ends_with_the_same_weights(data, tmp_path, extra):
    cfg = resolve_config("tiny", mode="latent", overrides=["max_steps=7", "save_every=3", *FAST, *extra])
    train(cfg, data, tmp_path / "full")
    with pytest.raises(Killed):  # dies after step 5: steps 4-5 are redone
        train(cfg, data, tmp_path / "cut", on_step=kill_at(5))
    summary = train(cfg, data, tmp_path / "cut", resume=True)
    assert summary["resumed_from"].endswith("step_00000003") and summary["steps_this_run"] == 4
    a, b = weights(tmp_path / "full", 7), weights(tmp_path / "cut", 7)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    full_log = (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    cut_log = (tmp_path / "cut" / "log.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in lines]
    assert strip(full_log) == strip(cut_log)


def test_explicit_mode_trains_and_chunked_runs_continue(data, tmp_path):
    cfg = resolve_config("tiny", mode="explicit", overrides=["max_steps=4", "max_steps_this_run=2", *FAST])
    first = train(cfg, data, tmp_path / "run")
    assert not first["finished"] and first["step"] == 2 and first["model"] is None
    second = train(cfg, data, tmp_path / "run", resume=True)
    assert second["finished"] and second["step"] == 4 and (tmp_path / "run" / "model").is_dir()
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(cfg, data, tmp_path / "run")
    with pytest.raises(ConfigError, match="differ from the saved run"):
        train(cfg.replace(lr=1e-5), data, tmp_path / "run", resume=True)


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    calls = {"n": 0}
    forward = TrainStep.forward

    def poisoned(self, batch):
        total, parts, stats = forward(self, batch)
        calls["n"] += 1
        if calls["n"] >= 5:
            total = total * float("nan")
            parts = dict(parts, total=total)
        return total, parts, stats

    monkeypatch.setattr(TrainStep, "forward", poisoned)
    cfg = resolve_config("tiny", mode="direct", overrides=["max_steps=8", "save_every=2", *FAST])
    with pytest.raises(TrainingDiverged) as err:
        train(cfg, data, tmp_path / "run")
    msg = str(err.value)
    assert "\n" not in msg and "step 5" in msg and "step_00000004" in msg
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_00000002",
        "step_00000004",
    ]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["finished"] is False


def test_cli_config_errors_are_one_line(data, tmp_path, capsys):
    rc = cli.main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "adaptor=mlp"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "did you mean 'adapter'" in err and "\n" not in err
