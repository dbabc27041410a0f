"""The static-cache latent engine: rollout.latent_rollout's inference path on preallocated
buffers, replayable as one CUDA graph (docs/method.md §Latent rollout; issue 14).

Same computation as the eager loop (which stays the reference):

1. Prefix forward (the VLM, SDPA, vision tokens merged) into a transformers StaticCache of
   C = P + K + S columns: the prefix fills columns 0..L-1, P is L rounded up to
   `PREFIX_BUCKET` (the gap stays masked), the K latent steps write P..P+K-1 and the S
   suffix tokens (<eot></think>\\n<gen_emb>) the rest.
2. Everything the K steps and the suffix need is built once per batch, not per step: the
   rotary cos/sin of all K + S positions (each row's next text position + j, the [3, B, 1]
   M-RoPE positions of run_prefix/cached_step), a 4-D additive mask [B, 1, 1, C] whose
   column P + j is opened in place before step j, and the suffix's causal mask [B, 1, S, C].
3. The steps call the decoder layers directly (no mask or position building in
   Qwen2VLTextModel.forward) and write K/V at a fixed column (`ColumnWriter`).
4. With `use_graph` on CUDA, step 3 for one (batch, P, K, S) bucket is captured once as a
   torch.cuda.CUDAGraph; later batches copy their inputs into its static buffers, replay
   it, and clone the outputs out. On the CPU, 3 runs eagerly: the same code CI tests.
5. With `use_compile` (engine="compiled", opt-in), step 3 goes through `torch.compile`
   (inductor, one compiled graph per shape bucket): on the tiny CPU model it cut a latent
   encode by ~45 % at batch 1, after a first call that compiles for 10 s to minutes per
   shape (benchmarks/compile_probe.py, benchmarks/README.md).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from plume_lite.rollout import Rollout, _cache_kwargs, model_inputs, rope_positions

ENGINES = ("eager", "static", "graph", "compiled")  # PlumeModel.encode(engine=...); eager: rollout.py
COMPILE_BACKEND = "inductor"  # tests swap in "eager" (dynamo's tracing without code generation)
PREFIX_BUCKET = 32  # prefix lengths are rounded up to this: fewer graphs, a few masked columns
MAX_GRAPHS = 8  # captured buckets kept per engine (each holds its own KV buffers)


class ColumnWriter:
    """The `cache` the decoder layers see during the steps: writes each call's keys and
    values at column `at` of the StaticCache's buffers and returns the whole buffers."""

    def __init__(self, static_cache):
        self.keys = [layer.keys for layer in static_cache.layers]
        self.values = [layer.values for layer in static_cache.layers]
        self.at = 0

    def update(self, key, value, layer_idx, *args, **kwargs):
        T = key.shape[-2]
        self.keys[layer_idx][:, :, self.at : self.at + T].copy_(key)
        self.values[layer_idx][:, :, self.at : self.at + T].copy_(value)
        return self.keys[layer_idx], self.values[layer_idx]


@dataclass
class StepInputs:
    """What the steps read; in graph mode these are the graph's static input buffers."""

    z0: torch.Tensor  # [B, D] h[<bot>]
    anchor: torch.Tensor  # [B, D] h[<disc_emb>]
    base_mask: torch.Tensor  # [B, 1, 1, C] additive: prefix columns open, the rest closed
    step_mask: torch.Tensor  # [B, 1, 1, C] base_mask plus the latent columns opened so far
    suffix_mask: torch.Tensor  # [B, 1, S, C]
    cos: torch.Tensor  # [B, K + S, head_dim]
    sin: torch.Tensor
    suffix_embeds: torch.Tensor  # [B, S, D]


def next_positions(inputs: dict, rope: torch.Tensor, positions: str) -> torch.Tensor:
    """Each row's next text position [B], as run_prefix computes it ("mrope" / "authors")."""
    if positions == "authors":
        return inputs["attention_mask"].sum(dim=1).to(rope.dtype)
    if positions == "mrope":
        return rope.amax(dim=(0, 2)) + 1
    raise ValueError(f"positions must be 'mrope' or 'authors', got {positions!r}")


def additive_masks(prefix_mask: torch.Tensor, P: int, K: int, S: int, dtype):
    """(base [B,1,1,C], suffix [B,1,S,C]): 0 where attended, dtype's min where not."""
    B, L = prefix_mask.shape
    C, closed = P + K + S, torch.finfo(dtype).min
    base = torch.full((B, 1, 1, C), closed, dtype=dtype, device=prefix_mask.device)
    base[:, 0, 0, :L] = torch.where(prefix_mask.bool(), 0.0, closed)
    suffix = base.expand(B, 1, S, C).clone()
    suffix[..., P : P + K] = 0.0
    causal = torch.ones(S, S, dtype=torch.bool, device=prefix_mask.device).tril()
    suffix[..., P + K :] = torch.where(causal, 0.0, closed)
    return base, suffix


class StaticLatentEngine:
    """Latent rollouts on a static cache; `use_graph` replays CUDA graphs (CUDA only)."""

    def __init__(self, vlm, adapter, use_graph: bool = False, use_compile: bool = False):
        self.vlm, self.adapter = vlm, adapter
        self.lm = vlm.language_model
        self.use_graph = use_graph
        # static shapes: a new (B, P, K, S) bucket compiles again, as a CUDA graph is captured again
        self.steps = (
            torch.compile(self.run_steps, backend=COMPILE_BACKEND, dynamic=False) if use_compile else None
        )
        # the layers' name for the cache argument, looked up once (inspect is slow per step)
        self.layer_cache_key = next(iter(_cache_kwargs(self.lm.layers[0], None)))
        self.graphs: OrderedDict = OrderedDict()  # bucket -> _CapturedSteps
        self.signature = None  # _weights_signature() the graphs were captured with

    def rollout(self, inputs: dict, anchor_index, steps: int, suffix_ids, positions: str = "mrope"):
        """latent_rollout(..., suffix_ids, positions) for one unpadded inference suffix
        shared by all rows; returns a rollout.Rollout (latents, inputs, gates, chosen,
        suffix_hidden)."""
        B, L = inputs["input_ids"].shape
        S = suffix_ids.shape[1]
        P = -(-L // PREFIX_BUCKET) * PREFIX_BUCKET
        graph = self.use_graph and suffix_ids.device.type == "cuda"
        key = (B, P, steps, S)
        if graph and (signature := self._weights_signature()) != self.signature:
            self.graphs.clear()  # captured against weights that moved or changed: never replay
            self.signature = signature
        captured = self.graphs.get(key) if graph else None
        cache = captured.cache if captured else self._new_cache(P + steps + S)
        cache.reset()
        rope = rope_positions(self.vlm, inputs)
        out = self.vlm(
            **model_inputs(self.vlm, inputs),
            position_ids=rope,
            use_cache=True,
            **_cache_kwargs(self.vlm, cache),
        )
        hidden = out.last_hidden_state
        rows = torch.arange(B, device=hidden.device)
        offsets = torch.arange(steps + S, device=hidden.device)
        pos = (next_positions(inputs, rope, positions)[:, None] + offsets).unsqueeze(0).expand(3, B, -1)
        cos, sin = self.lm.rotary_emb(hidden, pos)
        base, suffix_mask = additive_masks(inputs["attention_mask"], P, steps, S, hidden.dtype)
        fresh = StepInputs(
            z0=hidden[:, -1],
            anchor=hidden[rows, anchor_index],
            base_mask=base,
            step_mask=base.clone(),
            suffix_mask=suffix_mask,
            cos=cos,
            sin=sin,
            suffix_embeds=self.vlm.get_input_embeddings()(suffix_ids),
        )
        if not graph:
            outputs = (self.steps or self.run_steps)(ColumnWriter(cache), fresh, P, steps)
        else:
            if captured is None:
                captured = self._capture(cache, fresh, P, steps, key)
            outputs = captured.replay(fresh)
        return _as_rollout(fresh.anchor, fresh.z0, outputs)

    def run_steps(self, writer: ColumnWriter, x: StepInputs, P: int, K: int) -> dict:
        """The K adapter + decoder steps and the suffix; no host sync, no allocation
        that depends on data (this is what a CUDA graph captures)."""
        x.step_mask.copy_(x.base_mask)
        z, latents, fed, gates, chosen = x.z0, [], [], [], []
        for j in range(K):
            step = self.adapter(z, j, x.anchor)
            x.step_mask[..., P + j] = 0.0  # open this step's own column, in place
            z = self._decoder(
                writer, step.x[:, None], P + j, x.step_mask, x.cos[:, j : j + 1], x.sin[:, j : j + 1]
            )
            z = z[:, 0]
            latents.append(z)
            fed.append(step.x)
            if step.gate is not None:
                gates.append(step.gate)
                chosen.append(step.chosen)
        suffix = self._decoder(writer, x.suffix_embeds, P + K, x.suffix_mask, x.cos[:, K:], x.sin[:, K:])
        return {"latents": latents, "inputs": fed, "gates": gates, "chosen": chosen, "suffix": suffix}

    def _decoder(self, writer, embeds, at: int, mask, cos, sin) -> torch.Tensor:
        """The language model's layers and final norm, called directly."""
        writer.at = at
        h = embeds
        for layer in self.lm.layers:
            h = layer(
                h,
                attention_mask=mask,
                position_embeddings=(cos, sin),
                use_cache=True,
                **{self.layer_cache_key: writer},
            )
            h = h[0] if isinstance(h, tuple) else h
        return self.lm.norm(h)

    def _weights_signature(self) -> tuple:
        """What a captured graph is bound to: the addresses of the weights it reads (a move,
        a dtype change or injected LoRA layers give new ones) and the adapter's mode."""
        params = [*self.lm.parameters(), *self.adapter.parameters()]
        return (getattr(self.adapter, "fused", False), *(p.data_ptr() for p in params))

    def _new_cache(self, capacity: int):
        from transformers import StaticCache

        return StaticCache(config=self.vlm.config, max_cache_len=capacity)

    def _capture(self, cache, fresh: StepInputs, P: int, K: int, key) -> "_CapturedSteps":
        captured = _CapturedSteps(self, cache, fresh, P, K)
        self.graphs[key] = captured
        while len(self.graphs) > MAX_GRAPHS:
            self.graphs.popitem(last=False)
        return captured


class _CapturedSteps:
    """One bucket's CUDA graph: static input buffers, the graph, its output tensors."""

    def __init__(self, engine: StaticLatentEngine, cache, fresh: StepInputs, P: int, K: int):
        self.cache = cache
        self.static = StepInputs(**{k: v.clone() for k, v in vars(fresh).items()})
        writer = ColumnWriter(cache)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (lazy inits, kernel choice)
            for _ in range(2):
                engine.run_steps(writer, self.static, P, K)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = engine.run_steps(writer, self.static, P, K)

    def replay(self, fresh: StepInputs) -> dict:
        for name, value in vars(fresh).items():
            getattr(self.static, name).copy_(value)
        self.graph.replay()
        # the outputs live in the graph's memory pool and are overwritten by the next replay
        return {
            k: [t.clone() for t in v] if isinstance(v, list) else v.clone() for k, v in self.outputs.items()
        }


def _as_rollout(anchor, z0, outputs: dict) -> Rollout:
    r = Rollout(anchor=anchor, z0=z0)
    r.latents, r.inputs = outputs["latents"], outputs["inputs"]
    r.gates, r.chosen = outputs["gates"], outputs["chosen"]
    r.suffix_hidden = outputs["suffix"]
    return r
