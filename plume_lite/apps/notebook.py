"""What the numbered notebooks share: the profile, the device, the trained checkpoints
and their cached evaluations, so every notebook trains and scores each one only once.

    NB = setup()                 # reads $PLUME_PROFILE: tiny (default) or gpu-2b
    NB                           # as a cell's last expression: profile, device, cache folder
    model = NB.load("latent")    # trained on first use, then reused from the cache folder
    result = NB.evaluate("latent", steps=4)

On the gpu-2b profile the three checkpoints are the authors' released weights instead
(`released_ids()`: PLUME-Qwen2-VL-2B, or $PLUME_CHECKPOINT, as latent; UME-R1-2B as explicit;
VLM2Vec-V2.0 as direct), fetched once into the Hugging Face cache and loaded on CUDA in
bf16: nothing is trained before a notebook prints its first line, and there is no
training log to show for them (`training_log` returns None).

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
from plume_lite.apps.defaults import DEFAULT_OVERRIDES, RELEASED_PLUME, default_checkpoint
from plume_lite.data.synth import default_data

log = logging.getLogger(__name__)

PROFILES = ("tiny", "gpu-2b")
BASELINE_OF_MODE = {"explicit": "ume_r1", "direct": "vlm2vec"}  # plume_lite.baselines names


def released_ids() -> dict[str, str]:
    """The gpu-2b profile's checkpoint of each mode: a hub id or a folder.

    Returns:
        ``{"latent": $PLUME_CHECKPOINT or RELEASED_PLUME, "explicit": UME-R1-2B's hub id,
        "direct": VLM2Vec-V2.0's hub id}`` (plume_lite.baselines.HUB_IDS).

    Example:
        >>> released_ids()["explicit"]
        'zhibinlan/UME-R1-2B'
    """
    from plume_lite.baselines import HUB_IDS

    latent = os.environ.get("PLUME_CHECKPOINT", "").strip() or RELEASED_PLUME
    return {"latent": latent, **{mode: HUB_IDS[name] for mode, name in BASELINE_OF_MODE.items()}}


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
        released: gpu-2b: mode -> the released checkpoint's hub id or folder
            (`released_ids()`); empty on tiny, whose checkpoints are trained here.
        started: `time.perf_counter()` at set-up, for `elapsed_s`.
    """

    profile: str
    device: str
    dtype: torch.dtype | None
    overrides: tuple
    fallback: str = ""
    released: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    _tasks: list | None = field(default=None)
    _folders: dict = field(default_factory=dict)  # mode -> resolved released folder

    def __repr__(self) -> str:
        if self.released:
            shared = "released checkpoints: " + ", ".join(f"{m} {i}" for m, i in self.released.items())
        else:
            shared = f"shared training overrides: {', '.join(self.overrides) or 'none'}"
        status = (
            f"profile {self.profile} on {self.device}, torch threads: {torch.get_num_threads()}; "
            f"cache folder {self.cache_root}; {shared}"
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
        """The folder of the notebooks' checkpoint of `mode`: on tiny the trained one
        (trained if absent); on gpu-2b the released one (`released`), fetched on first
        use with `plume_lite.released.resolve_checkpoint` and remembered.

        Args:
            mode: ``"latent"`` (PLUME), ``"explicit"`` or ``"direct"``.

        Returns:
            The model folder (its training log: `training_log(mode)`).

        Raises:
            ConfigError: gpu-2b and a mode other than the three.
            CheckpointError: gpu-2b and the released checkpoint cannot be fetched.

        Example:
            >>> model_dir = NB.checkpoint("latent")
        """
        if not self.released:
            return default_checkpoint(mode, self.profile, self.overrides)
        self._check_released_mode(mode)
        if mode not in self._folders:
            from plume_lite import released

            self._folders[mode] = released.resolve_checkpoint(self.released[mode])
        return self._folders[mode]

    def _check_released_mode(self, mode: str) -> None:
        if mode not in self.released:
            from plume_lite.errors import ConfigError

            raise ConfigError(f"mode must be one of {', '.join(self.released)}, got {mode!r}")

    def training_log(self, mode: str) -> Path | None:
        """The `log.jsonl` of the training run that made `checkpoint(mode)`: inside a
        shipped checkpoint's folder, or beside the model folder of a run in the cache.

        Returns:
            The log's path; None on gpu-2b, whose released checkpoints come without
            the logs of their training (nothing is fetched then).

        Example:
            >>> records = viz.read_log(NB.training_log("latent"))
        """
        if self.released:
            self._check_released_mode(mode)
            log.info("%s: released weights, shipped without a training log", self.released[mode])
            return None
        folder = self.checkpoint(mode)
        inside = folder / "log.jsonl"
        return inside if inside.exists() else folder.parent / "log.jsonl"

    def load(self, mode: str):
        """The notebooks' checkpoint of `mode` on this profile's device.

        Args:
            mode: ``"latent"``, ``"explicit"`` or ``"direct"``.

        Returns:
            tiny: a PlumeModel in eval mode (trained here first if the cache lacks it).
            gpu-2b: the released PLUME weights as a PlumeModel for latent; for explicit
            and direct the baseline encoders UME-R1-2B and VLM2Vec-V2.0
            (`plume_lite.baselines.load_baseline`, run as their harnesses ran them);
            on CUDA in bf16.

        Example:
            >>> model = NB.load("latent")
        """
        from plume_lite.model import PlumeModel

        folder = self.checkpoint(mode)
        if self.released and mode in BASELINE_OF_MODE:
            from plume_lite.baselines import load_baseline

            return load_baseline(BASELINE_OF_MODE[mode], folder, device=self.device, dtype=self.dtype)
        return PlumeModel.from_pretrained(folder, device=self.device, dtype=self.dtype).eval()

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

    The gpu-2b profile uses the released checkpoints (`released_ids()`). It falls back
    to tiny, saying why in the returned object's repr and in a logged warning, when
    there is no CUDA GPU or the released PLUME checkpoint ($PLUME_CHECKPOINT, else
    RELEASED_PLUME) is neither a local folder, nor in the local Hugging Face cache, nor
    reachable on the hub. The tiny profile uses
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

    profile = profile or os.environ.get("PLUME_PROFILE", "tiny")
    if profile not in PROFILES:
        raise ConfigError(f"PLUME_PROFILE must be 'tiny' or 'gpu-2b', got {profile!r}")
    fallback, released = "", {}
    if profile == "gpu-2b":
        released = released_ids()
        source = released["latent"]
        gpu = torch.cuda.is_available()
        hub = Path(source).is_dir() or hub_reachable(source)
        if not (gpu and hub):
            fallback = (
                f"PLUME_PROFILE=gpu-2b needs a CUDA GPU and {source} from the Hugging Face hub "
                f"(GPU: {gpu}, hub or local copy: {hub}); falling back to the tiny profile."
            )
            log.warning(fallback)
            profile, released = "tiny", {}
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
        released=released,
    )
    log.info("%r", nb)
    return nb
