"""Looking inside the reasoning phase of a PlumeModel: the states `encode` does not return.

Two probes, both using nothing but the model (plots are in plume_lite.apps.viz):

- `explicit_token_states`: the hidden state at every token of a written rationale and at
  `<gen_emb>`, re-read teacher-forced the way explicit mode reads its embedding, so the
  written rationale can be compared step by step with the latent rollout. It also takes
  the released UME-R1 encoder (plume_lite.ume_r1), re-read the way it reads its own.
- the *logit lens* (`lm_head_probs`, `top_tokens`, `logit_lens`): any state, a latent one
  included, pushed through the LM head to see which vocabulary tokens it is closest to.

    _, (trace,) = model.encode([item], mode="latent", return_trace=True)
    logit_lens(model, trace["latents"], k=3)       # K rows of (token, probability)
"""

from __future__ import annotations

import torch

from plume_lite.errors import InputError
from plume_lite.rollout import latent_rollout
from plume_lite.tokens import GEN_EMB, INFERENCE_SUFFIX
from plume_lite.ume_r1 import UmeR1Encoder, read_step


def explicit_suffix_text(rationale: str) -> str:
    """The suffix explicit mode reads after the prompt: the rationale, the closing
    `</think>\\n` when the rationale did not write it, then `<gen_emb>`.

    Args:
        rationale: text the explicit model wrote (a trace's ``"text"``).

    Returns:
        The suffix text whose tokens `explicit_token_states` returns states for.

    Example:
        >>> explicit_suffix_text("two red squares")
        'two red squares</think>\\n<gen_emb>'
    """
    return rationale + ("" if "</think>" in rationale else INFERENCE_SUFFIX) + GEN_EMB


@torch.no_grad()
def explicit_token_states(
    model, items: list, rationales: list[str], batch_size: int = 16
) -> list[torch.Tensor]:
    """Hidden state at every token of each written rationale, then at `<gen_emb>`.

    PlumeModel: the rationale is fed back teacher-forced after the item's explicit
    prompt — the same `latent_rollout(..., steps=0, suffix_ids=...)` call explicit mode
    makes — so the last row is the explicit embedding before normalisation (up to
    re-tokenising the decoded text, which can split a token differently from how it was
    generated).

    UME-R1 (`plume_lite.ume_r1.UmeR1Encoder`): its trace's text (EOS included) is
    re-tokenised and fed after its own prompt in one forward pass, up to the step it
    reads (`ume_r1.read_step`: the last `<gen_emb>` as fed, else the last token fed); one
    row per written token fed, so the last row is its explicit embedding before
    normalisation. The tokens after that step are never fed, and have no row. A text it
    read at step 0 (EOS at once) gives the one row of the prompt's last position.

    Args:
        model: a PlumeModel or an UmeR1Encoder.
        items: the query or candidate items (dicts), as passed to `encode`.
        rationales: one written rationale per item, e.g. the ``"text"`` of
            ``model.encode(items, mode="explicit", return_trace=True)[1]``.
        batch_size: items per forward pass.

    Returns:
        Per item a float32 CPU tensor [T, D]: one row per token of
        ``explicit_suffix_text(rationale)`` (UME-R1: per written token up to its read
        step), the last row at `<gen_emb>`.

    Raises:
        InputError: a model that writes no rationale (e.g. VLM2Vec), or unequal lengths.

    Example:
        >>> emb, traces = model.encode(items, mode="explicit", return_trace=True)
        >>> states = explicit_token_states(model, items, [t["text"] for t in traces])
        >>> F.normalize(states[0][-1], dim=0) @ emb[0]      # about 1
    """
    if len(items) != len(rationales):
        raise InputError(f"{len(items)} items but {len(rationales)} rationales")
    if isinstance(model, UmeR1Encoder):
        return _ume_r1_token_states(model, items, rationales, batch_size)
    if not hasattr(model, "adapter"):
        raise InputError(
            f"explicit_token_states needs a PlumeModel or the UME-R1 encoder (a model that "
            f"writes a rationale), got {type(model).__name__}"
        )
    states = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        inputs, anchor_index = model.batcher(batch, "explicit", model.device)
        suffix = [explicit_suffix_text(t) for t in rationales[start : start + batch_size]]
        suffix_ids, suffix_mask = model.batcher.suffix_ids(suffix, model.device)
        r = latent_rollout(model.vlm, model.adapter, inputs, anchor_index, 0, suffix_ids, suffix_mask)
        # right-padded: row b's own tokens are its first mask.sum() columns
        states += [r.suffix_hidden[b, : int(suffix_mask[b].sum())].float().cpu() for b in range(len(batch))]
    return states


def _ume_r1_token_states(model, items: list, rationales: list[str], batch_size: int) -> list[torch.Tensor]:
    """explicit_token_states for UME-R1: its prompt (left-padded, as `encode` builds it),
    then each row's written tokens up to its read step, right-padded; transformers
    places the M-RoPE positions from the attention mask, so padding changes no row."""
    tok, states = model.tokenizer, []
    was_training = model.backbone.training
    model.backbone.eval()
    try:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            inputs, _ = model.batcher(batch, "explicit", model.device)
            written = [
                tok(t, add_special_tokens=False)["input_ids"] for t in rationales[start : start + batch_size]
            ]
            empty = [start + i for i, ids in enumerate(written) if not ids]
            if empty:  # generate writes at least one token (its EOS)
                raise InputError(f"rationale {empty[0]} is empty; pass the trace's text of UME-R1's encode")
            steps = [read_step(ids, model.gen_id) for ids in written]
            fed = [ids[:s] for ids, s in zip(written, steps)]  # step s feeds token s - 1
            width = max(map(len, fed))
            suffix = torch.full((len(batch), width), tok.pad_token_id or 0, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, ids in enumerate(fed):
                suffix[b, : len(ids)], mask[b, : len(ids)] = torch.tensor(ids, dtype=torch.long), 1
            suffix, mask = suffix.to(model.device), mask.to(model.device)
            prompt_len = inputs["input_ids"].shape[1]
            inputs["input_ids"] = torch.cat([inputs["input_ids"], suffix], 1)
            attention = inputs["attention_mask"]
            inputs["attention_mask"] = torch.cat([attention, mask.to(attention.dtype)], 1)
            if "mm_token_type_ids" in inputs:  # written tokens are text
                types = inputs["mm_token_type_ids"]
                text = torch.zeros_like(suffix, dtype=types.dtype)
                inputs["mm_token_type_ids"] = torch.cat([types, text], 1)
            model.vlm.rope_deltas = None  # state transformers keeps between calls
            hidden = model.vlm(**inputs).last_hidden_state
            for b, s in enumerate(steps):
                # step s's state is at column prompt_len - 1 + s; rows for steps 1..s (0 if s == 0)
                rows = hidden[b, prompt_len - 1 + min(1, s) : prompt_len + s]
                states.append(rows.float().cpu())
    finally:
        model.backbone.train(was_training)
    return states


def special_token_ids(model) -> list[int]:
    """Ids of the tokenizer's added and special tokens (chat, vision and PLUME tokens).

    Args:
        model: a PlumeModel.

    Returns:
        Sorted token ids; `top_tokens(..., words_only=True)` leaves these out.

    Example:
        >>> model.token_ids["<eot>"] in special_token_ids(model)
        True
    """
    tok = model.processor.tokenizer
    return sorted(set(tok.added_tokens_decoder) | set(tok.all_special_ids))


@torch.no_grad()
def lm_head_probs(model, states) -> torch.Tensor:
    """Next-token probabilities of each hidden state through the LM head (logit lens).

    The last latent state is trained to predict the first token after the latents
    (`<eot>`); the earlier ones are never read by the head, which is what makes their
    nearest tokens worth looking at.

    Args:
        model: a PlumeModel.
        states: [T, D] tensor, or a list of [D] tensors such as a latent trace's
            ``trace["latents"]``.

    Returns:
        float32 CPU tensor [T, V]; each row sums to 1.

    Example:
        >>> probs = lm_head_probs(model, trace["latents"])     # [K, V]
    """
    head = model.backbone.lm_head
    if not isinstance(states, torch.Tensor):
        states = torch.stack(list(states))
    states = states.reshape(-1, states.shape[-1]).to(head.weight.device, head.weight.dtype)
    return head(states).float().softmax(-1).cpu()


def top_tokens(
    model, probs: torch.Tensor, k: int = 5, words_only: bool = False
) -> list[list[tuple[str, float]]]:
    """The k most probable tokens of each row of a next-token distribution.

    Args:
        model: a PlumeModel (its tokenizer decodes the ids).
        probs: [T, V] (or [V]) probabilities, e.g. from `lm_head_probs`.
        k: tokens per row.
        words_only: leave out special tokens (`special_token_ids`), keeping ordinary words.

    Returns:
        Per row a list of k (decoded token, probability) pairs, most probable first.

    Example:
        >>> top_tokens(model, lm_head_probs(model, trace["latents"]), k=1)[-1]
        [('<eot>', 0.93)]
    """
    probs = probs.reshape(-1, probs.shape[-1])
    if words_only:
        probs = probs.clone()
        probs[:, special_token_ids(model)] = 0
    tok = model.processor.tokenizer
    values, ids = probs.topk(k, dim=-1)
    return [
        [(tok.decode([int(t)]), float(p)) for t, p in zip(row_ids, row_values)]
        for row_ids, row_values in zip(ids, values)
    ]


def logit_lens(model, states, k: int = 5, words_only: bool = False) -> list[list[tuple[str, float]]]:
    """The nearest vocabulary tokens of each state: `top_tokens(lm_head_probs(states))`.

    Args:
        model: a PlumeModel.
        states: [T, D] tensor or list of [D] tensors (e.g. ``trace["latents"]``).
        k: tokens per state.
        words_only: leave out special tokens.

    Returns:
        T lists of k (decoded token, probability) pairs, most probable first.

    Example:
        >>> _, (trace,) = model.encode([item], mode="latent", return_trace=True)
        >>> for step, words in enumerate(logit_lens(model, trace["latents"], k=3), 1):
        ...     print(step, words)
    """
    return top_tokens(model, lm_head_probs(model, states), k=k, words_only=words_only)
