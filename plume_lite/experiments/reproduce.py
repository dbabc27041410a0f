"""`plume-lite reproduce`: the paper's tables at lite scale, end to end.

    plume-lite reproduce --out runs/reproduce            # tiny backbone, SynthMMEB tiny, CPU
    plume-lite reproduce --out runs/quick --quick         # the same pipeline in ~3 minutes

Generates the data, trains and evaluates the three systems of the main table (direct =
VLM2Vec-style, explicit = UME-R1-style, latent = PLUME K=8) over several seeds, the
component ablation (no adapter, single MLP, no anchor, no curriculum) and the K
ablation (4, 6, 8), measures ms/query, and writes results.json, tables.md and the
accuracy-vs-latency plot. Every run lives in its own folder and is reused when
finished (training resumes from its checkpoint, evaluation skips finished tasks), so
an interrupted reproduce continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from plume_lite.errors import ConfigError
from plume_lite.experiments.report import write_report
from plume_lite.io import atomic_write_text

log = logging.getLogger(__name__)

# The default run trains 12 models on 2 CPU cores in about 25 minutes: half the tiny
# profile's steps per model. Quick runs only check that the pipeline works.
DEFAULT_OVERRIDES = ("max_steps=150", "save_every=50")
QUICK_OVERRIDES = ("max_steps=6", "save_every=1000", "warmup_steps=1", "max_new_tokens=12")
QUICK_QUERIES_PER_TASK = 6


@dataclass(frozen=True)
class Run:
    name: str  # folder name, unique
    group: str  # main | components | steps
    label: str  # row label in the tables
    mode: str
    seed: int
    overrides: tuple = ()


def plan_runs(seeds: int) -> list[Run]:
    runs = []
    for seed in range(seeds):
        runs += [
            Run(f"direct-s{seed}", "main", "direct (VLM2Vec-style)", "direct", seed),
            Run(f"explicit-s{seed}", "main", "explicit CoT (UME-R1-style)", "explicit", seed),
            Run(f"latent-s{seed}", "main", "PLUME latent (K=8)", "latent", seed),
        ]
    runs += [
        Run("latent-no-adapter-s0", "components", "no transition adapter", "latent", 0, ("adapter=none",)),
        Run("latent-mlp-s0", "components", "single MLP instead of MoE", "latent", 0, ("adapter=mlp",)),
        Run(
            "latent-no-anchor-s0", "components", "no semantic anchor", "latent", 0, ("adapter=moe_no_anchor",)
        ),
        Run("latent-no-curriculum-s0", "components", "no curriculum", "latent", 0, ("curriculum=false",)),
        Run("latent-k4-s0", "steps", "K = 4", "latent", 0, ("latent_steps=4",)),
        Run("latent-k6-s0", "steps", "K = 6", "latent", 0, ("latent_steps=6",)),
    ]
    return runs


def subsample(tasks, n: int, pool_extra: int = 16):
    """The first n queries of every task; a global pool shrinks to what those queries
    rank as relevant plus `pool_extra` distractors (quick runs only: scores change)."""
    import dataclasses

    out = []
    for t in tasks:
        keep = range(min(n, len(t.queries)))
        used = sorted(
            {c for i in keep for c in (t.query_candidates[i] if t.query_candidates else t.qrels[i])}
        )
        if t.query_candidates is None:
            used = sorted(set(used) | set(range(min(pool_extra, len(t.candidates)))))
        new_index = {old: new for new, old in enumerate(used)}
        out.append(
            dataclasses.replace(
                t,
                queries=[t.queries[i] for i in keep],
                candidates=[t.candidates[c] for c in used],
                qrels=[{new_index[c]: r for c, r in t.qrels[i].items()} for i in keep],
                query_candidates=None
                if t.query_candidates is None
                else [[new_index[c] for c in t.query_candidates[i]] for i in keep],
            )
        )
    return out


def train_and_eval(
    run: Run, root: Path, data: Path, tasks, profile: str, extra: tuple, progress: bool
) -> dict:
    from plume_lite.evaluation.protocol import evaluate
    from plume_lite.model import PlumeModel
    from plume_lite.train.config import resolve_config
    from plume_lite.train.loop import train

    run_dir = root / "runs" / run.name
    model_dir = run_dir / "model"
    started = time.time()
    if not (model_dir / "plume_config.json").exists():
        overrides = [f"seed={run.seed}", f"progress_bar={progress}", *run.overrides, *extra]
        config = resolve_config(profile, mode=run.mode, overrides=overrides)
        train(config, data, run_dir, resume=(run_dir / "train_config.json").exists())
    model = PlumeModel.from_pretrained(model_dir).eval()
    result = evaluate(
        model, tasks, mode=run.mode, out=run_dir / "eval.json", progress=progress, checkpoint_id=run.name
    )
    summary = (
        json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    )
    return {
        "run": run.__dict__,
        "eval": {k: result[k] for k in ("overall", "modalities", "meta_tasks", "reasoning")},
        "tasks": {n: r["score"] for n, r in result["tasks"].items()},
        "train_seconds": summary.get("wall_s"),
        "seconds": time.time() - started,
    }


def measure_efficiency(root: Path, runs: list[Run], batch_sizes=(1, 16), repeats: int = 3) -> dict:
    """ms/query of each main system with its own checkpoint (seed 0), reused once measured."""
    from plume_lite.experiments.bench import time_mode
    from plume_lite.model import PlumeModel

    path = root / "efficiency.json"
    if path.exists():
        return json.loads(path.read_text())
    rows = []
    for run in (r for r in runs if r.group == "main" and r.seed == 0):
        model = PlumeModel.from_pretrained(root / "runs" / run.name / "model").eval()
        for b in batch_sizes:
            row = time_mode(model, run.mode, b, model.config.latent_steps, repeats, image_size=64)
            rows.append({"label": run.label, **row})
    result = {"rows": rows, "batch_sizes": list(batch_sizes)}
    atomic_write_text(path, json.dumps(result, indent=1))
    return result


def reproduce(
    out,
    quick: bool = False,
    seeds: int | None = None,
    profile: str = "tiny",
    data: str | None = None,
    eval_data: str | None = None,
    progress: bool = True,
) -> dict:
    from plume_lite.data.mmeb import load_eval_tasks

    root = Path(out)
    seeds = seeds or (1 if quick else 2)
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    start = time.time()
    if data is None:
        if profile != "tiny":
            raise ConfigError(f"profile {profile} trains on real data: pass --data (and --eval-data)")
        from plume_lite.data.synth import ensure_synth

        data = ensure_synth(root / "data", size="tiny", seed=0)
    tasks = load_eval_tasks(eval_data or data)
    if quick:
        tasks = subsample(tasks, QUICK_QUERIES_PER_TASK)
    extra = QUICK_OVERRIDES if quick else (DEFAULT_OVERRIDES if profile == "tiny" else ())
    runs = plan_runs(seeds)
    results = []
    for i, run in enumerate(runs):
        if progress:
            log.info("== reproduce [%d/%d] %s: %s", i + 1, len(runs), run.name, run.label)
        results.append(train_and_eval(run, root, Path(data), tasks, profile, extra, progress))
    efficiency = measure_efficiency(root, runs, repeats=1 if quick else 3)
    report = {
        "settings": {
            "quick": quick,
            "seeds": seeds,
            "profile": profile,
            "data": str(data),
            "eval_data": str(eval_data or data),
            "overrides": list(extra),
        },
        "runs": results,
        "efficiency": efficiency,
        "wall_seconds": time.time() - start,
    }
    return write_report(root, report)
