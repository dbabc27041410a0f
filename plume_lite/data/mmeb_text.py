"""The query and candidate texts of MMEB-v2 image and visual-document tasks, built the way
the authors' parsers build them (RELEASED_CHECKPOINTS.md §2.2, differences D14 and D15).

Why: the released PLUME, UME-R1 and VLM2Vec-V2 weights were scored on these exact
strings. plume_lite's loaders join instruction and text with a space instead, which
differs on internal " \\n", on VisDial's extra "\\n", and for ViDoRe, whose instructions
are empty in the PLUME/UME-R1 bundle but not in TIGER's VLM2Vec-V2 harness.

Each builder takes one data row and returns an `MmebTexts`: the raw parser strings
(Qwen2-VL's bare `<|image_pad|>` marks an image), the image of each side, and the
candidate names the authors rank by (`cand_name`), the positive first. `wrap` then gives
the text each protocol feeds its model:

- "vlm2vec": the raw string, unchanged (VLM2Vec-V2 is fed it as is, §4.2);
- "plume", "ume": media tokens removed and surrounding whitespace stripped, as the
  authors' collator does before adding "\\n<disc_emb>\\n" and the generation prompt
  (protocols.authors_text; protocols.authors_prompt_text renders the whole prompt).
  Every string these parsers give an image carries the image token, so the collator's
  unstripped branch (media but no token) never arises here.

Rows: image tasks are MMEB_Test_Instruct rows (`qry_inst`, `qry_text`, `qry_img_path`,
`tgt_inst`, `tgt_text[]`, `tgt_img_path[]`); visual-document tasks are BEIR query rows
(`query`) plus the corpus ids to build candidates for. Image paths stay as the row gives
them (relative to the task's image root). Video parsers are not here yet.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from plume_lite.data.storage import DataError

TEXT_PROTOCOLS = ("plume", "ume", "vlm2vec")
IMAGE_TOKEN = "<|image_pad|>"  # Qwen2-VL's image token, bare: the collator adds the vision tags
ROW_IMAGE_TOKEN = "<|image_1|>"  # the Phi-3-V token the MMEB rows were written with
# VisRAG's instructions; TIGER's ViDoRe parser uses them too, the PLUME bundle's uses "".
DOC_QRY_INST = "Find a document image that matches the given query:"
DOC_TGT_INST = "Understand the content of the provided document image."


@dataclass(frozen=True)
class MmebTexts:
    query: str
    query_image: str | None  # the row's image path, None for a text query
    candidates: tuple[str, ...]
    candidate_images: tuple[str | None, ...]  # paths; for documents the corpus id of the page
    names: tuple[str, ...]  # what the ranking is scored by; names[0] is the positive

    @property
    def label(self) -> str:
        return self.names[0]


def input_text(instruction: str, text: str | None = "", image: bool = False) -> str:
    """The authors' `process_input_text` for Qwen2-VL: instruction, " " + text if any,
    and the image token plus a space in front when the side has an image."""
    prompt = instruction
    if text:
        prompt = prompt + " " + text
    return f"{IMAGE_TOKEN} {prompt}" if image else prompt


def _field(row: dict, key: str):
    if key not in row:
        raise DataError(f"MMEB row has no {key!r} (keys: {sorted(row)})")
    return row[key]


def _targets(row: dict) -> tuple[list[str], list[str]]:
    """(captions, image paths) of a row whose candidates are images; equal lengths."""
    captions, paths = list(row.get("tgt_text") or []), list(_field(row, "tgt_img_path") or [])
    if not paths or (captions and len(captions) != len(paths)):
        raise DataError(f"MMEB row: {len(paths)} tgt_img_path for {len(captions)} tgt_text")
    return captions or [""] * len(paths), paths


def _image_query(row: dict, instruction: str) -> str:
    text = input_text(instruction, row.get("qry_text"), image=True)
    return text.replace(" \n", "\n") + "\n"  # "to stay consistent with v1 eval"


def _text_candidates(row: dict, query: str) -> MmebTexts:
    labels = tuple(_field(row, "tgt_text") or ())
    if not labels:
        raise DataError("MMEB row has an empty tgt_text (no candidates)")
    return MmebTexts(query, _field(row, "qry_img_path"), labels, (None,) * len(labels), labels)


def image_cls(row: dict) -> MmebTexts:
    """Parsers `image_cls` and `image_i2t`: an image query; each candidate is a raw text,
    named by itself."""
    instruction = (_field(row, "qry_inst") or "").replace(ROW_IMAGE_TOKEN, "")
    return _text_candidates(row, _image_query(row, instruction))


def image_qa(row: dict) -> MmebTexts:
    """Parser `image_qa`: as image_cls, but the instruction is stripped and put on its own
    line ("\\n" + instruction)."""
    instruction = "\n" + (_field(row, "qry_inst") or "").replace(ROW_IMAGE_TOKEN, "").strip()
    return _text_candidates(row, _image_query(row, instruction))


def _image_candidates(row: dict, end: str) -> tuple[str, ...]:
    """Image candidates: the target instruction, plus " " + caption when the row's first
    caption is not blank; `end` follows the no-caption string (t2i "\\n", i2i_vg "")."""
    captions, paths = _targets(row)
    instruction = (_field(row, "tgt_inst") or "").replace(ROW_IMAGE_TOKEN, "")
    if captions[0].strip():  # WebQA, EDIS, RefCOCO-Matching carry text with the image
        texts = [input_text(f"{instruction} {c}", "", image=True) for c in captions]
        return tuple(t.replace(" \n", "\n") + "\n" for t in texts)
    return (input_text(instruction, "", image=True).replace(" \n", "\n") + end,) * len(paths)


def image_t2i(row: dict, task: str = "") -> MmebTexts:
    """Parser `image_t2i`: a text query (the row's image token kept as Qwen2-VL's, VisDial
    with one more "\\n"); image candidates named by their path."""
    instruction = (_field(row, "qry_inst") or "").replace(ROW_IMAGE_TOKEN, IMAGE_TOKEN)
    query = f"{instruction} {row.get('qry_text') or ''}\n" + ("\n" if task == "VisDial" else "")
    paths = tuple(_targets(row)[1])
    return MmebTexts(query, None, _image_candidates(row, "\n"), paths, paths)


def image_i2i_vg(row: dict) -> MmebTexts:
    """Parser `image_i2i_vg`: an image query as image_qa; image candidates as t2i, but the
    no-caption string has no trailing "\\n"; named `path:caption` (caption without its
    quotes), since one image can hold several targets (RefCOCO-Matching)."""
    instruction = "\n" + (_field(row, "qry_inst") or "").replace(ROW_IMAGE_TOKEN, "").strip()
    captions, paths = _targets(row)
    names = tuple(p + ":" + c.strip('"') for p, c in zip(paths, captions))
    query = _image_query(row, instruction)
    return MmebTexts(query, _field(row, "qry_img_path"), _image_candidates(row, ""), tuple(paths), names)


def _document(row: dict, doc_ids, qry_inst: str, tgt_inst: str) -> MmebTexts:
    ids = tuple(str(d) for d in doc_ids)
    query = input_text(qry_inst, _field(row, "query"))
    return MmebTexts(query, None, (input_text(tgt_inst, "", image=True),) * len(ids), ids, ids)


def vidore(row: dict, doc_ids, protocol: str) -> MmebTexts:
    """Parser `vidore`: a text query, one page image per corpus id, named by the id.
    Instructions: "" under plume/ume (the PLUME bundle), VisRAG's under vlm2vec (TIGER)."""
    _check_protocol(protocol)
    if protocol == "vlm2vec":
        return _document(row, doc_ids, DOC_QRY_INST, DOC_TGT_INST)
    return _document(row, doc_ids, "", "")


def visrag(row: dict, doc_ids) -> MmebTexts:
    """Parser `visrag`: as vidore, with VisRAG's two instructions under every protocol."""
    return _document(row, doc_ids, DOC_QRY_INST, DOC_TGT_INST)


IMAGE_PARSERS = {
    "image_cls": image_cls,
    "image_i2t": image_cls,
    "image_qa": image_qa,
    "image_t2i": image_t2i,
    "image_i2i_vg": image_i2i_vg,
}
DOC_PARSERS = ("vidore", "visrag")


def _check_protocol(protocol: str) -> None:
    if protocol not in TEXT_PROTOCOLS:
        raise DataError(f"unknown text protocol {protocol!r}; choose one of {list(TEXT_PROTOCOLS)}")


def wrap(texts: MmebTexts, protocol: str) -> MmebTexts:
    """The texts as `protocol` feeds them (module docstring): raw for vlm2vec; media tokens
    removed and stripped for plume and ume."""
    _check_protocol(protocol)
    if protocol == "vlm2vec":
        return texts
    from plume_lite.protocols import authors_text  # lazily: protocols imports torch

    strip = lambda raw: authors_text({"text": raw})
    return replace(texts, query=strip(texts.query), candidates=tuple(strip(c) for c in texts.candidates))


def mmeb_texts(parser: str, row: dict, protocol: str, task: str = "", doc_ids=()) -> MmebTexts:
    """One row's texts under `protocol`, by the YAML's parser name (mmeb_registry gives a
    task's parser); `task` matters for VisDial, `doc_ids` for the document parsers."""
    _check_protocol(protocol)
    if parser in IMAGE_PARSERS:
        raw = image_t2i(row, task) if parser == "image_t2i" else IMAGE_PARSERS[parser](row)
    elif parser == "vidore":
        raw = vidore(row, doc_ids, protocol)
    elif parser == "visrag":
        raw = visrag(row, doc_ids)
    else:
        known = [*IMAGE_PARSERS, *DOC_PARSERS]
        raise DataError(f"no text builder for MMEB parser {parser!r} (have {known}; video: not yet)")
    return wrap(raw, protocol)
