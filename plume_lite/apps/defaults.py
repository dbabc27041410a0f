"""Default checkpoints of the tiny profile, shared by the notebooks and the demo.

The three modes' checkpoints trained with the default recipe ship with the package
(`plume_lite/apps/checkpoints/tiny-<mode>/`, ~4 MB each, made by `python -m
plume_lite.apps.defaults`; recipe, seed, time and quality gate in each folder's
`shipped.json`), so a fresh clone or a Space starts without training. Any other mode,
profile, recipe or data folder is trained on first use into the cache folder
(plume_lite.runtime.cache_root) and reused after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from plume_lite.config import MODES
from plume_lite.data.synth import default_data
from plume_lite.io import atomic_dir, atomic_write_text
from plume_lite.runtime import cache_root

log = logging.getLogger(__name__)

# Half the tiny profile's steps: about 1.5 minutes on 2 CPU cores per mode. Notebooks and
# the demo use the same recipe, so they share one checkpoint per mode.
DEFAULT_OVERRIDES = ("max_steps=150",)
SHIPPED = Path(__file__).resolve().parent / "checkpoints"
GATE_MIN_SCORE = 15.0  # overall SynthMMEB tiny score (%); random embeddings score 9.7
# the authors' released PLUME weights: the gpu-2b profile's latent checkpoint (notebooks, demo)
RELEASED_PLUME = "CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B"


def shipped_checkpoint(mode: str) -> Path | None:
    """The shipped tiny checkpoint of `mode` (default recipe), or None if absent."""
    folder = SHIPPED / f"tiny-{mode}"
    return folder if (folder / "plume_config.json").exists() else None


def _is_default_data(data) -> bool:
    return data is None or Path(data).resolve() == default_data().resolve()


def default_checkpoint(
    mode: str = "latent",
    profile: str = "tiny",
    overrides: tuple = DEFAULT_OVERRIDES,
    data: Path | None = None,
    progress: bool = True,
    use_shipped: bool = True,
) -> Path:
    """A trained PlumeModel folder for this mode/profile/overrides.

    The shipped checkpoint when one matches (tiny profile, default recipe and data);
    else trained into the cache folder on first use, reused after (an interrupted
    training resumes from its last checkpoint on the next call)."""
    from plume_lite.train.config import resolve_config
    from plume_lite.train.loop import train

    overrides = tuple(overrides)
    default_recipe = profile == "tiny" and overrides == DEFAULT_OVERRIDES
    if use_shipped and default_recipe and _is_default_data(data) and shipped_checkpoint(mode):
        return shipped_checkpoint(mode)
    tag = hashlib.sha256(json.dumps([mode, profile, overrides]).encode()).hexdigest()[:8]
    run = cache_root() / "checkpoints" / f"{profile}-{mode}-{tag}"
    model_dir = run / "model"
    if not (model_dir / "plume_config.json").exists():
        config = resolve_config(profile, mode=mode, overrides=list(overrides) + [f"progress_bar={progress}"])
        data = data or default_data()
        resume = (run / "train_config.json").exists()
        train(config, data, run, resume=resume)
    return model_dir


def gate_score(folder, mode: str) -> float:
    """Overall SynthMMEB tiny test score (%) of a checkpoint in its own mode."""
    from plume_lite.data.mmeb import load_eval_tasks
    from plume_lite.evaluation.protocol import evaluate
    from plume_lite.model import PlumeModel

    model = PlumeModel.from_pretrained(folder)
    result = evaluate(model, load_eval_tasks(default_data()), mode=mode, progress=False, checkpoint_id=None)
    return round(result["overall"]["score"], 2)


def build_shipped(modes=MODES) -> list[dict]:
    """Train each mode with the default recipe in a fresh cache (nothing reused), check
    its gate, and replace plume_lite/apps/checkpoints/tiny-<mode>/ atomically."""
    import os

    records = []
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=SHIPPED.parent
        ).stdout.strip()
        or "unknown"
    )
    for mode in modes:
        with tempfile.TemporaryDirectory() as cache:
            previous = os.environ.get("PLUME_CACHE")
            os.environ["PLUME_CACHE"] = cache
            try:
                start = time.time()
                folder = default_checkpoint(mode, progress=False, use_shipped=False)
                train_s = time.time() - start
                score = gate_score(folder, mode)
                if score < GATE_MIN_SCORE:
                    raise RuntimeError(
                        f"{mode}: score {score} is under the gate {GATE_MIN_SCORE}; not shipped"
                    )
                record = {
                    "mode": mode,
                    "profile": "tiny",
                    "overrides": list(DEFAULT_OVERRIDES),
                    "seed": 0,
                    "data": "SynthMMEB tiny, seed 0 (plume_lite.data.synth.default_data)",
                    "command": "python -m plume_lite.apps.defaults",
                    "commit": commit,
                    "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                    "train_seconds": round(train_s, 1),
                    "gate": {"score": score, "min": GATE_MIN_SCORE},
                }
                with atomic_dir(SHIPPED / f"tiny-{mode}") as tmp:
                    shutil.copytree(folder, tmp, dirs_exist_ok=True)
                    shutil.copy2(folder.parent / "log.jsonl", tmp / "log.jsonl")  # for the notebooks' plots
                    atomic_write_text(tmp / "shipped.json", json.dumps(record, indent=1))
                records.append(record)
                log.info("shipped tiny-%s: score %.2f, trained in %.0f s", mode, score, train_s)
            finally:
                if previous is None:
                    os.environ.pop("PLUME_CACHE", None)
                else:
                    os.environ["PLUME_CACHE"] = previous
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train and ship the tiny default checkpoints.")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for record in build_shipped([m for m in args.modes.split(",") if m]):
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
