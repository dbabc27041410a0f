"""What the numbered notebooks share: the profile, the device, the trained checkpoints
and their cached evaluations, so every notebook trains and scores each one only once.

    nb = setup()                 # reads $PLUME_PROFILE: tiny (default) or gpu-2b
    model = nb.load("latent")    # trained on first use, then reused from the cache folder
    result = nb.evaluate("latent", steps=4)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from plume_lite.apps.defaults import DEFAULT_OVERRIDES, default_checkpoint, default_data
from plume_lite.runtime import cache_root, configure_threads

PROFILES = ("tiny", "gpu-2b")


def hub_reachable(repo_id: str, repo_type: str = "model") -> bool:
    """True when repo_id is in the local Hugging Face cache or the hub answers (5 s timeout)."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    probe = "README.md" if repo_type == "dataset" else "config.json"
    if isinstance(try_to_load_from_cache(repo_id, probe, repo_type=repo_type), str):
        return True
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        (HfApi().dataset_info if repo_type == "dataset" else HfApi().model_info)(repo_id, timeout=5)
        return True
    except Exception:   # offline, DNS failure, gated repo: all mean "not reachable"
        return False


@dataclass
class NotebookSetup:
    profile: str
    device: str
    dtype: torch.dtype | None
    overrides: tuple              # training overrides shared by notebooks 00-05
    _tasks: list | None = field(default=None, repr=False)

    def checkpoint(self, mode: str) -> Path:
        return default_checkpoint(mode, self.profile, self.overrides)

    def load(self, mode: str):
        """The notebooks' trained checkpoint of `mode` (trained here if the cache lacks it)."""
        from plume_lite.model import PlumeModel
        return PlumeModel.from_pretrained(self.checkpoint(mode), device=self.device, dtype=self.dtype).eval()

    def tasks(self) -> list:
        """SynthMMEB's test tasks (loaded once)."""
        if self._tasks is None:
            from plume_lite.data import load_eval_tasks
            self._tasks = load_eval_tasks(default_data())
        return self._tasks

    def evaluate(self, mode: str, steps=None, model=None) -> dict:
        """evaluate() of the shared `mode` checkpoint on every SynthMMEB task; results are
        written under the cache folder and reused by the other notebooks."""
        from plume_lite.evaluation.protocol import evaluate
        from plume_lite.evaluation.index import checkpoint_fingerprint
        path = self.checkpoint(mode)
        model = model if model is not None else self.load(mode)
        out = cache_root() / "notebooks" / f"eval-{self.profile}-{mode}-K{steps}.json"
        return evaluate(model, self.tasks(), mode=mode, steps=steps, out=out, progress=False,
                        checkpoint_id=checkpoint_fingerprint(path))


def setup(profile: str | None = None) -> NotebookSetup:
    """Pick the profile ($PLUME_PROFILE), falling back to tiny without a GPU or the hub."""
    from plume_lite.errors import ConfigError
    from plume_lite.train.config import PROFILES as TRAIN_PROFILES

    profile = profile or os.environ.get("PLUME_PROFILE", "tiny")
    if profile not in PROFILES:
        raise ConfigError(f"PLUME_PROFILE must be 'tiny' or 'gpu-2b', got {profile!r}")
    if profile == "gpu-2b":
        hub_id = TRAIN_PROFILES["gpu-2b"]["backbone"]
        gpu, hub = torch.cuda.is_available(), hub_reachable(hub_id)
        if not (gpu and hub):
            print(f"PLUME_PROFILE=gpu-2b needs a CUDA GPU and {hub_id} from the Hugging Face hub "
                  f"(GPU: {gpu}, hub or local copy: {hub}); falling back to the tiny profile.")
            profile = "tiny"
    if profile == "tiny":
        configure_threads()        # the tiny model's kernels gain nothing from more threads
    nb = NotebookSetup(profile=profile, device="cuda" if profile == "gpu-2b" else "cpu",
                       dtype=torch.bfloat16 if profile == "gpu-2b" else None,
                       overrides=DEFAULT_OVERRIDES if profile == "tiny" else ())
    print(f"profile {nb.profile} on {nb.device}; cache folder {cache_root()}; "
          f"shared overrides {nb.overrides}")
    return nb
