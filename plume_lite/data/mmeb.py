"""One entry point for training pairs and evaluation tasks, whatever the source:

- a SynthMMEB folder (`tasks.json` and parquet tables, written by `make_synth`; folders of
  its previous formats too); its evaluation tasks come in two splits, "test" (i.i.d., the
  main score) and "compositional" (held-out attribute combinations);
- MMEB-train (`TIGER-Lab/MMEB-train` or its local copy: one folder per subset with
  parquet/json files, images under the root or `images/`);
- UME-sft-train (`zhibinlan/UME-sft-train` or a local .json/.jsonl file or folder);
- MMEB_Test_Instruct (`ziyjiang/MMEB_Test_Instruct` or a local folder, one subfolder per
  task) -- video tasks use the same rows with `qry_video_path`/`tgt_video_path` naming a
  video file or a folder of frames;
- BEIR document sets (a folder with `queries`, `corpus`, `qrels`, or a folder of them).

Local media paths are resolved against `media_root` (if given), then the task folder and
the source root (and its `images/`, `eval_images/`, `frames/`, `videos/`)."""

from __future__ import annotations

from pathlib import Path

from plume_lite.data import card, convert, mmeb_registry, sources
from plume_lite.data.formats import EvalTask, TrainPair
from plume_lite.data.storage import (
    BEIR_COLUMNS,
    INSTRUCT_COLUMNS,
    TRAIN_COLUMNS,
    DataError,
    read_rows,
    table_files,
)
from plume_lite.data.synth import read_manifest
from plume_lite.data.synth_base import EVAL_SPLITS

_MEDIA_DIRS = ("images", "eval_images", "frames", "videos", "media")
_BEIR_PARTS = ("queries", "corpus", "qrels")


def _roots(root: Path, media_root=None, extra=()) -> list:
    base = [media_root] if media_root else []
    return base + list(extra) + [root] + [root / d for d in _MEDIA_DIRS]


def _check_tasks(tasks, known: list[str], source) -> None:
    if tasks is None:
        return
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise DataError(f"{source}: unknown task(s) {unknown}; available: {known}")


def _source(source):
    """-> ('local', Path) or ('hub', repo id)."""
    p = Path(source)
    if p.exists():
        return "local", p
    if sources.is_hub_id(str(source)):
        return "hub", str(source)
    raise DataError(f"{source}: no such file or folder (and not a hub id 'owner/name')")


# ----------------------------------------------------------------------------- training pairs


def _ume_task(row: dict, default: str) -> str:
    return str(row.get("dataset_name") or row.get("task") or row.get("source") or default)


def _row_kind(rows: list[dict]) -> str:
    return "ume" if rows and isinstance(rows[0].get("qry"), dict) else "mmeb"


def _local_train_tables(root: Path):
    """Yield (task, kind, rows) from a local MMEB-train or UME-sft layout."""
    direct = (
        [root]
        if root.is_file()
        else [f for f in table_files(root) if f.parent == root and f.suffix in (".json", ".jsonl")]
    )
    if direct:  # UME-sft style: record files at the top level
        for f in direct:
            rows = read_rows(f)
            yield f.stem, _row_kind(rows), rows
        return
    subsets = [
        d for d in sorted(root.iterdir()) if d.is_dir() and d.name not in _MEDIA_DIRS and table_files(d)
    ]
    if not subsets:
        raise DataError(
            f"{root}: no training tables found (expected one folder per subset, "
            f"a .json/.jsonl file, or a SynthMMEB folder)"
        )
    for d in subsets:
        rows = read_rows(d, split="original")
        yield d.name, _row_kind(rows), rows


def load_train_pairs(source, tasks=None, limit=None, media_root=None) -> list[TrainPair]:
    """Training pairs of `source` (see module doc), optionally only `tasks` and at most
    `limit` pairs per task."""
    kind, src = _source(source)
    pairs: list[TrainPair] = []
    if kind == "local" and (src / "tasks.json").exists():
        manifest = read_manifest(src)
        entries = manifest["tasks"]
        _check_tasks(tasks, [e["name"] for e in entries], src)
        for e in entries:
            if tasks is None or e["name"] in tasks:
                rows = read_rows(src / e["train"], columns=TRAIN_COLUMNS)[:limit]
                pairs += [convert.pair_from_mmeb(r, e["name"], _roots(src, media_root)) for r in rows]
        return pairs
    if kind == "local":
        tables, root = _local_train_tables(src), (src.parent if src.is_file() else src)
    else:
        tables, root = sources.hub_train_rows(src, tasks, limit), Path(".")
    grouped: dict[str, list] = {}
    for name, row_kind, rows in tables:
        for r in rows:
            task = _ume_task(r, name) if row_kind == "ume" else name
            grouped.setdefault(task, []).append((row_kind, r))
    _check_tasks(tasks, sorted(grouped), source)
    for task, rows in grouped.items():
        if tasks is not None and task not in tasks:
            continue
        for row_kind, r in rows[:limit]:
            conv = convert.pair_from_ume if row_kind == "ume" else convert.pair_from_mmeb
            pairs.append(conv(r, task, _roots(root, media_root)))
    return pairs


# ----------------------------------------------------------------------------- evaluation tasks


def _is_beir(p: Path) -> bool:
    return all(_beir_part(p, part) is not None for part in _BEIR_PARTS)


def _beir_part(p: Path, part: str):
    for cand in (p / part, p / f"{part}.jsonl", p / f"{part}.parquet", p / f"{part}.json"):
        if cand.exists():
            return cand
    return None


def _read_beir(p: Path, columns=False):
    """(queries, corpus, qrels); columns=True: only the BEIR columns (SynthMMEB's queries
    table shares its config's schema with the training pairs)."""
    return tuple(
        read_rows(_beir_part(p, part), split="test", columns=BEIR_COLUMNS[part] if columns else None)
        for part in _BEIR_PARTS
    )


def _local_eval_tables(root: Path):
    """Yield (task, kind, tables, task_dir) from a local BEIR set, an instruct table,
    or a folder holding several of them."""
    if _is_beir(root):
        yield root.name, "beir", _read_beir(root), root
        return
    if root.is_file() or (root / "state.json").exists() or any(f.parent == root for f in table_files(root)):
        yield root.stem, "instruct", read_rows(root, split="test"), root
        return
    found = False
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name in _MEDIA_DIRS:
            continue
        if _is_beir(d):
            found = True
            yield d.name, "beir", _read_beir(d), d
        elif table_files(d):
            found = True
            yield d.name, "instruct", read_rows(d, split="test"), d
    if not found:
        raise DataError(
            f"{root}: no evaluation tables found (expected MMEB_Test_Instruct "
            f"rows, BEIR queries/corpus/qrels, or a SynthMMEB folder)"
        )


def _to_task(name, kind, tables, meta, roots, parser=None, text_protocol="plume_lite") -> EvalTask:
    texts = {"parser": parser, "text_protocol": text_protocol}
    if kind == "beir":
        return convert.task_from_beir(*tables, name=name, meta=meta, roots=roots, **texts)
    return convert.task_from_instruct(tables, name, meta, roots, **texts)


def _has_video(rows) -> bool:
    return any(r.get("qry_video_path") or any(r.get("tgt_video_path") or []) for r in rows[:20])


def _synth_split_tables(src: Path, manifest: dict, e: dict, split: str):
    """The tables of one SynthMMEB task's evaluation split: instruct rows, or BEIR
    (queries, corpus, qrels). Folders of a legacy format hold one split, the held-out one."""
    beir = e.get("format") == "beir"
    if "splits" not in e:  # legacy: one table (folder) per part, named "test"
        if split != "compositional":
            raise DataError(
                f"{src}: a SynthMMEB folder of format {manifest.get('format', 'synthmmeb/1')!r} has no "
                f"i.i.d. test split (its only split holds out attribute combinations: read it with "
                f"split='compositional', or regenerate it with plume-lite synth)"
            )
        d = src / e["eval"]
        return _read_beir(d, columns=True) if beir else read_rows(d, columns=INSTRUCT_COLUMNS)
    if split not in e["splits"]:
        raise DataError(f"{src}: task {e['name']} has no split {split!r}; it has {sorted(e['splits'])}")
    files = card.data_files(e)
    if beir:
        parts = [(e["name"], "queries"), (f"{e['name']}-corpus", "corpus"), (f"{e['name']}-qrels", "qrels")]
        return tuple(read_rows(src / files[c][split], columns=BEIR_COLUMNS[p]) for c, p in parts)
    return read_rows(src / files[e["name"]][split], columns=INSTRUCT_COLUMNS)


def _check_split(split, source) -> None:
    if split not in EVAL_SPLITS:
        raise DataError(f"{source}: unknown split {split!r}; choose one of {list(EVAL_SPLITS)}")


def load_eval_tasks(
    source, tasks=None, media_root=None, split: str = "test", text_protocol: str = "plume_lite"
) -> list[EvalTask]:
    """Evaluation tasks of `source` (see module doc), optionally only `tasks`.

    split: "test" (the default: SynthMMEB's i.i.d. split, the main score; the one split of
    every other source) or "compositional" (SynthMMEB only: queries of attribute combinations
    held out of training). Any other name is a DataError.

    text_protocol: "plume_lite" (the default: instruction and text kept apart) or the
    protocol whose model the texts are for, "plume", "ume" or "vlm2vec": then each item of
    an MMEB-v2 image or visual-document task holds the string the authors' parser builds
    (convert's module doc; ViDoRe's instructions are "" under plume and ume). SynthMMEB
    tasks and tasks without such a parser (video) keep the plume_lite texts."""
    _check_split(split, source)
    convert.check_text_protocol(text_protocol)
    kind, src = _source(source)
    if kind == "local" and (src / "tasks.json").exists():
        manifest = read_manifest(src)
        entries = manifest["tasks"]
        _check_tasks(tasks, [e["name"] for e in entries], src)
        out = []
        for e in entries:
            if tasks is None or e["name"] in tasks:
                tables = _synth_split_tables(src, manifest, e, split)
                kind_ = "beir" if e.get("format") == "beir" else "instruct"
                out.append(_to_task(e["name"], kind_, tables, e, _roots(src, media_root)))
        return out
    if split != "test":
        raise DataError(
            f"{source}: split {split!r} exists only in SynthMMEB folders (this source has 'test')"
        )
    if kind == "local":
        found = [(n, k, t, d) for n, k, t, d in _local_eval_tables(src)]
        _check_tasks(tasks, [f[0] for f in found], src)
    else:  # named by YAML key, from the registry's split (VisRAG's is "train")
        found = [(n, k, t, Path(".")) for n, k, t in sources.hub_eval_tables(src, tasks)]
    out = []
    for name, k, tables, d in found:
        if tasks is not None and name not in tasks:
            continue
        # MMEB-v2 names get the authors' eval type and meta-task (SmthSmthV2 local, visdoc VDRv1/...)
        known = mmeb_registry.find(name)
        has_video = k == "instruct" and _has_video(tables)
        meta = known.meta() if known else sources.real_meta(name, has_video=has_video, beir=k == "beir")
        root = src if kind == "local" and src.is_dir() else d
        roots, parser = _roots(root, media_root, extra=[d]), known.parser if known else None
        out.append(_to_task(name, k, tables, meta, roots, parser, text_protocol))
    return out
