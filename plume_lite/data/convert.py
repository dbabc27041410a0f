"""Rows of the real formats -> the in-memory shapes of `formats.py`.

MMEB-train / SynthMMEB train rows and UME-sft JSON records become `TrainPair`s;
MMEB_Test_Instruct rows and BEIR queries/corpus/qrels become `EvalTask`s. Media paths are
resolved to absolute paths here; nothing is decoded (that is `media.py`'s job).

Evaluation texts follow a text protocol: "plume_lite" (the default) keeps each row's
instruction and text apart, media tokens removed; "plume", "ume" and "vlm2vec" give the
item the string the authors' parser builds for that protocol (`mmeb_text`, spec D14/D15)
as its `text`, with no instruction, for the MMEB-v2 parsers mmeb_text covers (image and
visual-document ones); other tasks keep the plume_lite texts."""

from __future__ import annotations

import io
import re
from pathlib import Path

from plume_lite.data import mmeb_registry, mmeb_text
from plume_lite.data.formats import EvalTask, TrainPair
from plume_lite.data.storage import VISDOC_QRY_INST, VISDOC_TGT_INST, DataError, resolve
from plume_lite.media import IMAGE_EXTS

# placeholder tokens of the various backbones, and UME's embedding-prompt markers
_MEDIA_TOKENS = re.compile(r"<\|image_\d+\|>|<\|video_\d+\|>|<image>|<video>|<\|image_pad\|>")
_THINK = re.compile(r"<think>(.*?)</think>", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_SPECIAL = re.compile(r"</?think>|</?answer>|<gen_emb>|<disc_emb>|<bot>|<eot>|<ct>")
TEXT_PROTOCOLS = ("plume_lite", *mmeb_text.TEXT_PROTOCOLS)


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


def check_text_protocol(text_protocol: str) -> None:
    if text_protocol not in TEXT_PROTOCOLS:
        raise DataError(f"unknown text protocol {text_protocol!r}; choose one of {list(TEXT_PROTOCOLS)}")


def _authors_parser(parser, text_protocol: str, kinds) -> str | None:
    """The parser whose authors' strings the items get, or None for plume_lite texts."""
    check_text_protocol(text_protocol)
    return parser if text_protocol != "plume_lite" and parser in kinds else None


def _authors_item(text: str, image=None, pdf=None, page=0, roots=()) -> dict:
    """An item holding the parser's string as is (vlm2vec's keeps its image token and
    newlines; plume/ume's are already stripped), with no instruction (D14)."""
    item = make_item(image=image, pdf=pdf, page=page, roots=roots)
    return {"text": text, **item} if text else item


def _instruct_items(r: dict, name: str, parser, text_protocol: str, roots) -> tuple[dict, list[dict]]:
    """(query, candidates) of one MMEB_Test_Instruct row, positive first."""
    if parser:
        t = mmeb_text.mmeb_texts(parser, r, text_protocol, task=name)
        query = _authors_item(t.query, t.query_image, roots=roots)
        return query, [_authors_item(c, im, roots=roots) for c, im in zip(t.candidates, t.candidate_images)]
    query = make_item(
        r.get("qry_inst"), r.get("qry_text"), r.get("qry_img_path"), r.get("qry_video_path"), roots=roots
    )
    texts, imgs = _as_list(r.get("tgt_text")), _as_list(r.get("tgt_img_path"))
    vids = _as_list(r.get("tgt_video_path"))
    cands = [
        make_item(r.get("tgt_inst"), _at(texts, i), _at(imgs, i), _at(vids, i), roots=roots)
        for i in range(max(len(texts), len(imgs), len(vids)))
    ]
    return query, cands


def task_from_instruct(
    rows: list[dict], name: str, meta: dict, roots, parser=None, text_protocol: str = "plume_lite"
) -> EvalTask:
    """MMEB_Test_Instruct rows: per row a query and its candidates, positive first.
    `parser` (the registry's) picks the authors' strings under a non-plume_lite protocol."""
    parser = _authors_parser(parser, text_protocol, mmeb_text.IMAGE_PARSERS)
    pool: dict = {}
    candidates, queries, lists, qrels = [], [], [], []
    for r in rows:
        query, cands = _instruct_items(r, name, parser, text_protocol, roots)
        queries.append(query)
        idxs = []
        for it in cands:
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


def _qrels(rows: list[dict], index: dict) -> dict:
    """{query id: {candidate index: score}}: the authors' merge (scores > 0, a pair listed
    twice keeps its higher score), docs missing from the corpus dropped; a row without a
    score counts 1."""
    merged = mmeb_registry.merge_qrels({**row, "score": row.get("score", 1)} for row in rows)
    rel = {q: {index[d]: s for d, s in docs.items() if d in index} for q, docs in merged.items()}
    return {q: docs for q, docs in rel.items() if docs}


def task_from_beir(
    queries: list[dict],
    corpus: list[dict],
    qrels: list[dict],
    name: str,
    meta: dict,
    roots,
    parser: str | None = None,
    text_protocol: str = "plume_lite",
) -> EvalTask:
    """BEIR: every query ranks the whole corpus; graded scores > 0 are relevant.
    `parser` (the registry's: vidore, visrag) picks the authors' strings under a
    non-plume_lite protocol: ViDoRe's instructions are "" under plume/ume (D15)."""
    parser = _authors_parser(parser, text_protocol, mmeb_text.DOC_PARSERS)
    ids = [str(row.get("corpus-id", row.get("_id", ""))) for row in corpus]
    index = {cid: i for i, cid in enumerate(ids)}
    if parser:  # one candidate string for every page; it does not depend on the query
        doc_text = mmeb_text.mmeb_texts(parser, {"query": ""}, text_protocol, name, ids[:1]).candidates
    candidates = []
    for row in corpus:
        image = row.get("image") or row.get("image_path")
        pdf, page = row.get("pdf_path"), row.get("page", 0)
        if parser and (image or pdf):
            candidates.append(_authors_item(doc_text[0], image, pdf, page, roots))
            continue
        candidates.append(
            make_item(
                meta.get("tgt_inst", VISDOC_TGT_INST),
                "" if (image or pdf) else row.get("text", ""),
                image,
                None,
                pdf,
                page,
                roots,
            )
        )
    rel = _qrels(qrels, index)
    items, graded = [], []
    for row in queries:
        qid = str(row.get("query-id", row.get("_id", "")))
        if qid not in rel:  # BEIR convention: queries without a relevant document are skipped
            continue
        query = row.get("query", row.get("text", ""))
        if parser:
            t = mmeb_text.mmeb_texts(parser, {"query": query}, text_protocol, name, ids[:1])
            items.append(_authors_item(t.query, roots=roots))
        else:
            items.append(make_item(meta.get("qry_inst", VISDOC_QRY_INST), query, roots=roots))
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
