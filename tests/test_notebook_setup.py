"""plume_lite.apps.notebook: profile choice, the shared training setting, and the status the
set-up cell displays (the library logs; it prints nothing)."""

import json
import logging

import pytest

from plume_lite.apps.defaults import DEFAULT_OVERRIDES
from plume_lite.apps.notebook import hub_reachable, setup
from plume_lite.errors import ConfigError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUME_CACHE", str(tmp_path))
    return tmp_path


def test_tiny_profile_uses_the_shared_overrides(cache):
    nb = setup("tiny", plot_theme=False)
    assert (nb.profile, nb.device, nb.overrides, nb.fallback) == ("tiny", "cpu", DEFAULT_OVERRIDES, "")
    assert nb.cache_root == cache


def test_setup_prints_nothing_and_its_repr_is_the_status_line(cache, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="plume_lite.apps.notebook"):
        nb = setup("tiny", plot_theme=False)
    assert capsys.readouterr().out == ""
    status = repr(nb)
    assert "profile tiny on cpu" in status and str(cache) in status and "max_steps=150" in status
    assert status in caplog.text  # and the same line goes to the log


def test_gpu_profile_falls_back_to_tiny_offline(cache, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="plume_lite.apps.notebook"):
        nb = setup("gpu-2b", plot_theme=False)
    assert nb.profile == "tiny" or nb.device == "cuda"
    if nb.profile == "tiny":
        # the student sees why: the displayed status says so, and so does a logged warning
        assert "falling back to the tiny profile" in repr(nb)
        assert "falling back to the tiny profile" in caplog.text


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ConfigError, match="PLUME_PROFILE"):
        setup("huge", plot_theme=False)


def test_hub_is_not_reachable_offline_for_an_uncached_repo(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable("plume-lite-tests/no-such-repo", "dataset") is False


def test_cached_evaluation_reads_only_finished_runs(cache):
    nb = setup("tiny", plot_theme=False)
    path = nb.evaluation_path("latent", 4)
    assert path == cache / "notebooks" / "eval-tiny-latent-K4.json"
    assert nb.cached_evaluation("latent", 4) is None
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"complete": False, "overall": {"score": 10.0}}))
    assert nb.cached_evaluation("latent", 4) is None  # an interrupted run is not a result
    path.write_text(json.dumps({"complete": True, "overall": {"score": 12.5}}))
    assert nb.cached_evaluation("latent", 4)["overall"]["score"] == 12.5


def test_elapsed_time_counts_from_setup():
    nb = setup("tiny", plot_theme=False)
    assert 0 <= nb.elapsed_s() < 60


# --- gpu-2b: the released checkpoints (issue 11 item 5), with CUDA, the hub and the
# loaders replaced by fakes that record how they were called


@pytest.fixture
def gpu_2b(cache, monkeypatch):
    """setup("gpu-2b") as on a CUDA machine that can reach the hub; returns the calls log."""
    import torch

    from plume_lite import baselines, released
    from plume_lite.apps import notebook
    from plume_lite.model import PlumeModel

    calls = {"hub": [], "resolve": [], "plume": [], "baseline": []}

    def resolve(source):
        calls["resolve"].append(source)
        folder = cache / "hub" / str(source).replace("/", "--")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
        return folder

    class FakeModel:
        def __init__(self, path, device, dtype):
            self.args, self.evaluating = (path, device, dtype), False

        def eval(self):
            self.evaluating = True
            return self

    def from_pretrained(path, device=None, dtype=None, **settings):
        calls["plume"].append((path, device, dtype))
        return FakeModel(path, device, dtype)

    def load_baseline(name, path_or_hub_id=None, **kwargs):
        calls["baseline"].append((name, path_or_hub_id, kwargs))
        return ("encoder", name)

    monkeypatch.delenv("PLUME_CHECKPOINT", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def hub_reachable(repo_id, repo_type="model"):
        calls["hub"].append(repo_id)
        return True

    monkeypatch.setattr(notebook, "hub_reachable", hub_reachable)
    monkeypatch.setattr(released, "resolve_checkpoint", resolve)
    monkeypatch.setattr(PlumeModel, "from_pretrained", staticmethod(from_pretrained))
    monkeypatch.setattr(baselines, "load_baseline", load_baseline)
    return calls


def test_gpu_profile_checks_the_released_plume_id_and_maps_each_mode_to_its_release(gpu_2b, cache):
    nb = setup("gpu-2b", plot_theme=False)
    assert (nb.profile, nb.device, nb.fallback) == ("gpu-2b", "cuda", "")
    assert gpu_2b["hub"] == ["CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B"]  # not the Qwen2-VL base
    assert nb.released == {
        "latent": "CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B",
        "explicit": "zhibinlan/UME-R1-2B",
        "direct": "VLM2Vec/VLM2Vec-V2.0",
    }
    assert gpu_2b["resolve"] == []  # nothing is fetched before a checkpoint is asked for
    assert nb.checkpoint("explicit") == cache / "hub" / "zhibinlan--UME-R1-2B"
    assert nb.checkpoint("direct") == cache / "hub" / "VLM2Vec--VLM2Vec-V2.0"
    plume = "CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B"
    assert nb.checkpoint("latent") == nb.checkpoint("latent") == cache / "hub" / plume.replace("/", "--")
    # resolved once per mode, however often it is asked for
    assert gpu_2b["resolve"] == ["zhibinlan/UME-R1-2B", "VLM2Vec/VLM2Vec-V2.0", plume]
    assert f"released checkpoints: latent {plume}, explicit zhibinlan/UME-R1-2B" in repr(nb)


def test_plume_checkpoint_replaces_the_released_plume_weights_only(gpu_2b, cache, monkeypatch):
    monkeypatch.setenv("PLUME_CHECKPOINT", "someone/PLUME-finetuned")
    nb = setup("gpu-2b", plot_theme=False)
    assert gpu_2b["hub"] == ["someone/PLUME-finetuned"]
    assert nb.released["latent"] == "someone/PLUME-finetuned"
    assert nb.released["explicit"] == "zhibinlan/UME-R1-2B"
    assert nb.checkpoint("latent") == cache / "hub" / "someone--PLUME-finetuned"


def test_gpu_profile_accepts_a_local_plume_folder_without_asking_the_hub(gpu_2b, cache, monkeypatch):
    folder = cache / "my-plume"
    folder.mkdir()
    monkeypatch.setenv("PLUME_CHECKPOINT", str(folder))
    nb = setup("gpu-2b", plot_theme=False)
    assert (nb.profile, gpu_2b["hub"]) == ("gpu-2b", [])


def test_gpu_profile_loads_plume_and_the_two_baselines_on_cuda_in_bf16(gpu_2b, cache):
    import torch

    nb = setup("gpu-2b", plot_theme=False)
    latent = nb.load("latent")
    assert latent.args == (cache / "hub" / "CUDAOUTOFMEMORY--PLUME-Qwen2-VL-2B", "cuda", torch.bfloat16)
    assert latent.evaluating
    assert nb.load("explicit") == ("encoder", "ume_r1")
    assert nb.load("direct") == ("encoder", "vlm2vec")
    assert gpu_2b["baseline"] == [
        ("ume_r1", cache / "hub" / "zhibinlan--UME-R1-2B", {"device": "cuda", "dtype": torch.bfloat16}),
        ("vlm2vec", cache / "hub" / "VLM2Vec--VLM2Vec-V2.0", {"device": "cuda", "dtype": torch.bfloat16}),
    ]
    assert len(gpu_2b["plume"]) == 1  # the baselines never go through PlumeModel


def test_released_checkpoints_have_no_training_log_and_nothing_is_fetched_for_it(gpu_2b):
    nb = setup("gpu-2b", plot_theme=False)
    assert [nb.training_log(m) for m in ("latent", "explicit", "direct")] == [None, None, None]
    assert gpu_2b["resolve"] == []


def test_gpu_profile_refuses_an_unknown_mode(gpu_2b):
    nb = setup("gpu-2b", plot_theme=False)
    with pytest.raises(ConfigError, match="mode must be one of latent, explicit, direct, got 'fast'"):
        nb.checkpoint("fast")
    with pytest.raises(ConfigError, match="got 'fast'"):
        nb.training_log("fast")


def test_gpu_profile_evaluation_reuses_a_saved_result_of_the_released_folder(gpu_2b):
    # the cache key names the resolved folder's files (checkpoint_fingerprint), so a
    # saved evaluation is found without loading the 2B model again
    from plume_lite.evaluation.index import checkpoint_fingerprint, setting_key

    nb = setup("gpu-2b", plot_theme=False)
    nb._tasks = []  # no task data needed for the cache check
    key = setting_key(checkpoint_fingerprint(nb.checkpoint("explicit")), "explicit", None)
    path = nb.evaluation_path("explicit")
    assert path.name == "eval-gpu-2b-explicit-KNone.json"
    path.parent.mkdir(parents=True)
    saved = {"complete": True, "setting": {"key": key}, "tasks": {}, "overall": {"score": 7.5}}
    path.write_text(json.dumps(saved))
    assert nb.evaluate("explicit", progress=False)["overall"]["score"] == 7.5
    assert gpu_2b["baseline"] == []  # not loaded


def test_gpu_profile_without_the_released_plume_falls_back_to_tiny(gpu_2b, monkeypatch):
    from plume_lite.apps import notebook

    monkeypatch.setattr(notebook, "hub_reachable", lambda repo_id, repo_type="model": False)
    nb = setup("gpu-2b", plot_theme=False)
    assert (nb.profile, nb.device, nb.released, nb.overrides) == ("tiny", "cpu", {}, DEFAULT_OVERRIDES)
    assert "needs a CUDA GPU and CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B" in nb.fallback


def test_tiny_profile_ignores_plume_checkpoint_and_keeps_its_shipped_checkpoints(gpu_2b, monkeypatch):
    from plume_lite.apps.defaults import SHIPPED

    monkeypatch.setenv("PLUME_CHECKPOINT", "someone/PLUME-finetuned")
    nb = setup("tiny", plot_theme=False)
    assert nb.released == {}
    assert nb.checkpoint("latent") == SHIPPED / "tiny-latent"
    assert nb.training_log("direct") == SHIPPED / "tiny-direct" / "log.jsonl"
    model = nb.load("explicit")
    assert model.args == (SHIPPED / "tiny-explicit", "cpu", None)
    assert gpu_2b["resolve"] == [] and gpu_2b["baseline"] == [] and gpu_2b["hub"] == []
