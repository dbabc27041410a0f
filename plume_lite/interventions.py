"""Causal interventions on a PlumeModel's transition adapter, undone on exit.

- `knock_out_expert(adapter, e)`: routed expert e outputs zeros (its last Linear's
  weight and bias set to 0 in place, restored exactly afterwards). Zeroing the
  parameters, not wrapping a module, also covers any code path that reads the expert's
  parameters directly at call time (e.g. a fused expert kernel).
- `mask_anchor(adapter)`: the router sees a zero semantic anchor (`<disc_emb>` state)
  instead of the real one, by wrapping the adapter instance's `forward`.
- `rollout_change(model, items, intervention)`: how far the embeddings move and how many
  expert choices change. Scores under an intervention:
  `plume_lite.evaluation.under_intervention.score_under`.

    with knock_out_expert(model.adapter, 2):
        emb = model.encode(items, mode="latent")
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from plume_lite.errors import InputError


def _routed_experts(adapter):
    experts = getattr(adapter, "experts", None)
    if experts is None:
        raise InputError(f"adapter kind {getattr(adapter, 'kind', '?')!r} has no routed experts to knock out")
    return experts


@contextmanager
def knock_out_expert(adapter, expert: int):
    """Zero routed expert `expert`'s output for the duration of the block.

    The router still picks and weights it (its gate is unchanged); its contribution to
    the next input embedding is zero, so the block measures what that expert adds.

    Args:
        adapter: a TransitionAdapter of kind "moe" or "moe_no_anchor" (`model.adapter`).
        expert: index of the routed expert, 0 <= expert < num_experts.

    Raises:
        InputError: the adapter has no routed experts, or the index is out of range.

    Example:
        >>> with knock_out_expert(model.adapter, 0):
        ...     emb = model.encode(items, mode="latent")
    """
    experts = _routed_experts(adapter)
    if not 0 <= int(expert) < len(experts):
        raise InputError(f"expert {expert} out of range: the adapter has {len(experts)} routed experts")
    last = experts[int(expert)][-1]  # the Linear that writes the expert's output
    params = [p for p in (last.weight, last.bias) if p is not None]
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.zero_()
    try:
        yield adapter
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


@contextmanager
def mask_anchor(adapter):
    """Pass a zero semantic anchor to the adapter for the duration of the block.

    The anchor only enters the router (gate = softmax(W_r [z + a; step])), so this
    changes which experts are chosen and how they are weighted; the latent state z
    itself is untouched. Works by setting an instance attribute `forward` that calls
    the adapter's current forward with `torch.zeros_like(anchor)`; the previous state
    (no instance attribute, or another wrapper) is restored on exit.

    Args:
        adapter: a TransitionAdapter (`model.adapter`); with kind "moe_no_anchor",
            "mlp" or "none" the anchor is unused and nothing changes.

    Example:
        >>> with mask_anchor(model.adapter):
        ...     _, traces = model.encode(items, mode="latent", return_trace=True)
    """
    had_own = "forward" in vars(adapter)
    previous = vars(adapter).get("forward")
    current = adapter.forward  # bound method (or a wrapper another helper installed)

    def zero_anchor_forward(z, step, anchor=None):
        return current(z, step, None if anchor is None else torch.zeros_like(anchor))

    adapter.forward = zero_anchor_forward
    try:
        yield adapter
    finally:
        if had_own:
            adapter.forward = previous
        else:
            del adapter.forward


@torch.no_grad()
def rollout_change(model, items: list, intervention, steps=None, batch_size: int = 16) -> dict:
    """How much an intervention changes the latent rollout of `items`, score aside.

    Args:
        model: a PlumeModel.
        items: query items.
        intervention: a zero-argument callable returning a context manager.
        steps: latent steps (None: the checkpoint's K).
        batch_size: items per forward pass.

    Returns:
        {"embedding_cosine": mean cosine between each item's embedding with and without
        the intervention (1: unchanged), "changed_choices": share of (item, step) pairs
        whose set of chosen experts differs (0 for adapters without a router)}.

    Example:
        >>> rollout_change(model, items, lambda: mask_anchor(model.adapter))
    """
    if not items:
        raise InputError("rollout_change needs at least one item")
    kwargs = dict(mode="latent", steps=steps, return_trace=True, batch_size=batch_size)
    base_emb, base = model.encode(items, **kwargs)
    with intervention():
        emb, changed = model.encode(items, **kwargs)
    cosine = float((base_emb.float() * emb.float()).sum(-1).mean())  # rows are L2-normalised
    pairs = [(a["chosen"], b["chosen"]) for a, b in zip(base, changed) if "chosen" in a]
    differ = [
        set(x.tolist()) != set(y.tolist()) for a, b in pairs for x, y in zip(a, b)
    ]  # one entry per latent step
    return {
        "embedding_cosine": cosine,
        "changed_choices": float(sum(differ) / len(differ)) if differ else 0.0,
    }
