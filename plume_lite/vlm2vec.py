"""VLM2Vec-V2.0 as TIGER's harness ran it (RELEASED_CHECKPOINTS.md §4.2, D23).

One forward pass over the raw parser string, no chat template:
- the item's text as it is (the MMEB builders' "vlm2vec" strings, plume_lite.data.mmeb_text);
  an item with an instruction gets `process_input_text`: instruction, " " + text;
  a visual item whose string holds no media token gets "<|image_pad|> " (or
  "<|video_pad|> ") in front, as `process_input_text` puts it;
- bare `<|image_pad|>` / `<|video_pad|>`, no `<|vision_start|>` / `<|vision_end|>`;
- text-only items get no image; images under 28 px on a side become 56x56;
- the processor bounds [3136, 1003520] px, no qwen_vl_utils resize before it; video
  frames sampled as VLM2Vec does (plume_lite/authors_media.py);
- positions 1-D: TIGER's vendored `get_rope_index` finds media by <|vision_start|>,
  finds none, and gives every valid token `arange` on all three M-RoPE axes (padding 1).
  transformers 5 finds media through `mm_token_type_ids` and would give image tokens
  3-D positions, so the positions are passed explicitly (positions="mrope" leaves them
  to transformers, which is not what VLM2Vec-V2 was scored with);
- the embedding is the last position's final hidden state (batches are left-padded),
  L2-normalised.

Weights: a full Qwen2-VL folder, or a PEFT LoRA folder merged into its base on load.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plume_lite.authors_media import VLM2VEC, to_rgb
from plume_lite.baseline_encoder import BaselineEncoder
from plume_lite.baseline_loading import baseline_id, load_backbone
from plume_lite.errors import InputError
from plume_lite.files import item_kind
from plume_lite.items import check_aspect, clean_item, escape_special_tokens
from plume_lite.pixel_budget import set_pixel_budget

__all__ = ["Vlm2VecEncoder", "vlm2vec_text", "PIXELS", "POSITIONS"]

IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
PIXELS = (28 * 28 * 4, 28 * 28 * 1280)  # DataArguments' resize_min_pixels / resize_max_pixels
SMALL_SIDE, SMALL_SIZE = 28, (56, 56)  # an image under 28 px on a side is resized to 56x56
POSITIONS = ("vlm2vec", "mrope")
MEDIA_TOKEN = {"image": IMAGE_PAD, "pdf": IMAGE_PAD, "video": VIDEO_PAD}


def vlm2vec_text(item: dict, kind: str) -> str:
    """The string fed to the processor for one validated item (module docstring)."""
    instruction, text = item.get("instruction"), item.get("text")
    if instruction:
        prompt = instruction + (" " + text if text else "")
    else:
        prompt = text or ""
    token = MEDIA_TOKEN.get(kind)
    if token is not None and token not in prompt:
        prompt = f"{token} {prompt}"
    return prompt


def load_vlm2vec_visual(item: dict, kind: str):
    """The item's image (RGB, no EXIF orientation, none of qwen_vl_utils' resizing) or its
    frames (VLM2Vec's sampling), None for text."""
    from plume_lite import authors_media, media

    if kind == "text":
        return None
    if kind == "video":
        return authors_media.load_video(item["video"], "plume_lite", VLM2VEC)
    if kind == "pdf":
        img = media.load_pdf_page(item["pdf"], page=int(item.get("page", 0)))
    else:
        img = media.load_image(item["image"], convert=to_rgb)
    if min(img.size) < SMALL_SIDE:
        img = img.resize(SMALL_SIZE)
    return img


def vlm2vec_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[3, B, S] positions: 0, 1, … over each row's valid tokens on all three axes, 1 at
    padding (what the vendored get_rope_index gives an input without <|vision_start|>)."""
    pos = attention_mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(attention_mask == 0, 1)
    return pos.unsqueeze(0).expand(3, -1, -1)


class Vlm2VecEncoder(BaselineEncoder):
    """VLM2Vec-V2: one pass, last-token pooling (module docstring).

    Build it with `Vlm2VecEncoder.from_pretrained(path_or_hub_id)`."""

    modes = ("direct",)
    name = "vlm2vec"

    def __init__(self, backbone, processor, checkpoint_id: str, positions: str = "vlm2vec"):
        super().__init__(backbone, processor, checkpoint_id)
        if positions not in POSITIONS:
            raise InputError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.positions = positions
        set_pixel_budget(processor, min_pixels=PIXELS[0], max_pixels=PIXELS[1])
        # user text is text, except the two media tokens that mark where the media go
        self.specials = sorted(
            (set(self.tokenizer.all_special_tokens) | set(self.tokenizer.get_added_vocab()))
            - {IMAGE_PAD, VIDEO_PAD},
            key=len,
            reverse=True,
        )

    @classmethod
    def from_pretrained(cls, path_or_hub_id, device=None, dtype=None, positions: str = "vlm2vec"):
        """Load VLM2Vec-V2 weights: a full Qwen2-VL folder (or hub id), or a PEFT LoRA
        folder (`adapter_config.json`) whose `base_model_name_or_path` is loaded and the
        LoRA merged into it. Nothing is added to the tokenizer or resized.

        Args:
            device: where to run (None: the CPU).
            dtype: weights' dtype (None: float32; "auto": as stored).
            positions: "vlm2vec" (1-D, as scored) or "mrope" (transformers' own).
        """
        backbone, processor, folder = load_backbone(path_or_hub_id, dtype=dtype, allow_lora=True)
        settings = {"protocol": cls.name, "positions": positions}
        encoder = cls(backbone, processor, baseline_id(cls.name, folder, settings), positions)
        return encoder.to(device) if device is not None else encoder

    def batch_inputs(self, items: list, offset: int = 0) -> dict:
        """Processor inputs of a left-padded batch (items validated here)."""
        texts, images, videos = [], [], []
        for i, item in enumerate(items):
            item = clean_item(item, offset + i)
            kind = item_kind(item)
            visual = load_vlm2vec_visual(item, kind)
            check_aspect(visual, offset + i)
            for key in ("text", "instruction"):
                if key in item:
                    item[key] = escape_special_tokens(item[key], self.specials)
            text = vlm2vec_text(item, kind)
            for token in (IMAGE_PAD, VIDEO_PAD):
                want = int(MEDIA_TOKEN.get(kind) == token)
                if text.count(token) != want:
                    raise InputError(
                        f"item {offset + i}: its text holds {text.count(token)} {token} for {want} "
                        f"{'video' if token == VIDEO_PAD else 'image'}(s)"
                    )
            if visual is not None:
                (videos if kind == "video" else images).append(visual)
            texts.append(text)
        self.tokenizer.padding_side = "left"  # the last column is every row's last token
        kwargs = {"videos": videos} if videos else {}
        try:
            inputs = self.processor(
                text=texts, images=images or None, padding=True, return_tensors="pt", **kwargs
            )
        except ValueError as e:
            raise InputError(f"the processor refused this batch: {str(e).splitlines()[0]}") from None
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}

    def _encode_batch(self, items, mode, offset):
        inputs = self.batch_inputs(items, offset)
        if self.positions == "vlm2vec":
            inputs.pop("mm_token_type_ids", None)  # the positions are given, nothing to find media by
            inputs["position_ids"] = vlm2vec_positions(inputs["attention_mask"])
        self.vlm.rope_deltas = None
        out = self.vlm(**inputs)
        emb = out.last_hidden_state[:, -1]
        return F.normalize(emb.float(), dim=-1), [{"mode": "direct", "read": "last token"} for _ in items]
