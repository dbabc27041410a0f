"""Explicit mode (UME-R1-style baseline): write a rationale, then read <gen_emb>.

Greedy generation with the library's `generate`, stopped at <gen_emb> or after
`max_new_tokens`. A rationale that never closed gets `</think>\n<gen_emb>` appended, so
every row ends in the embedding token. The embedding is then read by feeding the
written tokens back as a teacher-forced suffix (the same code path as training).
"""

from __future__ import annotations

import torch

from plume_lite.rollout import latent_rollout
from plume_lite.tokens import GEN_EMB, INFERENCE_SUFFIX


def explicit_encode(model, inputs: dict, anchor_index: torch.Tensor, return_trace: bool):
    tok = model.processor.tokenizer
    gen_id = model.token_ids[GEN_EMB]
    stop_ids = [gen_id, tok.convert_tokens_to_ids("<|im_end|>")]
    pad_id = tok.pad_token_id
    model.vlm.rope_deltas = None  # state kept between calls by transformers
    out = model.backbone.generate(
        **inputs,
        max_new_tokens=model.config.max_new_tokens,
        do_sample=False,
        eos_token_id=stop_ids,
        pad_token_id=pad_id,
    )
    written = out[:, inputs["input_ids"].shape[1] :].tolist()
    close = tok(INFERENCE_SUFFIX, add_special_tokens=False)["input_ids"]
    rows, texts = [], []
    for ids in written:
        cut = next((i for i, t in enumerate(ids) if t in stop_ids or t == pad_id), len(ids))
        ids = ids[:cut]
        text = tok.decode(ids, skip_special_tokens=False)
        texts.append((text, len(ids)))
        rows.append(ids + ([] if "</think>" in text else close) + [gen_id])
    width = max(len(r) for r in rows)
    suffix_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    suffix_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        suffix_ids[b, : len(r)] = torch.tensor(r)
        suffix_mask[b, : len(r)] = 1
    device = inputs["input_ids"].device
    suffix_ids, suffix_mask = suffix_ids.to(device), suffix_mask.to(device)
    r = latent_rollout(model.vlm, model.adapter, inputs, anchor_index, 0, suffix_ids, suffix_mask)
    last = suffix_mask.sum(1) - 1
    emb = r.suffix_hidden[torch.arange(len(rows), device=device), last]
    traces = (
        [{"mode": "explicit", "text": t, "generated_tokens": n} for t, n in texts] if return_trace else []
    )
    return emb, traces


def writing_budget(model) -> int:
    """The most tokens an explicit encoder writes per item: a PlumeModel's
    `config.max_new_tokens`, or a baseline's own `max_new_tokens` (UME-R1: 8192)."""
    budget = getattr(model, "max_new_tokens", None)
    return int(budget if budget is not None else model.config.max_new_tokens)
