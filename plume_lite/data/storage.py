"""The one on-disk format: parquet tables with the field names of the real sources and the
`datasets` features in their schema (so `datasets.load_dataset` reads them, images as
`datasets.Image`), plus readers for the layouts real data arrives in (save_to_disk, parquet,
json, jsonl). Media paths are stored relative to the data folder and resolved when loaded."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path

from plume_lite.errors import PlumeError

# MMEB-train (`qry`, `qry_image_path`, `pos_text`, `pos_image_path`, `neg_*`) extended with
# video/PDF paths, instructions and the UME-sft rationale/answer of query and positive.
TRAIN_COLUMNS = {
    "qry_inst": "string",
    "qry": "string",
    "qry_image_path": "string",
    "qry_video_path": "string",
    "pos_inst": "string",
    "pos_text": "string",
    "pos_image_path": "string",
    "pos_video_path": "string",
    "pos_pdf_path": "string",
    "pos_page": "int32",
    "neg_text": "string",
    "neg_image_path": "string",
    "neg_video_path": "string",
    "neg_pdf_path": "string",
    "neg_page": "int32",
    "qry_rationale": "string",
    "qry_answer": "string",
    "pos_rationale": "string",
    "pos_answer": "string",
}
# ziyjiang/MMEB_Test_Instruct, with video paths (file or frame folder) added.
INSTRUCT_COLUMNS = {
    "qry_inst": "string",
    "qry_text": "string",
    "qry_img_path": "string",
    "qry_video_path": "string",
    "tgt_inst": "string",
    "tgt_text": ["string"],
    "tgt_img_path": ["string"],
    "tgt_video_path": ["string"],
}
# BEIR-style document retrieval (ViDoRe / VisRAG); synthetic pages are PDF pages.
BEIR_COLUMNS = {
    "queries": {"query-id": "string", "query": "string"},
    "corpus": {
        "corpus-id": "string",
        "pdf_path": "string",
        "page": "int32",
        "image_path": "string",
        "text": "string",
    },
    "qrels": {"query-id": "string", "corpus-id": "string", "score": "int32"},
}
# VLM2Vec's instructions for ViDoRe-style page retrieval (BEIR tables carry none).
VISDOC_QRY_INST = "Find a document image that matches the given query:"
VISDOC_TGT_INST = "Understand the content of the provided document image."
# `datasets.Image` columns written beside the path columns (which keep the sources' names):
# column -> the path columns it embeds, first the training table's, then the test table's.
IMAGE_COLUMNS = {
    "qry_image": ("qry_image_path", "qry_img_path"),
    "pos_image": ("pos_image_path",),
    "neg_image": ("neg_image_path",),
    "tgt_image": ("tgt_img_path",),
}
ROW_GROUP = 100  # rows per parquet row group (fixed: the bytes must not depend on the machine)
TABLE_SUFFIXES = (".parquet", ".jsonl", ".json", ".tsv", ".arrow")


class DataError(PlumeError, ValueError):
    """A data folder, table or task list is missing, malformed or unknown."""


@contextlib.contextmanager
def quiet_datasets():
    """No progress bars from `datasets` while we read or write small tables."""
    import datasets
    from datasets.utils import logging as dlog

    was_disabled = datasets.are_progress_bars_disabled()
    level = dlog.get_verbosity()
    datasets.disable_progress_bars()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
        dlog.set_verbosity(level)


def _default(t):
    return [] if isinstance(t, list) else (0 if t == "int32" else "")


def split_columns(eval_format: str) -> dict:
    """The columns of one task's config (train and test splits share one schema, as the Hub
    wants): the MMEB-train columns, then the test table's (MMEB_Test_Instruct rows, or BEIR
    queries), then `datasets.Image` columns embedding the images their path columns name.
    A row fills its own table's columns; the other table's are null."""
    test = BEIR_COLUMNS["queries"] if eval_format == "beir" else INSTRUCT_COLUMNS
    cols = {**TRAIN_COLUMNS, **test}
    for name, paths in IMAGE_COLUMNS.items():
        kinds = [cols[p] for p in paths if p in cols]
        if kinds:
            cols[name] = ["image"] if isinstance(kinds[0], list) else "image"
    return cols


def _arrow_type(t):
    import pyarrow as pa

    if isinstance(t, list):
        return pa.list_(_arrow_type(t[0]))
    if t == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return {"string": pa.string(), "int32": pa.int32()}[t]


def hf_feature(t) -> dict:
    """A column type -> its `datasets` feature, as `Features.to_dict()` writes it."""
    if isinstance(t, list):
        return {"feature": hf_feature(t[0]), "_type": "List"}
    if t == "image":
        return {"_type": "Image"}
    return {"dtype": t, "_type": "Value"}


def _image_cell(rel, root: Path, cache: dict):
    if not rel:
        return None
    if rel not in cache:
        cache[rel] = {"bytes": (root / rel).read_bytes(), "path": rel}
    return cache[rel]


def write_parquet(rows: list[dict], path, columns: dict, own=None, root=None) -> None:
    """Rows -> one parquet file with exactly `columns` and their `datasets` features.

    own: the columns these rows fill (missing fields default empty); the others are null.
    Image columns embed the bytes of the files (under `root`) their path columns name.
    Fixed row groups and no timestamps: identical rows give identical bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    own = set(columns if own is None else own)
    cache: dict = {}
    data = {}
    for k, t in columns.items():
        if t in ("image", ["image"]):
            src = next((p for p in IMAGE_COLUMNS[k] if p in own), None)
            if src is None:
                data[k] = [None] * len(rows)
            elif t == "image":
                data[k] = [_image_cell(r.get(src), Path(root), cache) for r in rows]
            else:
                data[k] = [[_image_cell(v, Path(root), cache) for v in r.get(src) or []] for r in rows]
        elif k in own:
            data[k] = [r.get(k, _default(t)) for r in rows]
        else:
            data[k] = [None] * len(rows)
    features = {k: hf_feature(t) for k, t in columns.items()}
    schema = pa.schema(
        [(k, _arrow_type(t)) for k, t in columns.items()],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data, schema=schema), str(path), row_group_size=ROW_GROUP)


def _is_saved_dataset(p: Path) -> bool:
    return (p / "state.json").exists() or (p / "dataset_dict.json").exists()


def _load_saved(p: Path, split=None, columns=None) -> list[dict]:
    from datasets import DatasetDict, load_from_disk

    with quiet_datasets():
        ds = load_from_disk(str(p))
    if isinstance(ds, DatasetDict):
        names = list(ds)
        pick = split if split in ds else next((s for s in ("test", "train", "original") if s in ds), names[0])
        ds = ds[pick]
    if columns is not None:
        ds = ds.select_columns([c for c in columns if c in ds.column_names])
    return ds.to_list()


def _read_json(p: Path) -> list[dict]:
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{p}: line {i} is not valid JSON ({e.msg})") from None
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{p}: expected a JSON list of records")
    return data


def table_files(p: Path, split=None) -> list[Path]:
    """Data files of a table folder, preferring files of `split` when named so."""
    files = sorted(
        f
        for f in p.rglob("*")
        if f.is_file()
        and f.suffix in TABLE_SUFFIXES
        and not f.name.startswith(".")
        and f.name not in ("dataset_info.json", "state.json")
    )
    if split:
        named = [f for f in files if f.name.startswith(split) or f.parent.name == split]
        files = named or files
    return files


def read_rows(path, split=None, columns=None) -> list[dict]:
    """Read a table from a save_to_disk folder, a parquet/json/jsonl file, or a folder of them.

    columns: read only these (of those a table has) from parquet and save_to_disk tables."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_dir() and _is_saved_dataset(p):
        return _load_saved(p, split, columns)
    files = [p] if p.is_file() else table_files(p, split)
    if not files:
        raise DataError(f"{p}: no data files (.parquet, .jsonl, .json, .tsv or a save_to_disk folder)")
    rows = []
    for f in files:
        if f.suffix in (".json", ".jsonl"):
            rows.extend(_read_json(f))
        elif f.suffix == ".tsv":  # classic BEIR qrels/test.tsv
            import csv

            with open(f, newline="", encoding="utf-8") as fh:
                rows.extend(csv.DictReader(fh, delimiter="\t"))
        elif f.suffix == ".parquet":
            import pyarrow.parquet as pq

            if columns is not None:
                have = pq.read_schema(f).names
                rows.extend(pq.read_table(f, columns=[c for c in columns if c in have]).to_pylist())
            else:
                rows.extend(pq.read_table(f).to_pylist())
        else:
            raise DataError(f"{f}: unsupported table file type")
    return rows


def resolve(rel, roots) -> str:
    """A stored media path -> absolute path: tried against each root in order; the first
    existing wins, else the first candidate (so a later MediaError names a real place)."""
    if not rel:
        return ""
    if os.path.isabs(rel):
        return str(Path(rel))
    # each root is resolved once; the joined path only normalised: a full resolve() per
    # media file was most of the time spent loading a training table
    cands = [os.path.normpath(os.path.join(_resolved_root(str(r), os.getcwd()), rel)) for r in roots if r]
    for c in cands:
        if os.path.exists(c):
            return c
    return cands[0] if cands else str(Path(rel).resolve())


@functools.lru_cache(maxsize=256)
def _resolved_root(root: str, cwd: str) -> str:  # cwd: a relative root depends on it
    return str(Path(root).resolve())
