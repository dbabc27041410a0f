"""Inference protocols: how an item becomes a prompt, and where the latent steps sit.

Two presets, saved in the PlumeConfig (`protocol`, `positions`) so a checkpoint always
runs the way it was meant to (docs/method.md §Running the authors' released models):

protocol="plume_lite" (default): this package's prompt (tokens.prompt_text), no system
    turn, the instruction prompt of the config, text-only items carry no image.
protocol="plume": the prompt of the authors' evaluation (their collator rendered by the
    Qwen2-VL chat template), needed by their released weights:

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\n<vision>{T}\n<disc_emb>\n{GP}<|im_end|>\n<|im_start|>assistant\n<think><bot>

    T is the item's instruction and text joined by a space, stripped of surrounding
    whitespace; <vision> is the item's image or video placeholder, and for a text-only
    item a blank image (a white 28x28 JPEG, decoded and resized to 56x56 as
    qwen_vl_utils does); GP is AUTHORS_INSTRUCTION, the config's `instruction_prompt`.

positions="mrope" (default): latent step j at p_bot + 1 + j, the next text position
    under M-RoPE (rollout.py). positions="authors": latent step j at L + j, L the row's
    prefix length in tokens (the KV-cache length, image and video tokens counted one
    by one), the suffix after them; this is where the authors' evaluation put them.
"""

from __future__ import annotations

import io
import math

from plume_lite.config import POSITIONS, PROTOCOLS
from plume_lite.rollout import PostSuffixDecode
from plume_lite.tokens import BOT, DISC_EMB, GEN_EMB, VISION_PLACEHOLDER

__all__ = [
    "PROTOCOLS",
    "POSITIONS",
    "AUTHORS_INSTRUCTION",
    "authors_prompt_text",
    "blank_image",
    "post_suffix_decoder",
]

AUTHORS_SYSTEM_PROMPT = "You are a helpful assistant."  # Qwen2-VL's default system turn
# the authors' generation prompt (one line); it holds a literal <gen_emb>, so every user
# turn contains one: embeddings are read only after the prompt (suffix or generated part)
AUTHORS_INSTRUCTION = (
    "Represent the above input text, images, videos, or any combination of the three as embeddings. "
    "First output the thinking process in <think> </think> tags and then summarize the entire input "
    "in a word or sentence. Finally, use the <gen_emb> tag to represent the entire input."
)
MEDIA_TOKENS = ("<|video_pad|>", "<|image_pad|>")

# qwen_vl_utils' first resize (the authors' image pipeline, stage 1)
QWEN_VL_FACTOR = 28
QWEN_VL_MIN_PIXELS = 4 * 28 * 28
QWEN_VL_MAX_PIXELS = 16384 * 28 * 28
BLANK_SIZE = 28


def strip_media_tokens(text: str) -> str:
    """`text` without the media placeholders the authors' collator removes from T."""
    for token in MEDIA_TOKENS:
        text = text.replace(token, "")
    return text


def authors_text(item: dict) -> str:
    """T of an item under protocol "plume": instruction and text, media tokens removed, stripped."""
    return strip_media_tokens(" ".join(s for s in (item.get("instruction"), item.get("text")) if s)).strip()


def authors_prompt_text(item: dict, instruction_prompt: str, mode: str, kind: str) -> str:
    """The full prefix text of one item under protocol "plume" (see the module docstring).

    `kind` is the item's visual kind ("image", "video" or "text"; a PDF page is an image);
    a text item gets the image placeholder of its blank image. direct mode stops at
    <disc_emb>, which under causal attention is the authors' one-pass read at <disc_emb>."""
    vision = VISION_PLACEHOLDER["video" if kind == "video" else "image"]
    head = f"<|im_start|>system\n{AUTHORS_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{vision}"
    head += f"{authors_text(item)}\n{DISC_EMB}"
    if mode == "direct":
        return head
    head += f"\n{instruction_prompt}<|im_end|>\n<|im_start|>assistant\n<think>"
    return head + BOT if mode == "latent" else head


def smart_resize(
    height: int,
    width: int,
    factor: int = QWEN_VL_FACTOR,
    min_pixels: int = QWEN_VL_MIN_PIXELS,
    max_pixels: int = QWEN_VL_MAX_PIXELS,
) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor`, area within [min_pixels, max_pixels]
    (qwen_vl_utils' rule, aspect ratio kept as well as the rounding allows)."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def blank_image():
    """The image of a text-only item under protocol "plume": a white 28x28 RGB image saved
    as JPEG (Pillow's defaults), decoded, and resized by qwen_vl_utils' rule to 56x56 with
    PIL's default resampling, as the authors' collator and qwen_vl_utils produce it."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (BLANK_SIZE, BLANK_SIZE), (255, 255, 255)).save(buffer, format="JPEG")
    img = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    h, w = smart_resize(img.height, img.width)
    return img.resize((w, h))


def post_suffix_decoder(backbone, tokenizer, max_new_tokens: int) -> PostSuffixDecode | None:
    """The post-suffix decoding of the authors' evaluation for `max_new_tokens` > 0: argmax
    of the backbone's lm_head, stopping at <gen_emb> or at the EOS ids of the checkpoint's
    generation_config (the tokenizer's EOS when it has none); None for 0."""
    if not max_new_tokens:
        return None
    eos = getattr(getattr(backbone, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    stop = tuple(int(e) for e in (eos if isinstance(eos, (list, tuple, set)) else [eos]) if e is not None)
    gen_id = tokenizer.convert_tokens_to_ids(GEN_EMB)
    return PostSuffixDecode(backbone.get_output_embeddings(), gen_id, stop, int(max_new_tokens))
