"""Rows of the real formats -> the in-memory shapes of `formats.py`.

MMEB-train / SynthMMEB train rows and UME-sft JSON records become `TrainPair`s;
MMEB_Test_Instruct rows and BEIR queries/corpus/qrels become `EvalTask`s. Media paths are
resolved to absolute paths here; nothing is decoded (that is `media.py`'s job)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from plume_lite.data.formats import EvalTask, TrainPair
from plume_lite.data.storage import VISDOC_QRY_INST, VISDOC_TGT_INST, DataError, resolve
from plume_lite.media import IMAGE_EXTS

# placeholder tokens of the various backbones, and UME's embedding-prompt markers
_MEDIA_TOKENS = re.compile(r"<\|image_\d+\|>|<\|video_\d+\|>|<image>|<video>|<\|image_pad\|>")
_THINK = re.compile(r"<think>(.*?)</think>", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_SPECIAL = re.compile(r"</?think>|</?answer>|<gen_emb>|<disc_emb>|<bot>|<eot>|<ct>")


def clean_text(text) -> str:
    if not text:
        return ""
    return _MEDIA_TOKENS.sub("", str(text)).strip()


def _at(values: list, i: int):
    """values[i], or None past the end (negatives and targets list their fields apart)."""
    return values[i] if i < len(values) else None


def _as_list(v) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _image_value(v, roots):
    """A path, a PIL image, or a datasets Image struct {'bytes', 'path'} -> item value."""
    if v is None or v == "":
        return None
    if isinstance(v, dict):
        if v.get("bytes"):
            from PIL import Image

            return Image.open(io.BytesIO(v["bytes"]))  # lazy: load_image decodes it safely
        v = v.get("path")
        if not v:
            return None
    if isinstance(v, (str, Path)):
        return resolve(str(v), roots)
    return v  # a PIL image from a `datasets` Image column


def _video_value(v, roots):
    """A video file, a frame folder (-> sorted frame paths) or a list of frame paths."""
    if v is None or v == "" or v == []:
        return None
    if isinstance(v, (list, tuple)):
        return [_image_value(f, roots) for f in v]
    path = resolve(str(v), roots)
    p = Path(path)
    if p.is_dir():
        frames = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        return frames or path  # an empty folder stays a path: load_video names the problem
    return path


def make_item(instruction="", text="", image=None, video=None, pdf=None, page=0, roots=()) -> dict:
    item = {}
    if clean_text(instruction):
        item["instruction"] = clean_text(instruction)
    if clean_text(text):
        item["text"] = clean_text(text)
    img = _image_value(image, roots)
    if img is not None:
        item["image"] = img
    vid = _video_value(video, roots)
    if vid is not None:
        item["video"] = vid
    if pdf:
        item["pdf"] = resolve(str(pdf), roots)
        item["page"] = int(page or 0)
    return item


def item_key(item: dict) -> tuple:
    """Identity of a candidate for de-duplication (PIL images by object identity)."""

    def h(v):
        if isinstance(v, list):
            return tuple(h(x) for x in v)
        return v if isinstance(v, (str, int, type(None))) else ("obj", id(v))

    return tuple(h(item.get(k)) for k in ("instruction", "text", "image", "video", "pdf", "page"))


# ----------------------------------------------------------------------------- training pairs


def pair_from_mmeb(row: dict, task: str, roots) -> TrainPair:
    """MMEB-train row (SynthMMEB adds *_inst, video/PDF paths and rationale fields)."""
    q = make_item(
        row.get("qry_inst"), row.get("qry"), row.get("qry_image_path"), row.get("qry_video_path"), roots=roots
    )
    p = make_item(
        row.get("pos_inst"),
        row.get("pos_text"),
        row.get("pos_image_path"),
        row.get("pos_video_path"),
        row.get("pos_pdf_path"),
        row.get("pos_page"),
        roots,
    )
    if not q or not p:
        raise DataError(f"task {task}: a training row has an empty query or positive")
    texts, imgs = _as_list(row.get("neg_text")), _as_list(row.get("neg_image_path"))
    vids, pdfs = _as_list(row.get("neg_video_path")), _as_list(row.get("neg_pdf_path"))
    pages = _as_list(row.get("neg_page"))
    negs = []
    for i in range(max(len(texts), len(imgs), len(vids), len(pdfs))):
        n = make_item(
            p.get("instruction", ""),
            _at(texts, i),
            _at(imgs, i),
            _at(vids, i),
            _at(pdfs, i),
            _at(pages, i) or 0,
            roots,
        )
        if set(n) - {"instruction"}:
            negs.append(n)
    return TrainPair(
        task=task,
        query=q,
        positive=p,
        negatives=negs,
        query_rationale=row.get("qry_rationale") or "",
        query_answer=row.get("qry_answer") or "",
        positive_rationale=row.get("pos_rationale") or "",
        positive_answer=row.get("pos_answer") or "",
    )


def parse_assistant(text: str) -> tuple[str, str]:
    """'<think>R</think><answer>A</answer><gen_emb>' -> (R, A); without <answer>, the
    text after </think> (special tokens removed) is the answer."""
    text = text or ""
    m = _THINK.search(text)
    rationale = m.group(1).strip() if m else ""
    a = _ANSWER.search(text)
    if a:
        answer = a.group(1)
    else:
        answer = text[m.end() :] if m else text
    return rationale, _SPECIAL.sub("", answer).strip()


def _ume_side(side: dict, roots) -> tuple[dict, str, str]:
    if not isinstance(side, dict):
        raise DataError("UME-sft record: 'qry' and 'pos' must be objects with 'conversations'")
    human, bot = "", ""
    for turn in side.get("conversations") or []:
        who = turn.get("from") or turn.get("role")
        if who in ("human", "user") and not human:
            human = turn.get("value") or turn.get("content") or ""
        elif who in ("gpt", "assistant") and not bot:
            bot = turn.get("value") or turn.get("content") or ""
    human = human.split("<disc_emb>")[0]  # what follows is UME's fixed embedding prompt
    rationale, answer = parse_assistant(bot)
    image = side.get("image")
    if isinstance(image, (list, tuple)):
        image = image[0] if image else None  # items hold one image
    item = make_item("", _SPECIAL.sub("", human), image, side.get("video"), roots=roots)
    return item, rationale, answer


def pair_from_ume(row: dict, task: str, roots) -> TrainPair:
    """zhibinlan/UME-sft-train record: qry/pos each {conversations, image | video}."""
    q, qr, qa = _ume_side(row.get("qry"), roots)
    p, pr, pa = _ume_side(row.get("pos"), roots)
    if not q or not p:
        raise DataError(f"task {task}: a UME-sft record has an empty query or positive")
    return TrainPair(
        task=task,
        query=q,
        positive=p,
        query_rationale=qr,
        query_answer=qa,
        positive_rationale=pr,
        positive_answer=pa,
    )


# ----------------------------------------------------------------------------- evaluation tasks


def task_from_instruct(rows: list[dict], name: str, meta: dict, roots) -> EvalTask:
    """MMEB_Test_Instruct rows: per row a query and its candidates, positive first."""
    pool: dict = {}
    candidates, queries, lists, qrels = [], [], [], []
    for r in rows:
        queries.append(
            make_item(
                r.get("qry_inst"),
                r.get("qry_text"),
                r.get("qry_img_path"),
                r.get("qry_video_path"),
                roots=roots,
            )
        )
        texts, imgs = _as_list(r.get("tgt_text")), _as_list(r.get("tgt_img_path"))
        vids = _as_list(r.get("tgt_video_path"))
        idxs = []
        for i in range(max(len(texts), len(imgs), len(vids))):
            it = make_item(r.get("tgt_inst"), _at(texts, i), _at(imgs, i), _at(vids, i), roots=roots)
            k = item_key(it)
            if k not in pool:
                pool[k] = len(candidates)
                candidates.append(it)
            if pool[k] not in idxs:
                idxs.append(pool[k])
        if not idxs:
            raise DataError(f"task {name}: a test row lists no candidates")
        lists.append(idxs)
        qrels.append({idxs[0]: 1})
    local = meta.get("protocol", "local") == "local"
    return EvalTask(
        name=name,
        modality=meta["modality"],
        meta_task=meta["meta_task"],
        protocol="local" if local else "global",
        metric=meta.get("metric", "hit@1"),
        queries=queries,
        candidates=candidates,
        query_candidates=lists if local else None,
        qrels=qrels,
        reasoning=bool(meta.get("reasoning", False)),
    )


def task_from_beir(
    queries: list[dict], corpus: list[dict], qrels: list[dict], name: str, meta: dict, roots
) -> EvalTask:
    """BEIR: every query ranks the whole corpus; graded scores > 0 are relevant."""
    index, candidates = {}, []
    for row in corpus:
        cid = str(row.get("corpus-id", row.get("_id", "")))
        image = row.get("image") or row.get("image_path")
        text = "" if (image or row.get("pdf_path")) else row.get("text", "")
        candidates.append(
            make_item(
                meta.get("tgt_inst", VISDOC_TGT_INST),
                text,
                image,
                None,
                row.get("pdf_path"),
                row.get("page", 0),
                roots,
            )
        )
        index[cid] = len(candidates) - 1
    rel: dict = {}
    for row in qrels:
        cid, score = str(row["corpus-id"]), int(row.get("score", 1))
        if score > 0 and cid in index:
            rel.setdefault(str(row["query-id"]), {})[index[cid]] = score
    items, graded = [], []
    for row in queries:
        qid = str(row.get("query-id", row.get("_id", "")))
        if qid in rel:  # BEIR convention: queries without a relevant document are skipped
            items.append(
                make_item(
                    meta.get("qry_inst", VISDOC_QRY_INST), row.get("query", row.get("text", "")), roots=roots
                )
            )
            graded.append(rel[qid])
    if not items:
        raise DataError(f"task {name}: no query has a relevant corpus entry in qrels")
    return EvalTask(
        name=name,
        modality=meta.get("modality", "visdoc"),
        meta_task=meta.get("meta_task", "vidore"),
        protocol="global",
        metric=meta.get("metric", "ndcg@5"),
        queries=items,
        candidates=candidates,
        query_candidates=None,
        qrels=graded,
        reasoning=bool(meta.get("reasoning", False)),
    )
