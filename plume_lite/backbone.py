"""Backbones: load any Qwen2-VL / Qwen2.5-VL checkpoint, or build a tiny one offline.

The tiny backbone has the real Qwen2-VL architecture (vision tower, merger, M-RoPE
decoder) at toy sizes, a byte-level BPE tokenizer trained here on the project's own
vocabulary (any text still encodes, byte by byte), the upstream image and video
processors and a chat template. It is saved with `save_pretrained` and reloads
through `load_backbone` exactly like a hub checkpoint, so every code path that
serves Qwen/Qwen2-VL-2B-Instruct is exercised on CPU in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from plume_lite.errors import CheckpointError

QWEN2VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Words the tiny tokenizer learns merges for; everything else falls back to bytes.
_VOCAB_TEXT = """
Represent the above input for retrieval. Represent the given image, video, document page or text.
Find the image, video or page that matches the description. Answer the question about the image.
Which class does this belong to? Select the region described. Which moment of the clip shows it?
the a an of in on at to is are was were there how many which what where when who left right above
below top bottom middle first last before after moved moving still count number more fewer than
equal same different colour color shape object objects image video clip frame page document chart
bar bars line table title text red green blue yellow purple orange black white gray pink brown cyan
circle square triangle star cross diamond ring small large big tiny one two three four five six seven
eight nine ten zero threshold higher lower greater less most least answer because so therefore
think step first second then finally summary result is not and or with without each every
"""


def _train_tokenizer(vocab_size: int, extra_text: str = ""):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN2VL_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: any text encodes
        show_progress=False,
    )
    lines = [line for line in (_VOCAB_TEXT + extra_text).splitlines() if line.strip()]
    tok.train_from_iterator(lines * 4 + [" ".join(str(i) for i in range(100))], trainer=trainer)
    return tok


# Qwen2-VL-2B-Instruct shapes, for measuring speed and memory with random weights
# (the real tokenizer is not available offline; the vocabulary is padded to its size).
QWEN2VL_2B_SIZES = dict(
    hidden_size=1536,
    num_layers=28,
    num_heads=12,
    num_kv_heads=2,
    intermediate_size=8960,
    vision_depth=32,
    vision_dim=1280,
    vision_heads=16,
    patch_size=14,
    image_pixels=448 * 448,
    pad_vocab_to=151936,
)


def build_tiny_backbone(out_dir, seed: int = 0, **sizes) -> Path:
    """Build a tiny Qwen2-VL backbone from code, save it to `out_dir`, return the path.

    Same seed and sizes give byte-identical files."""
    out_dir = Path(out_dir)
    model, processor = make_backbone(seed=seed, **sizes)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def make_backbone(
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 256,
    vision_depth: int = 2,
    vision_dim: int = 64,
    vision_heads: int = 2,
    patch_size: int = 8,
    image_pixels: int = 64 * 64,
    vocab_size: int = 1024,
    vocab_text: str = "",
    pad_vocab_to: int | None = None,
    dtype: torch.dtype = torch.float32,
):
    """(model, processor) of a randomly initialised Qwen2-VL-architecture backbone, in memory.

    `vocab_text`: more words for the tokenizer to learn merges for (the pre-trained tiny
    backbone adds its corpus's words); "" gives the default tiny tokenizer."""
    from transformers import (
        Qwen2TokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    head_dim = hidden_size // num_heads
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"hidden_size/num_heads = {head_dim} must be even and >= 6 for M-RoPE")
    half = head_dim // 2  # M-RoPE splits the rotary half-dimensions over (t, h, w)
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]

    backend = _train_tokenizer(vocab_size, vocab_text)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN2VL_SPECIAL_TOKENS}

    pixel_size = {"shortest_edge": (2 * patch_size) ** 2, "longest_edge": image_pixels}
    image_processor = Qwen2VLImageProcessor(
        size=pixel_size, patch_size=patch_size, temporal_patch_size=2, merge_size=2
    )
    video_processor = Qwen2VLVideoProcessor(
        size=pixel_size, patch_size=patch_size, temporal_patch_size=2, merge_size=2
    )
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )

    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=max(len(tokenizer), pad_vocab_to or 0),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_kv_heads,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=vision_depth,
            embed_dim=vision_dim,
            hidden_size=hidden_size,
            num_heads=vision_heads,
            mlp_ratio=4 if vision_dim >= 1024 else 2,
            patch_size=patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # a 2B model in bf16 never exists in float32 first
    try:
        model = Qwen2VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model, processor


def tiny_backbone_path(seed: int = 0) -> Path:
    """The tiny backbone in the user cache (built on first use)."""
    from plume_lite.io import atomic_dir
    from plume_lite.runtime import cache_root

    path = cache_root() / f"tiny-backbone-seed{seed}"
    if not (path / "config.json").exists():
        with atomic_dir(path) as tmp:
            build_tiny_backbone(tmp, seed=seed)
    return path


# The tiny backbone after `plume-lite pretrain` (captions and lookups; README §Pre-trained
# tiny backbone), shipped inside the package so a fresh clone never has to pre-train.
PRETRAINED_TINY = "tiny-pretrained"


def pretrained_tiny_path() -> Path:
    path = Path(__file__).resolve().parent / "weights" / PRETRAINED_TINY
    if not (path / "config.json").exists():
        raise CheckpointError(
            f"the shipped pre-trained tiny backbone is missing from {path}; "
            f"rebuild it with `plume-lite pretrain --out {path}`"
        )
    return path


def load_backbone(name_or_path: str, dtype: torch.dtype | None = None, device=None):
    """Load (model, processor) for a Qwen2-VL or Qwen2.5-VL hub id or local folder.

    "tiny" / "tiny:SEED" resolve to the offline random-init tiny backbone,
    "tiny-pretrained" to the shipped pre-trained one."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    name = str(name_or_path)
    if name == PRETRAINED_TINY:
        name = str(pretrained_tiny_path())
    elif name == "tiny" or name.startswith("tiny:"):
        name = str(tiny_backbone_path(int(name.split(":")[1]) if ":" in name else 0))
    local = Path(name)
    if local.exists() and not (local / "config.json").exists():
        raise CheckpointError(f"{local} is not a backbone folder: no config.json in it")
    if not local.exists() and (name.startswith((".", "/", "~")) or os.sep + os.sep in name):
        raise CheckpointError(f"backbone folder {name} does not exist")
    try:
        processor = AutoProcessor.from_pretrained(name)
        model = AutoModelForImageTextToText.from_pretrained(name, dtype=dtype or torch.float32)
    except OSError as e:  # hub unreachable, repo missing, files missing
        raise CheckpointError(f"could not load backbone {name!r}: {str(e).splitlines()[0]}") from None
    if model.config.model_type not in ("qwen2_vl", "qwen2_5_vl"):
        raise CheckpointError(
            f"{name} is a {model.config.model_type} model; "
            "plume_lite supports Qwen2-VL and Qwen2.5-VL backbones"
        )
    if device is not None:
        model.to(device)
    return model, processor
