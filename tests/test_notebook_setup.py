"""plume_lite.apps.notebook: profile choice and the shared training setting."""
import pytest

from plume_lite.errors import ConfigError
from plume_lite.apps.notebook import setup
from plume_lite.apps.defaults import DEFAULT_OVERRIDES


def test_tiny_profile_uses_the_shared_overrides(capsys):
    nb = setup("tiny")
    assert (nb.profile, nb.device, nb.overrides) == ("tiny", "cpu", DEFAULT_OVERRIDES)
    assert "profile tiny" in capsys.readouterr().out


def test_gpu_profile_falls_back_to_tiny_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = setup("gpu-2b")
    assert nb.profile == "tiny" or nb.device == "cuda"
    if nb.profile == "tiny":
        assert "falling back to the tiny profile" in capsys.readouterr().out


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ConfigError, match="PLUME_PROFILE"):
        setup("huge")
