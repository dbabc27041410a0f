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
import operator
import os
from pathlib import Path

import torch

from plume_lite.authors_media import AUTHORS_PIXELS
from plume_lite.errors import InputError
from plume_lite.files import item_kind
from plume_lite.pixel_budget import set_pixel_budget
from plume_lite.protocols import authors_prompt_text, blank_image, strip_media_tokens
from plume_lite.tokens import DISC_EMB, prompt_text

ITEM_KEYS = ("instruction", "text", "image", "video", "pdf", "page")
MAX_ASPECT_RATIO = 200  # Qwen2-VL's processor limit
MAX_TEXT_CHARS = 20_000  # per text field: ~5k tokens, far past any prompt the model was trained on
VISUAL_KEYS = ("image", "video", "pdf")  # at most one per item; values may be file paths


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


def checked_int(name: str, value, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high], or an InputError naming `name` (2.9 is not 2)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)  # ints and numpy integers; floats refused
    except TypeError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InputError(f"{name} must be {bound}, got {number}")
    return number


_PATH_TYPES = (str, os.PathLike)


def is_single_item(value) -> bool:
    """True for one item (a string, a PIL image or a dict), False for a list of them."""
    return isinstance(value, (str, dict)) or isinstance(value, _pil_types())


def as_item(value, index: int = 0) -> dict:
    """An item dict from what a user may pass: a dict as it is, a string as its text, a
    PIL image as its image (the sentence-transformers habit of plain inputs)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, _pil_types()):
        return {"image": value}
    raise InputError(f"item {index} must be a dict, a string or a PIL image, got {type(value).__name__}")


def clean_item(item, index: int = 0) -> dict:
    """A validated copy of one item, keys with value None dropped.

    Raises InputError, naming the item, for a non-dict, an unknown key, a value of the
    wrong type, text over MAX_TEXT_CHARS, several visual inputs, an empty item or a
    missing file."""
    if not isinstance(item, dict):
        raise InputError(
            f"item {index} must be a dict with keys among {ITEM_KEYS}, got {type(item).__name__}"
        )
    unknown = [k for k in item if k not in ITEM_KEYS]
    if unknown:
        raise InputError(f"item {index} has unknown key(s) {unknown}; valid keys: {', '.join(ITEM_KEYS)}")
    item = {k: v for k, v in item.items() if v is not None}
    for key in ("text", "instruction"):
        if key in item:
            if not isinstance(item[key], str):
                raise InputError(f"item {index}: {key} must be a string, got {type(item[key]).__name__}")
            if len(item[key]) > MAX_TEXT_CHARS:
                raise InputError(
                    f"item {index}: {key} is {len(item[key]):,} characters, over the "
                    f"{MAX_TEXT_CHARS:,}-character limit"
                )
    checks = {
        "image": _PATH_TYPES + (bytes,) + _pil_types(),
        "pdf": _PATH_TYPES,
        "video": _PATH_TYPES + (list, tuple),
    }
    for key, types in checks.items():
        if key in item and not isinstance(item[key], types):
            raise InputError(f"item {index}: {key} must be a file path, got {type(item[key]).__name__}")
    visual = [k for k in VISUAL_KEYS if k in item]
    if len(visual) > 1:
        raise InputError(f"item {index} has several visual inputs {visual}; give one of image, video, pdf")
    if not visual and not item.get("text") and not item.get("instruction"):
        raise InputError(f"item {index} is empty: give text, image, video or pdf")
    if "page" in item:
        if "pdf" not in item:
            raise InputError(f"item {index} has 'page' but no 'pdf'")
        item["page"] = checked_int(f"item {index}: page", item["page"], 0)
    for key in VISUAL_KEYS:
        value = item.get(key)
        if isinstance(value, _PATH_TYPES) and not Path(value).exists():
            raise InputError(f"item {index}: {key} file not found: {value}")
    return item


def validate_item(item, index: int = 0) -> None:
    """Raise InputError if `item` is not a valid item (see clean_item)."""
    clean_item(item, index)


def _pil_types() -> tuple:
    from PIL import Image

    return (Image.Image,)


def escape_special_tokens(text: str, specials: list[str]) -> str:
    """User text is text: a special-token string in it (e.g. `<|image_pad|>`, `<disc_emb>`)
    gets a word joiner (U+2060) after its first character, so the tokenizer reads it as
    characters rather than as the token."""
    for token in specials:
        if token in text:
            text = text.replace(token, token[0] + "\u2060" + token[1:])
    return text


def load_visual(item: dict, image_pipeline: str = "plume_lite", frame_sampling: str = "plume_lite"):
    """('image', PIL) | ('video', [PIL, ...]) | (None, None) for one validated item
    (a PDF page is rendered to an image), decoded, sized and sampled as the two settings
    say (plume_lite/authors_media.py)."""
    kind = item_kind(item)
    if kind == "text":
        return None, None
    from plume_lite import authors_media, media
    from plume_lite.media_cache import DECODED, file_key

    if kind == "image":
        src = item["image"]
        key = file_key(src, "image", image_pipeline)
        return "image", DECODED.get_or_load(key, lambda: authors_media.load_image(src, image_pipeline))
    if kind == "pdf":
        page = int(item.get("page", 0))
        key = file_key(item["pdf"], "pdf", page, image_pipeline)
        return "image", DECODED.get_or_load(
            key,
            lambda: authors_media.prepare_image(media.load_pdf_page(item["pdf"], page=page), image_pipeline),
        )
    src = item["video"]
    key = file_key(src, "video", image_pipeline, frame_sampling)
    return "video", DECODED.get_or_load(
        key, lambda: authors_media.load_video(src, image_pipeline, frame_sampling)
    )


def check_aspect(visual, index: int) -> None:
    """The Qwen2-VL processor refuses images more than MAX_ASPECT_RATIO times wider than
    tall (or the reverse); say so for the item instead of failing deep inside it."""
    frames = visual if isinstance(visual, list) else [visual] if visual is not None else []
    for frame in frames[:1]:
        w, h = frame.size
        if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
            raise InputError(
                f"item {index}: image is {w}x{h}, more than {MAX_ASPECT_RATIO}:1; crop or pad it"
            )


class ItemBatcher:
    def __init__(
        self,
        processor,
        instruction_prompt: str,
        protocol: str = "plume_lite",
        image_pipeline: str = "plume_lite",
        frame_sampling: str = "plume_lite",
    ):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.instruction_prompt = instruction_prompt
        self.protocol = protocol  # plume_lite | plume (plume_lite/protocols.py)
        # plume_lite | qwen_vl_utils, plume_lite | vlm2vec (plume_lite/authors_media.py)
        self.image_pipeline, self.frame_sampling = image_pipeline, frame_sampling
        if image_pipeline == "qwen_vl_utils":  # the processor bounds of the authors' evaluation
            set_pixel_budget(processor, min_pixels=AUTHORS_PIXELS[0], max_pixels=AUTHORS_PIXELS[1])
        self.disc_id = self.tokenizer.convert_tokens_to_ids(DISC_EMB)
        # longest first, so a token that contains another is escaped whole
        self.specials = sorted(
            set(self.tokenizer.all_special_tokens) | set(self.tokenizer.get_added_vocab()),
            key=len,
            reverse=True,
        )

    def _user_text(self, item: dict) -> dict:
        for key in ("text", "instruction"):
            if key in item:
                # the authors' collator drops media tokens from T: before escaping, which
                # would otherwise keep them as plain characters
                text = strip_media_tokens(item[key]) if self.protocol == "plume" else item[key]
                item[key] = escape_special_tokens(text, self.specials)
        return item

    def __call__(self, items: list, mode: str, device) -> tuple[dict, torch.Tensor]:
        """Processor inputs for a left-padded batch, and the column of <disc_emb> per row."""
        items = [self._user_text(clean_item(item, i)) for i, item in enumerate(items)]
        texts, images, videos = [], [], []
        for i, item in enumerate(items):
            kind, visual = load_visual(item, self.image_pipeline, self.frame_sampling)
            check_aspect(visual, i)
            if kind is None and self.protocol == "plume":  # the authors' text items carry a blank image
                kind, visual = "image", blank_image()
            if kind == "image":
                images.append(visual)
            elif kind == "video":
                videos.append(visual)
            texts.append(self.prompt(item, mode))
        self.tokenizer.padding_side = "left"  # so the last column is <bot> / <disc_emb> for every row
        kwargs = {}
        if videos:
            kwargs["videos"] = videos
        try:
            inputs = self.processor(
                text=texts, images=images or None, padding=True, return_tensors="pt", **kwargs
            )
        except ValueError as e:  # the processor's own limits, in one line
            raise InputError(f"the processor refused this batch: {str(e).splitlines()[0]}") from None
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        return inputs, self.anchor_index(inputs["input_ids"])

    def prompt(self, item: dict, mode: str) -> str:
        """The prefix text of one validated item under this batcher's protocol."""
        if self.protocol == "plume":
            return authors_prompt_text(item, self.instruction_prompt, mode, item_kind(item))
        return prompt_text(item, self.instruction_prompt, mode)

    def anchor_index(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The column of the last <disc_emb> of each row (the authors read the last one);
        a row without one is an InputError, never a silent column 0."""
        hits = input_ids == self.disc_id
        if not hits.any(dim=1).all():
            row = int((~hits.any(dim=1)).nonzero()[0])
            raise InputError(f"row {row} of the batch has no {DISC_EMB} token to read the anchor at")
        return input_ids.shape[1] - 1 - hits.flip(1).int().argmax(dim=1)

    def suffix_ids(self, texts: list, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded token ids and mask of suffix texts (they follow the cache)."""
        self.tokenizer.padding_side = "right"
        enc = self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)
