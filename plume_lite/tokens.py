"""PLUME's special tokens and the text layout of a query or candidate
(docs/method.md §Tokens and sequence layout).

    <|im_start|>user\n[vision] {instruction} {text}\n<disc_emb>\n{prompt}<|im_end|>\n
    <|im_start|>assistant\n<think>            <- explicit: the rationale is written here
                          <think><bot>       <- latent: K latent steps follow
    then <eot></think>\n<gen_emb>            (latent suffix at inference)
"""

from __future__ import annotations

import torch

from plume_lite.files import item_kind

DISC_EMB, BOT, CT, EOT, GEN_EMB = "<disc_emb>", "<bot>", "<ct>", "<eot>", "<gen_emb>"
PLUME_TOKENS = (DISC_EMB, BOT, CT, EOT, GEN_EMB)
# Each new row starts as a copy of an existing token's row (never random), chosen so
# the new token begins with a role-like meaning the backbone already knows.
INIT_FROM = {
    DISC_EMB: "<|endoftext|>",
    BOT: "<|vision_start|>",
    CT: "<|vision_pad|>",
    EOT: "<|vision_end|>",
    GEN_EMB: "<|im_end|>",
}
INFERENCE_SUFFIX = "</think>\n"  # what stands between <eot> and <gen_emb> at inference
VISION_PLACEHOLDER = {
    "image": "<|vision_start|><|image_pad|><|vision_end|>",
    "video": "<|vision_start|><|video_pad|><|vision_end|>",
}


def add_plume_tokens(model, tokenizer) -> dict[str, int]:
    """Add the PLUME tokens (idempotent) and initialise their embedding rows; return their ids."""
    missing = [t for t in PLUME_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in PLUME_TOKENS}
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    with torch.no_grad():  # only rows of tokens added now: a loaded checkpoint keeps its own
        for token in missing:
            source = tokenizer.convert_tokens_to_ids(INIT_FROM[token])
            emb.weight[ids[token]] = emb.weight[source]
            if out is not None and out.weight is not emb.weight:
                out.weight[ids[token]] = out.weight[source]
    return ids


def user_prompt(item: dict, instruction_prompt: str) -> str:
    """The user turn of an item (vision placeholder, instruction, text, anchor token)."""
    parts = []
    kind = item_kind(item)
    if kind != "text":  # a PDF page reaches the model as an image
        parts.append(VISION_PLACEHOLDER["video" if kind == "video" else "image"])
    words = " ".join(s for s in (item.get("instruction"), item.get("text")) if s)
    parts.append(words)
    return "".join(parts) + f"\n{DISC_EMB}\n{instruction_prompt}"


def prompt_text(item: dict, instruction_prompt: str, mode: str) -> str:
    """Full prefix text for one item. direct stops at <disc_emb>: nothing after it matters."""
    user = user_prompt(item, instruction_prompt)
    if mode == "direct":
        return "<|im_start|>user\n" + user.split(DISC_EMB)[0] + DISC_EMB
    head = f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n<think>"
    return head + BOT if mode == "latent" else head
