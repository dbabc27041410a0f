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
