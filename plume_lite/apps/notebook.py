"""What the numbered notebooks share: the profile, the device, the trained checkpoints
and their cached evaluations, so every notebook trains and scores each one only once.

    NB = setup()                 # reads $PLUME_PROFILE: tiny (default) or gpu-2b
    NB                           # as a cell's last expression: profile, device, cache folder
    model = NB.load("latent")    # trained on first use, then reused from the cache folder
    result = NB.evaluate("latent", steps=4)

The status goes to `logging` (this module's logger) and into the set-up object's repr,
so a notebook shows it by displaying `NB`, and scripts and tests print nothing.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from plume_lite import runtime
from plume_lite.apps.defaults import DEFAULT_OVERRIDES, default_checkpoint
from plume_lite.data.synth import default_data

log = logging.getLogger(__name__)

PROFILES = ("tiny", "gpu-2b")


def hub_reachable(repo_id: str, repo_type: str = "model") -> bool:
    """Whether a Hugging Face repository can be used from here.

    Args:
        repo_id: e.g. ``"Qwen/Qwen2-VL-2B-Instruct"`` or ``"TIGER-Lab/MMEB-train"``.
        repo_type: ``"model"`` or ``"dataset"``.

    Returns:
        True when the repository is in the local Hugging Face cache, or when
        HF_HUB_OFFLINE is not set and the hub answers within 5 s; False otherwise.

    Example:
        >>> hub_reachable("TIGER-Lab/MMEB-train", "dataset")    # False offline
    """
    from huggingface_hub import HfApi, try_to_load_from_cache

    probe = "README.md" if repo_type == "dataset" else "config.json"
    if isinstance(try_to_load_from_cache(repo_id, probe, repo_type=repo_type), str):
        return True
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        (HfApi().dataset_info if repo_type == "dataset" else HfApi().model_info)(repo_id, timeout=5)
        return True
    except Exception:  # offline, DNS failure, gated repo: all mean "not reachable"
        return False


@dataclass(repr=False)  # the repr is the status line a notebook displays
class NotebookSetup:
    """The notebooks' shared setting, made by `setup()`.

    Attributes:
        profile: ``"tiny"`` or ``"gpu-2b"`` (the one actually used).
        device: ``"cpu"`` or ``"cuda"``.
        dtype: dtype the checkpoints are loaded in (None: as saved).
        overrides: training overrides every notebook shares, so each checkpoint is
            trained once per cache folder.
        fallback: why the profile asked for was not used ("" when it was).
        started: `time.perf_counter()` at set-up, for `elapsed_s`.
    """

    profile: str
    device: str
    dtype: torch.dtype | None
    overrides: tuple
    fallback: str = ""
    started: float = field(default_factory=time.perf_counter)
    _tasks: list | None = field(default=None)

    def __repr__(self) -> str:
        overrides = ", ".join(self.overrides) or "none"
        status = (
            f"profile {self.profile} on {self.device}, torch threads: {torch.get_num_threads()}; "
            f"cache folder {self.cache_root}; shared training overrides: {overrides}"
        )
        return f"{self.fallback}\n{status}" if self.fallback else status

    @property
    def cache_root(self) -> Path:
        """The cache folder holding the shared data, checkpoints and evaluations
        (plume_lite.runtime.cache_root: $PLUME_CACHE, else `.cache/` of the checkout)."""
        return runtime.cache_root()

    def elapsed_s(self) -> float:
        """Seconds since `setup()`: a notebook's run time, printed in its last cell.

        Returns:
            Wall-clock seconds as a float.

        Example:
            >>> print(f"this notebook ran in {NB.elapsed_s():.0f} s")
        """
        return time.perf_counter() - self.started

    def data(self) -> Path:
        """The SynthMMEB folder every notebook uses (generated once into the cache folder).

        Returns:
            Path of the data folder (`plume_lite.data.synth.default_data()`).

        Example:
            >>> pairs = load_train_pairs(NB.data(), limit=1)
        """
        return default_data()

    def checkpoint(self, mode: str) -> Path:
        """The folder of the notebooks' trained checkpoint of `mode`, trained if absent.

        Args:
            mode: ``"latent"`` (PLUME), ``"explicit"`` or ``"direct"``.

        Returns:
            The model folder (its training log: `training_log(mode)`).

        Example:
            >>> model_dir = NB.checkpoint("latent")
        """
        return default_checkpoint(mode, self.profile, self.overrides)

    def training_log(self, mode: str) -> Path:
        """The `log.jsonl` of the training run that made `checkpoint(mode)`: inside a
        shipped checkpoint's folder, or beside the model folder of a run in the cache.

        Example:
            >>> records = viz.read_log(NB.training_log("latent"))
        """
        folder = self.checkpoint(mode)
        inside = folder / "log.jsonl"
        return inside if inside.exists() else folder.parent / "log.jsonl"

    def load(self, mode: str):
        """The notebooks' trained checkpoint of `mode` on this profile's device.

        Args:
            mode: ``"latent"``, ``"explicit"`` or ``"direct"``.

        Returns:
            A PlumeModel in eval mode (trained here first if the cache lacks it).

        Example:
            >>> model = NB.load("latent")
        """
        from plume_lite.model import PlumeModel

        return PlumeModel.from_pretrained(self.checkpoint(mode), device=self.device, dtype=self.dtype).eval()

    def checkpoint_scores(self, run_dir, tasks, steps: int | None = None) -> list[dict]:
        """Score every training checkpoint a run kept (`save_every`, `keep_checkpoints`)
        on `tasks`, in the run's own mode: the score along training, e.g. per stage.

        The run's final `model/` gives the architecture; each checkpoint's trainable
        weights are copied into it in turn. Scored without an embedding cache
        (`plume_lite.evaluation.under_intervention.score_under`), so keep `tasks` small.

        Args:
            run_dir: a finished `train` run folder.
            tasks: EvalTasks to score.
            steps: latent steps at inference (None: the run's K).

        Returns:
            Rows {"step", "stage", "n_latent", "drop_answer", <task name>: score, ...,
            "mean"}, in step order.

        Example:
            >>> rows = NB.checkpoint_scores(live_dir, NB.tasks()[:2])
        """
        import json

        from safetensors.torch import load_file

        from plume_lite.errors import InputError
        from plume_lite.evaluation.under_intervention import score_under
        from plume_lite.model import PlumeModel
        from plume_lite.train.checkpoint import list_checkpoints

        run_dir = Path(run_dir)
        if not (run_dir / "model" / "plume_config.json").exists():
            raise InputError(f"{run_dir} is not a finished training run (no model/ folder)")
        model = PlumeModel.from_pretrained(run_dir / "model", device=self.device, dtype=self.dtype).eval()
        params = dict(model.named_parameters())
        rows = []
        for folder in list_checkpoints(run_dir / "checkpoints"):
            state = json.loads((folder / "state.json").read_text())
            with torch.no_grad():
                for name, value in load_file(str(folder / "weights.safetensors")).items():
                    params[name].copy_(value)
            rows.append(
                {
                    "step": state["step"],
                    "stage": state["stage_index"],
                    "n_latent": state["stage"]["n_latent"],
                    "drop_answer": state["stage"]["drop_answer"],
                    **score_under(model, tasks, mode=state["mode"], steps=steps),
                }
            )
        return rows

    def tasks(self) -> list:
        """SynthMMEB's test tasks, loaded once per set-up.

        Returns:
            A list of EvalTask.

        Example:
            >>> names = [t.name for t in NB.tasks()]
        """
        if self._tasks is None:
            from plume_lite.data import load_eval_tasks

            self._tasks = load_eval_tasks(self.data())
        return self._tasks

    def evaluation_path(self, mode: str, steps: int | None = None) -> Path:
        """Where `evaluate(mode, steps)` keeps its results JSON in the cache folder.

        Args:
            mode: the encode mode.
            steps: latent steps (None: the checkpoint's own K).

        Returns:
            ``<cache>/notebooks/eval-<profile>-<mode>-K<steps>.json``.

        Example:
            >>> NB.evaluation_path("latent", 4).name
            'eval-tiny-latent-K4.json'
        """
        return self.cache_root / "notebooks" / f"eval-{self.profile}-{mode}-K{steps}.json"

    def cached_evaluation(self, mode: str, steps: int | None = None) -> dict | None:
        """A finished evaluation that an earlier `evaluate` call left in the cache folder.

        Args:
            mode: the encode mode.
            steps: latent steps (None: the checkpoint's own K).

        Returns:
            The results dict of `plume_lite.evaluation.protocol.evaluate`, or None when
            that evaluation has not been run to the end.

        Example:
            >>> saved = NB.cached_evaluation("latent", steps=4)
            >>> saved and saved["overall"]["score"]
        """
        import json

        path = self.evaluation_path(mode, steps)
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        return saved if saved.get("complete") else None

    def evaluate(self, mode: str, steps: int | None = None, model=None, progress: bool = True) -> dict:
        """Score the shared `mode` checkpoint on every SynthMMEB test task, once.

        Results are written to `evaluation_path(mode, steps)` and reused by every later
        call (from any notebook) for the same checkpoint, setting and task data: then
        neither the model is loaded nor anything scored. A fresh evaluation embeds the
        tasks one by one under a progress bar (tqdm.auto: a widget in a notebook), into
        the evaluation's embedding cache, and then scores them all from that cache.

        Args:
            mode: ``"latent"``, ``"explicit"`` or ``"direct"``.
            steps: latent steps at inference (None: the checkpoint's own K).
            model: the already loaded checkpoint, to skip loading it again.
            progress: show the bar over tasks (it is removed when the evaluation is done).

        Returns:
            The results dict of `plume_lite.evaluation.protocol.evaluate`
            (``overall``, ``modalities``, ``reasoning``, ``tasks`` with per-query rows).

        Example:
            >>> NB.evaluate("latent", steps=4)["overall"]["score"]
        """
        from plume_lite.evaluation.index import checkpoint_fingerprint, setting_key
        from plume_lite.evaluation.protocol import evaluate, task_fingerprint

        checkpoint_id = checkpoint_fingerprint(self.checkpoint(mode))
        out, tasks = self.evaluation_path(mode, steps), self.tasks()
        saved = self.cached_evaluation(mode, steps)
        if (
            saved is not None
            and saved.get("setting", {}).get("key") == setting_key(checkpoint_id, mode, steps)
            and {n: r.get("fingerprint") for n, r in saved.get("tasks", {}).items()}
            == {t.name: task_fingerprint(t) for t in tasks}
        ):
            return saved
        model = model if model is not None else self.load(mode)
        if progress:
            from tqdm.auto import tqdm

            # protocol.evaluate has no bar of its own: embed task by task into the disk
            # cache it reads below (its cache_dir="auto" folder), then score them all
            emb_cache = out.with_name(out.stem + ".work") / "emb"
            label = f"evaluate {mode}" + ("" if steps is None else f", K={steps}")
            bar = tqdm(tasks, desc=label, unit="task", leave=False)
            for task in bar:
                bar.set_postfix_str(task.name, refresh=True)
                evaluate(
                    model,
                    [task],
                    mode=mode,
                    steps=steps,
                    progress=False,
                    checkpoint_id=checkpoint_id,
                    cache_dir=emb_cache,
                    keep_per_query=False,
                )
        return evaluate(
            model,
            tasks,
            mode=mode,
            steps=steps,
            out=out,
            progress=False,
            checkpoint_id=checkpoint_id,
        )


def setup(profile: str | None = None, plot_theme: bool = True) -> NotebookSetup:
    """Pick the notebooks' profile, device and shared training setting.

    The gpu-2b profile falls back to tiny, saying why in the returned object's repr and
    in a logged warning, when there is no CUDA GPU or the backbone is neither in the
    local Hugging Face cache nor reachable on the hub. The tiny profile uses
    `runtime.configure_threads()` (one thread unless $PLUME_THREADS says otherwise).

    Args:
        profile: ``"tiny"`` or ``"gpu-2b"``; None reads $PLUME_PROFILE (default tiny).
        plot_theme: apply the notebooks' seaborn theme (white grid).

    Returns:
        A NotebookSetup; display it (a cell's last expression) to show the status line.

    Raises:
        ConfigError: for a profile other than tiny or gpu-2b.

    Example:
        >>> NB = setup()
        >>> NB
        profile tiny on cpu, torch threads: 1; cache folder ...; shared training overrides: max_steps=150
    """
    from plume_lite.errors import ConfigError
    from plume_lite.train.config import PROFILES as TRAIN_PROFILES

    profile = profile or os.environ.get("PLUME_PROFILE", "tiny")
    if profile not in PROFILES:
        raise ConfigError(f"PLUME_PROFILE must be 'tiny' or 'gpu-2b', got {profile!r}")
    fallback = ""
    if profile == "gpu-2b":
        hub_id = TRAIN_PROFILES["gpu-2b"]["backbone"]
        gpu, hub = torch.cuda.is_available(), hub_reachable(hub_id)
        if not (gpu and hub):
            fallback = (
                f"PLUME_PROFILE=gpu-2b needs a CUDA GPU and {hub_id} from the Hugging Face hub "
                f"(GPU: {gpu}, hub or local copy: {hub}); falling back to the tiny profile."
            )
            log.warning(fallback)
            profile = "tiny"
    if profile == "tiny":
        runtime.configure_threads()  # the tiny model's kernels gain nothing from more threads
    if plot_theme:
        import seaborn as sns

        sns.set_theme(style="whitegrid", context="notebook")
    nb = NotebookSetup(
        profile=profile,
        device="cuda" if profile == "gpu-2b" else "cpu",
        dtype=torch.bfloat16 if profile == "gpu-2b" else None,
        overrides=DEFAULT_OVERRIDES if profile == "tiny" else (),
        fallback=fallback,
    )
    log.info("%r", nb)
    return nb
