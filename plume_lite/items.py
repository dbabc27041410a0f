"""Items, and from item dicts to one left-padded processor batch.

An *item* is a plain dict, the unit `PlumeModel.encode` embeds, with any of:
  instruction: str   task instruction (MMEB `qry_inst` / `tgt_inst`)
  text: str          the text of the query or candidate
  image: str | PIL.Image            path (absolute) or loaded image
  video: str | list[str | PIL.Image] mp4/webm/gif path, or a list of frames
  pdf: str, page: int                a document page (0-based page index)

Items are validated here, so a wrong key or a missing file fails with a message that
names the item, before any tensor work. `item_digest` is the one definition of "the
same item" (embedding caches, de-duplication, the loss's duplicate mask). Media
decoding is plume_lite.media's job.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from plume_lite.errors import InputError
from plume_lite.tokens import DISC_EMB, prompt_text

ITEM_KEYS = ("instruction", "text", "image", "video", "pdf", "page")
VISUAL_KEYS = ("image", "video", "pdf")   # at most one per item; values may be file paths


def content_hash(obj) -> str:
    """sha256 of the canonical JSON of `obj`."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _canonical(value, media=False, stamp_files=True):
    """A JSON-able stand-in for an item value that changes when its content changes."""
    if isinstance(value, (list, tuple)):
        return [_canonical(v, media, stamp_files) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v, media or k in VISUAL_KEYS, stamp_files) for k, v in value.items()}
    if hasattr(value, "tobytes") and hasattr(value, "mode") and hasattr(value, "size"):
        # a PIL image: hash its pixels
        return {"pil": [value.mode, list(value.size), hashlib.sha256(value.tobytes()).hexdigest()]}
    if stamp_files and media and isinstance(value, (str, os.PathLike)) and os.path.isfile(value):
        st = os.stat(value)
        return {"file": [os.path.abspath(value), st.st_size, st.st_mtime_ns]}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise InputError(f"cannot hash item value of type {type(value).__name__}")


def item_digest(item: dict, stamp_files: bool = True) -> str:
    """The one definition of "the same item": a sha256 of its canonical content.

    Key order does not matter; a PIL image is hashed by its pixels. A media file is
    named by its absolute path and, with `stamp_files`, also by its size and mtime (an
    edited file is a new item, which is what a cache needs; reading the bytes of every
    video would be too slow). Without `stamp_files` the path alone names it, so every
    process of a distributed run derives the same id from the same item."""
    return content_hash(_canonical(item, stamp_files=stamp_files))


def validate_item(item, index: int = 0) -> None:
    if not isinstance(item, dict):
        raise InputError(f"item {index} must be a dict with keys among {ITEM_KEYS}, got {type(item).__name__}")
    unknown = [k for k in item if k not in ITEM_KEYS]
    if unknown:
        raise InputError(f"item {index} has unknown key(s) {unknown}; valid keys: {', '.join(ITEM_KEYS)}")
    visual = [k for k in VISUAL_KEYS if item.get(k) is not None]
    if len(visual) > 1:
        raise InputError(f"item {index} has several visual inputs {visual}; give one of image, video, pdf")
    if not visual and not item.get("text") and not item.get("instruction"):
        raise InputError(f"item {index} is empty: give text, image, video or pdf")
    if "page" in item and "pdf" not in item:
        raise InputError(f"item {index} has 'page' but no 'pdf'")
    for key in ("image", "video", "pdf"):
        value = item.get(key)
        if isinstance(value, (str, Path)) and not Path(value).exists():
            raise InputError(f"item {index}: {key} file not found: {value}")


def load_visual(item: dict):
    """('image', PIL) | ('video', [PIL, ...]) | (None, None) for one validated item."""
    if not any(item.get(k) is not None for k in VISUAL_KEYS):
        return None, None
    from plume_lite import media

    if item.get("image") is not None:
        return "image", media.load_image(item["image"])
    if item.get("pdf") is not None:
        return "image", media.load_pdf_page(item["pdf"], page=int(item.get("page", 0)))
    return "video", media.load_video(item["video"])


class ItemBatcher:
    def __init__(self, processor, instruction_prompt: str):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.instruction_prompt = instruction_prompt
        self.disc_id = self.tokenizer.convert_tokens_to_ids(DISC_EMB)

    def __call__(self, items: list, mode: str, device) -> tuple[dict, torch.Tensor]:
        """Processor inputs for a left-padded batch, and the column of <disc_emb> per row."""
        for i, item in enumerate(items):
            validate_item(item, i)
        texts, images, videos = [], [], []
        for item in items:
            kind, visual = load_visual(item)
            if kind == "image":
                images.append(visual)
            elif kind == "video":
                videos.append(visual)
            texts.append(prompt_text(item, self.instruction_prompt, mode))
        self.tokenizer.padding_side = "left"   # so the last column is <bot> / <disc_emb> for every row
        kwargs = {}
        if videos:
            kwargs["videos"] = videos
        inputs = self.processor(text=texts, images=images or None, padding=True,
                                return_tensors="pt", **kwargs)
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        anchor_index = (inputs["input_ids"] == self.disc_id).int().argmax(dim=1)
        return inputs, anchor_index

    def suffix_ids(self, texts: list, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded token ids and mask of suffix texts (they follow the cache)."""
        self.tokenizer.padding_side = "right"
        enc = self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)
