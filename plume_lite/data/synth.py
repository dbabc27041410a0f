"""SynthMMEB: an offline benchmark shaped like MMEB-v2 (image / video / visual-document
tasks, local and global candidate protocols, Hit@1 and graded NDCG@5), with a rationale
for every training pair, written in the real sources' formats.

    DIR/README.md                  dataset card; its front matter maps each task (a config)
                                   to its parquet files per split, as the Hub reads them
    DIR/tasks.json                 manifest: per task modality, meta_task, protocol, metric,
                                   reasoning flag, sizes, chance level and text floor per
                                   split, held-out combination
    DIR/train/<task>/train-*.parquet   MMEB-train / UME-sft style pairs
    DIR/eval/<task>/<split>-*.parquet  MMEB_Test_Instruct rows, or BEIR queries/ corpus/ qrels/
    DIR/media/<task>/<split>/      PNG images (also embedded as datasets.Image columns),
                                   mp4 clips, PDF documents

Two evaluation splits (synth_base): `test`, i.i.d. (fresh scenes of the training attribute
combinations, none identical to a training scene; the main score), and `compositional`
(queries of held-out attribute combinations, never in training; a separate column). So
`datasets.load_dataset(DIR, "img_qa_chart", split="compositional")` reads a task (and the
folder can be uploaded to the Hub as it is). Generation is deterministic: one seed gives
byte-identical files. Folders of the previous formats (one held-out test split; save_to_disk
tables or parquet) are still read, their test split as `compositional`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from plume_lite.data import card, convert
from plume_lite.data.storage import (
    BEIR_COLUMNS,
    INSTRUCT_COLUMNS,
    TRAIN_COLUMNS,
    DataError,
    split_columns,
    write_parquet,
)
from plume_lite.data.synth_base import EVAL_SPLITS, TEST, Builder, TaskSpec
from plume_lite.io import atomic_dir, atomic_write_text
from plume_lite.runtime import cache_root

log = logging.getLogger(__name__)

# 2: parquet tables with `datasets` features and a dataset card; 3: an i.i.d. `test` split
# and a held-out-combination `compositional` split (2 had only the held-out one, as `test`);
# 4: left-of's rationale names its anchor ("just left of the diamond", not "of it")
FORMAT = "synthmmeb/4"
# n_train pairs per task, n_test / n_compositional queries per task and split (global tasks
# are capped by their combinations), n_cands = candidates per local query
SIZES = {
    "tiny": {"n_train": 120, "n_test": 32, "n_compositional": 32, "n_cands": 8},
    "lite": {"n_train": 480, "n_test": 128, "n_compositional": 128, "n_cands": 8},
    "small": {"n_train": 600, "n_test": 64, "n_compositional": 64, "n_cands": 12},
}
SPLITS = {
    "test": "i.i.d.: fresh scenes of the training attribute combinations, none identical to a training scene",
    "compositional": "queries use attribute combinations with (sum of attribute indices + seed) "
    "% 4 == 0, never seen in training",
}


def all_tasks() -> list[TaskSpec]:
    from plume_lite.data import synth_docs, synth_image, synth_video

    return synth_image.TASKS + synth_video.TASKS + synth_docs.TASKS


def _pool_stats(rows: list[dict]) -> tuple[int, int]:
    """(de-duplicated candidate pool size, longest per-query candidate list)."""
    pool, longest = set(), 0
    for r in rows:
        tg = list(zip(r["tgt_text"], r["tgt_img_path"], r["tgt_video_path"]))
        pool.update(tg)
        longest = max(longest, len(tg))
    return len(pool), longest


def _write_split(tmp: Path, spec: TaskSpec, b: Builder, entry: dict, files: dict, split: str) -> dict:
    """Write one evaluation split's table(s); return its sizes, chance level and text floor."""
    columns = split_columns(entry["format"])
    if entry["format"] == "beir":
        beir = b.beir[split]
        write_parquet(beir["queries"], tmp / files[spec.name][split], columns, BEIR_COLUMNS["queries"], tmp)
        for part in ("corpus", "qrels"):
            write_parquet(beir[part], tmp / files[f"{spec.name}-{part}"][split], BEIR_COLUMNS[part], root=tmp)
        task = convert.task_from_beir(
            *(beir[k] for k in ("queries", "corpus", "qrels")), spec.name, entry, ()
        )
        stats = {
            "n_queries": len(beir["queries"]),
            "n_candidates": len(beir["corpus"]),
            "candidates_per_query": len(beir["corpus"]),
            "n_qrels": len(beir["qrels"]),
        }
    else:
        rows = b.eval_rows[split]
        write_parquet(rows, tmp / files[spec.name][split], columns, INSTRUCT_COLUMNS, tmp)
        task = convert.task_from_instruct(rows, spec.name, entry, ())
        pool, longest = _pool_stats(rows)
        stats = {
            "n_queries": len(rows),
            "n_candidates": pool,
            "candidates_per_query": longest if spec.protocol == "local" else pool,
        }
    return dict(stats, chance=card.chance_level(task), text_floor=card.text_floor(task))


def _write_task(tmp: Path, spec: TaskSpec, b: Builder) -> dict:
    entry = {
        "name": spec.name,
        "modality": spec.modality,
        "meta_task": spec.meta_task,
        "protocol": spec.protocol,
        "metric": spec.metric,
        "reasoning": spec.reasoning,
        "description": spec.description,
        "holdout": spec.holdout,
        "train": f"train/{spec.name}",
        "eval": f"eval/{spec.name}",
        "n_train": len(b.train_rows),
        "format": "beir" if b.beir else "mmeb_instruct",
        "splits": {},
    }
    files = card.data_files(dict(entry, splits=dict.fromkeys(EVAL_SPLITS)))
    write_parquet(
        b.train_rows, tmp / files[spec.name]["train"], split_columns(entry["format"]), TRAIN_COLUMNS, tmp
    )
    for split in EVAL_SPLITS:
        entry["splits"][split] = _write_split(tmp, spec, b, entry, files, split)
    # the main (i.i.d. test) split's figures, also under the names of format 2
    test = entry["splits"][TEST]
    entry.update(
        n_test_queries=test["n_queries"],
        n_compositional_queries=entry["splits"]["compositional"]["n_queries"],
        n_candidates=test["n_candidates"],
        candidates_per_query=test["candidates_per_query"],
        chance=test["chance"],
        text_floor=test["text_floor"],
    )
    if "n_qrels" in test:
        entry["n_qrels"] = test["n_qrels"]
    return entry


def make_synth(
    out_dir,
    size: str = "tiny",
    seed: int = 0,
    tasks=None,
    verbose: bool = False,
    train_pairs: int | None = None,
) -> Path:
    """Generate SynthMMEB into `out_dir` (replaced atomically) and return its path.

    size: "tiny" (~1.4k training pairs; 32 test and 32 compositional queries per task),
    "lite" (480 training pairs, 128 + 128 queries per task: the reproduction run's) or
    "small" (600 training pairs, 64 + 64 queries); tasks: optional subset of task names;
    train_pairs: training pairs per task instead of the size's (the evaluation splits keep
    the size's query counts, not its scenes: one RNG stream per task draws training first)."""
    if size not in SIZES:
        raise DataError(f"unknown synth size {size!r}; choose one of {sorted(SIZES)}")
    sizes = dict(SIZES[size])
    if train_pairs is not None:
        if not isinstance(train_pairs, int) or isinstance(train_pairs, bool) or train_pairs < 1:
            raise DataError(f"train_pairs must be a positive integer, got {train_pairs!r}")
        sizes["n_train"] = train_pairs
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"seed must be an integer, got {seed!r}")
    specs = all_tasks()
    if tasks is not None:
        names = {s.name for s in specs}
        unknown = [t for t in tasks if t not in names]
        if unknown:
            raise DataError(f"unknown SynthMMEB task(s) {unknown}; known: {sorted(names)}")
        specs = [s for s in specs if s.name in set(tasks)]
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "tasks.json").exists())):
        raise DataError(f"{out} exists and is not a SynthMMEB folder; refusing to overwrite it")
    entries = []
    with atomic_dir(out) as tmp:
        for spec in specs:
            t0 = time.perf_counter()
            b = Builder(tmp, spec, seed, **sizes)
            spec.build(b)
            entries.append(_write_task(tmp, spec, b))
            if verbose:
                log.info("  %-20s %5.1fs", spec.name, time.perf_counter() - t0)
        manifest = {
            "name": "SynthMMEB",
            "format": FORMAT,
            "size": size,
            "seed": seed,
            **({"train_pairs": train_pairs} if train_pairs is not None else {}),
            "image_size": [64, 64],
            "page_size": [64, 80],
            "video_frames": 8,
            "fps": 8,
            "splits": SPLITS,
            "holdout_rule": "compositional split: " + SPLITS["compositional"],
            "license": card.LICENSE,
            "tasks": entries,
        }
        command = card.generator_command(manifest, [s.name for s in all_tasks()])
        manifest["command"] = command
        atomic_write_text(tmp / "README.md", card.dataset_card(manifest, command))
        atomic_write_text(tmp / "tasks.json", json.dumps(manifest, indent=2) + "\n")
    return out


def read_manifest(root) -> dict:
    path = Path(root) / "tasks.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{root}: no tasks.json; not a SynthMMEB folder") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tasks"), list):
        raise DataError(f"{path}: expected an object with a 'tasks' list")
    return manifest


def ensure_synth(path, size: str = "tiny", seed: int = 0) -> Path:
    """SynthMMEB at `path`, generated (atomically) unless a complete copy of this format,
    size and seed is there (a folder of an older format is generated anew: it has no i.i.d.
    test split)."""
    path = Path(path)
    current = (path / "tasks.json").exists() and _is_current(read_manifest(path), size, seed)
    if not current:
        with atomic_dir(path) as tmp:
            make_synth(tmp, size=size, seed=seed)
    return path


def _is_current(manifest: dict, size: str, seed: int) -> bool:
    return (manifest.get("format"), manifest.get("size"), manifest.get("seed")) == (FORMAT, size, seed)


def default_data(size: str = "tiny", seed: int = 0) -> Path:
    """SynthMMEB of this size and seed in the cache folder (generated once)."""
    return ensure_synth(cache_root() / f"synthmmeb-{size}-seed{seed}", size, seed)
