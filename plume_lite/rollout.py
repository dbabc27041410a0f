"""The batched latent rollout (docs/method.md §Latent rollout) and its no-cache reference.

1. Prefix forward over a left-padded batch (everything up to <bot>), with KV cache.
   z0 = h[<bot>] (the last column), a = h[<disc_emb>].
2. K times: x_j = Adapter(z_j, j, a); one decoder step with inputs_embeds = x_j.
3. Suffix forward (<eot></think>\n<gen_emb>, or teacher-forced text) on the cache.

Positions: every row carries its own next text position (image and video tokens
compress M-RoPE positions, so it is not the cache length); latent step j sits at
p_bot + 1 + j on all three axes and the suffix continues from there, the same in
training and inference. Explicit position_ids go to every cached call.
`positions="authors"` instead starts the latent steps at the row's prefix length in
tokens (the KV-cache length), where the authors' evaluation puts them and their
released weights expect them (plume_lite/protocols.py).

`checkpoint_prefix=True` (training) runs the prefix pass under non-reentrant
torch.utils.checkpoint: its activations are recomputed in the backward instead of
kept. HF's gradient checkpointing cannot do this here (it turns the cache off);
checkpointing the whole prefix call keeps its KV cache, whose tensors are outputs of
the checkpointed region, and the recomputation (RNG state replayed) rebuilds them.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import torch

from plume_lite.adapter import TransitionAdapter


def _accepts(fn, name: str) -> bool:
    # cached per function: inspect.signature costs ~0.7 ms, once per latent step otherwise
    return name in _parameters(getattr(fn, "__func__", fn))


@functools.lru_cache(maxsize=256)
def _parameters(fn) -> frozenset:
    return frozenset(inspect.signature(fn).parameters)


def _cache_kwargs(module, cache) -> dict:
    # transformers >= 5.24 calls it `cache`; 5.17 - 5.23 `past_key_values`.
    key = "cache" if _accepts(module.forward, "cache") else "past_key_values"
    return {key: cache}


def _output_cache(out):
    return getattr(out, "cache", None) or getattr(out, "past_key_values", None)


def model_inputs(vlm, inputs: dict) -> dict:
    """Keep only the processor outputs this transformers version's forward accepts."""
    params = inspect.signature(vlm.forward).parameters
    return {k: v for k, v in inputs.items() if k in params}


def rope_positions(vlm, inputs: dict) -> torch.Tensor:
    """M-RoPE position ids [3, B, L] of a (left-padded) batch; padding gets 0."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    kwargs = dict(
        input_ids=ids,
        image_grid_thw=inputs.get("image_grid_thw"),
        video_grid_thw=inputs.get("video_grid_thw"),
        attention_mask=mask,
    )
    if _accepts(vlm.get_rope_index, "mm_token_type_ids"):
        kwargs["mm_token_type_ids"] = inputs.get("mm_token_type_ids", torch.zeros_like(ids))
    if inputs.get("second_per_grid_ts") is not None and _accepts(vlm.get_rope_index, "second_per_grid_ts"):
        # Qwen2.5-VL spaces a video's temporal positions by the seconds between its frames
        kwargs["second_per_grid_ts"] = inputs["second_per_grid_ts"]
    positions, _ = vlm.get_rope_index(**kwargs)
    return positions


@dataclass
class CachedSequence:
    """A batch's KV cache plus what the next cached call needs."""

    cache: object
    attention_mask: torch.Tensor  # [B, L_so_far]
    next_pos: torch.Tensor  # [B] text position of the next token


def run_prefix(
    vlm, inputs: dict, use_cache: bool = True, positions: str = "mrope", *, checkpoint_prefix: bool = False
):
    """Prefix forward; returns (last-layer hidden [B, L, D], CachedSequence or None).

    The next position of each row is its largest M-RoPE position + 1 ("mrope"), or its
    number of prefix tokens ("authors": the cache length of the unpadded row).
    `checkpoint_prefix`: recompute the pass in the backward (see the module docstring);
    it changes memory, not results, and does nothing where no gradient is recorded."""
    rope = rope_positions(vlm, inputs)
    kwargs = model_inputs(vlm, inputs)
    if checkpoint_prefix and torch.is_grad_enabled():
        hidden, cache = checkpointed_forward(vlm, kwargs, rope, use_cache)
    else:
        out = vlm(**kwargs, position_ids=rope, use_cache=use_cache)
        hidden, cache = out.last_hidden_state, _output_cache(out) if use_cache else None
    if not use_cache:
        return hidden, None
    mask = inputs["attention_mask"]
    if positions == "authors":
        next_pos = mask.sum(dim=1).to(rope.dtype)
    elif positions == "mrope":
        next_pos = rope.amax(dim=(0, 2)) + 1
    else:
        raise ValueError(f"positions must be 'mrope' or 'authors', got {positions!r}")
    return hidden, CachedSequence(cache, mask, next_pos)


def cache_tensors(cache) -> list:
    """The key and value tensors of every layer of a transformers Cache, in order."""
    if cache is None:
        return []
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


def checkpointed_forward(vlm, kwargs: dict, rope: torch.Tensor, use_cache: bool):
    """`vlm(**kwargs)` under non-reentrant activation checkpointing; (hidden, cache).

    The region returns the hidden states and every cached key/value tensor, so those
    are kept and carry gradients to the checkpointed pass; everything inside it is
    recomputed in the backward. The recomputation builds a second cache that is
    thrown away: the cache used afterwards is the first call's, holding exactly the
    returned tensors."""
    from torch.utils.checkpoint import checkpoint

    first: dict = {}

    def forward():
        out = vlm(**kwargs, position_ids=rope, use_cache=use_cache)
        cache = _output_cache(out) if use_cache else None
        first.setdefault("cache", cache)  # the recomputation's cache is discarded
        return (out.last_hidden_state, *cache_tensors(cache))

    hidden, *kv = checkpoint(forward, use_reentrant=False)
    cache = first["cache"]
    if any(a is not b for a, b in zip(kv, cache_tensors(cache))):  # never expected
        raise RuntimeError("checkpointed prefix: the cache does not hold the returned KV tensors")
    return hidden, cache


def cached_step(vlm, state: CachedSequence, embeds: torch.Tensor, mask: torch.Tensor | None = None):
    """Append `embeds` [B, T, D] to the cached sequence; returns their hidden [B, T, D]."""
    B, T, _ = embeds.shape
    if mask is None:
        mask = torch.ones(B, T, dtype=state.attention_mask.dtype, device=embeds.device)
    offsets = torch.arange(T, device=embeds.device)
    positions = (state.next_pos[:, None] + offsets[None, :]).unsqueeze(0).expand(3, B, T)
    state.attention_mask = torch.cat([state.attention_mask, mask.to(state.attention_mask.dtype)], dim=1)
    lm = vlm.language_model
    out = lm(
        inputs_embeds=embeds,
        attention_mask=state.attention_mask,
        position_ids=positions,
        use_cache=True,
        **_cache_kwargs(lm, state.cache),
    )
    state.cache = _output_cache(out)
    state.next_pos = state.next_pos + T
    return out.last_hidden_state


@dataclass
class Rollout:
    anchor: torch.Tensor  # [B, D] h[<disc_emb>]
    z0: torch.Tensor  # [B, D] h[<bot>]
    latents: list = field(default_factory=list)  # z_1..z_K, each [B, D]
    inputs: list = field(default_factory=list)  # x_0..x_{K-1} fed back, each [B, D]
    gates: list = field(default_factory=list)  # [B, E] per step (MoE adapters)
    chosen: list = field(default_factory=list)  # [B, k] per step
    suffix_hidden: torch.Tensor | None = None  # [B, S, D]
    decoded: "Decoded | None" = None  # post-suffix decoding, when asked for

    @property
    def last(self) -> torch.Tensor:
        """The state that predicts the first suffix token: z_K, or h[<bot>] when K = 0."""
        return self.latents[-1] if self.latents else self.z0


def latent_rollout(
    vlm,
    adapter: TransitionAdapter,
    inputs: dict,
    anchor_index: torch.Tensor,
    steps: int,
    suffix_ids: torch.Tensor | None = None,
    suffix_mask: torch.Tensor | None = None,
    positions: str = "mrope",
    decode: "PostSuffixDecode | None" = None,
    *,
    checkpoint_prefix: bool = False,
) -> Rollout:
    """Batched rollout. `anchor_index` [B] is the column of <disc_emb> in each row;
    `positions` places the latent steps ("mrope" or "authors", see run_prefix);
    `decode` continues greedily after the suffix (see post_suffix_decode);
    `checkpoint_prefix` recomputes the prefix pass in the backward (see run_prefix)."""
    hidden, state = run_prefix(vlm, inputs, positions=positions, checkpoint_prefix=checkpoint_prefix)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    result = Rollout(anchor=hidden[rows, anchor_index], z0=hidden[:, -1])
    z = result.z0
    for j in range(steps):
        step = adapter(z, j, result.anchor)
        z = cached_step(vlm, state, step.x.unsqueeze(1))[:, 0]
        result.inputs.append(step.x)
        result.latents.append(z)
        if step.gate is not None:
            result.gates.append(step.gate)
            result.chosen.append(step.chosen)
    if suffix_ids is not None:
        embeds = vlm.get_input_embeddings()(suffix_ids)
        result.suffix_hidden = cached_step(vlm, state, embeds, suffix_mask)
        if decode is not None:
            if suffix_mask is not None and not bool(suffix_mask.all()):
                raise ValueError("post-suffix decoding needs one unpadded suffix for every row")
            result.decoded = post_suffix_decode(vlm, state, result.suffix_hidden[:, -1], decode)
    return result


@dataclass
class PostSuffixDecode:
    """Greedy decoding after the forced suffix, as the authors' evaluation does."""

    lm_head: object  # hidden [B, D] -> logits [B, V]
    gen_id: int  # <gen_emb>
    stop_ids: tuple  # the checkpoint's EOS ids
    max_new_tokens: int


@dataclass
class Decoded:
    embedding: torch.Tensor  # [B, D] hidden state at each row's last <gen_emb>
    hit_max_new_tokens: list  # per row: the budget ran out before <gen_emb> or EOS
    generated: list  # per row: the token ids written


def post_suffix_decode(vlm, state: CachedSequence, last: torch.Tensor, decode: PostSuffixDecode) -> Decoded:
    """From the hidden state `last` [B, D] at the forced <gen_emb>, write argmax tokens one
    per step (each fed at the row's next position) until a row writes <gen_emb> or an EOS
    id, or `max_new_tokens` run out. A row's embedding is the hidden state at the last
    <gen_emb> it was fed: the forced one unless it wrote another. Finished rows feed
    masked padding until every row is done."""
    B = last.shape[0]
    embedding = last.clone()
    active = torch.ones(B, dtype=torch.bool, device=last.device)
    generated: list = [[] for _ in range(B)]
    stops = torch.tensor([decode.gen_id, *decode.stop_ids], device=last.device)
    embed = vlm.get_input_embeddings()
    for _ in range(decode.max_new_tokens):
        token = decode.lm_head(last).float().argmax(dim=-1)  # [B]
        token = torch.where(active, token, torch.zeros_like(token))
        hidden = cached_step(vlm, state, embed(token)[:, None], active[:, None].long())[:, 0]
        for b in active.nonzero().flatten().tolist():
            generated[b].append(int(token[b]))
        wrote_gen = active & (token == decode.gen_id)
        embedding[wrote_gen] = hidden[wrote_gen]
        active = active & ~torch.isin(token, stops)
        last = hidden
        if not active.any():
            break
    return Decoded(embedding, [bool(a) for a in active.tolist()], generated)


def full_sequence_forward(
    vlm,
    inputs: dict,
    latent_inputs: list,
    suffix_ids: torch.Tensor,
    suffix_mask: torch.Tensor,
    placeholder_id: int,
) -> torch.Tensor:
    """Reference: the whole sequence in one pass, no cache, latent embeddings in place.

    Positions come from get_rope_index over the full sequence (latent slots hold <ct>
    placeholders, which are text), an independent check of the cached positions.
    Returns the last-layer hidden [B, L + K + S, D]."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    B, L = ids.shape
    K = len(latent_inputs)
    slots = torch.full((B, K), placeholder_id, dtype=ids.dtype, device=ids.device)
    full_ids = torch.cat([ids, slots, suffix_ids], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(slots, dtype=mask.dtype), suffix_mask.to(mask.dtype)], 1)
    full = dict(inputs, input_ids=full_ids, attention_mask=full_mask)
    if "mm_token_type_ids" in inputs:
        pad = torch.zeros(
            B, K + suffix_ids.shape[1], dtype=inputs["mm_token_type_ids"].dtype, device=ids.device
        )
        full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], pad], dim=1)
    embeds = vlm.get_input_embeddings()(full_ids)
    if K:
        embeds = embeds.clone()
        embeds[:, L : L + K] = torch.stack(latent_inputs, dim=1).to(embeds.dtype)
    positions = rope_positions(vlm, full)
    out = vlm(**model_inputs(vlm, full), inputs_embeds=embeds, position_ids=positions, use_cache=False)
    return out.last_hidden_state
