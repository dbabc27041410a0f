"""GradCache for the contrastive training step: a large batch in chunks of rows.

The InfoNCE terms need every pair's embedding at once, so a plain step keeps the
activations of the whole batch. GradCache (Gao et al., 2021) splits the step in three:

1. every chunk forward without a graph, keeping only what the loss reads (embeddings,
   router gates, the chunk's CE) and the RNG state each chunk started from;
2. the loss (losses.plume_loss, unchanged) on those outputs as leaf tensors, and its
   gradient with respect to them;
3. every chunk forward again with a graph, the RNG state replayed (the adapter's
   expert dropout and LoRA dropout then draw the same masks as in 1), and a backward of
   sum(output * its cached gradient), which adds that chunk's share of the gradient.

The CE terms are token means over the whole batch, so each chunk's CE is weighted by
its share of the suffix tokens; the load-balance term is a batch statistic, so it is
computed from all chunks' gates. Under DDP, phase 2's all-gather carries the other
ranks' rows as in the plain step, and DDP reduces the gradient in the last chunk's
backward only (`no_sync` before). Memory: one chunk's activations, plus the step's
embeddings; cost: one more forward of the batch.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch

from plume_lite.adapter import balance_loss
from plume_lite.curriculum import place_gen_emb
from plume_lite.tokens import EOT, GEN_EMB
from plume_lite.train.losses import item_ids, plume_loss


def rng_state() -> tuple:
    """The torch CPU generator state and, where CUDA is in use, every GPU's."""
    cuda = (
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    )
    return torch.get_rng_state(), cuda


def set_rng_state(state: tuple) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def suffix_token_count(model, suffixes: list, mode: str, read_position: str) -> int:
    """Number of suffix tokens forward_train's CE averages over for these suffix texts
    (the same texts it builds: PlumeModel.forward_train)."""
    if mode == "latent":
        texts = [EOT + place_gen_emb(t, read_position, GEN_EMB) for t in suffixes]
    else:
        texts = [t + GEN_EMB for t in suffixes]
    _, mask = model.batcher.suffix_ids(texts, "cpu")
    return int(mask.sum())


def _parts(cached: list, key: str) -> list:
    """One output of every chunk (empty when the mode has no such output)."""
    return [c[key] for c in cached if key in c]


def grad_cache_step(step_module, batch, chunk: int, backward=None, no_sync=None, scale: float = 1.0):
    """One GradCache training step of `batch` in chunks of `chunk` pairs; the gradients
    are added to the parameters' .grad (times `scale`, e.g. 1 / grad_accum).

    `step_module` is a TrainStep or its DDP/accelerate wrapper (called as
    `step_module(batch, rows=...)`, so DDP sees every forward); `backward(loss)` runs a
    backward (default `loss.backward()`; accelerate's `accelerator.backward`);
    `no_sync()` a context that holds back DDP's gradient reduction (all chunks but the
    last). Returns (total loss, {part: tensor}, {stat: tensor}) as TrainStep does,
    detached."""
    from plume_lite.train.step import router_stats

    inner = getattr(step_module, "module", step_module)  # TrainStep under a wrapper
    model, mode = inner.model, inner.mode
    backward = backward or (lambda loss: loss.backward())
    no_sync = no_sync or contextlib.nullcontext
    n = len(batch.queries)
    rows = [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    # 1. forward without a graph, from a recorded RNG state
    states, cached = [], []
    for r in rows:
        states.append(rng_state())
        with torch.no_grad():
            cached.append({k: v.detach().requires_grad_() for k, v in step_module(batch, rows=r).items()})
    after = rng_state()
    # 2. the plain step's loss on the cached outputs, and its gradient w.r.t. them
    sides = {}
    for side, suffixes in (("q", batch.query_suffix), ("c", batch.positive_suffix)):
        gen, ce, gates = (_parts(cached, f"{side}_{k}") for k in ("gen", "ce", "gates"))
        out = SimpleNamespace(disc_emb=torch.cat(_parts(cached, f"{side}_disc")))
        out.gen_emb = torch.cat(gen) if gen else None
        out.ce_loss = None
        if ce:  # token-weighted: the whole batch's mean CE
            counts = [suffix_token_count(model, suffixes[r], mode, inner.read_position) for r in rows]
            out.ce_loss = sum(c * k for c, k in zip(ce, counts)) / sum(counts)
        out.gates = torch.cat(gates) if gates else None
        steps = [] if out.gates is None else [out.gates[:, j] for j in range(out.gates.shape[1])]
        out.balance_loss = balance_loss(steps) if steps else None
        sides[side] = out
    ids = {}
    if inner.mask_duplicates:
        device = sides["q"].disc_emb.device
        ids = dict(q_ids=item_ids(batch.queries, device), c_ids=item_ids(batch.positives, device))
    total, parts = plume_loss(
        mode,
        sides["q"],
        sides["c"],
        scale=inner.logit_scale,
        balance_weight=inner.balance_weight,
        contrastive_weight=inner.contrastive_weight,
        **ids,
    )
    total.backward()  # only to the cached leaves: they have no graph behind them
    # 3. each chunk again with a graph and the same RNG, backward of output · gradient
    for i, (r, state) in enumerate(zip(rows, states)):
        set_rng_state(state)
        with no_sync() if i < len(rows) - 1 else contextlib.nullcontext():
            out = step_module(batch, rows=r)
            surrogate = sum(
                (out[k] * leaf.grad.to(out[k].dtype)).sum()
                for k, leaf in cached[i].items()
                if leaf.grad is not None
            )
            backward(surrogate * scale)
    set_rng_state(after)  # the RNG goes on as after phase 1
    stats = router_stats(sides["q"].gates, sides["c"].gates, top_k=model.config.top_k)
    return total.detach(), {k: v.detach() for k, v in parts.items()}, stats
