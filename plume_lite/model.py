"""PlumeModel: a Qwen2-VL backbone + transition adapter, with three encode modes.

    model = PlumeModel.from_backbone("tiny")            # or "Qwen/Qwen2-VL-2B-Instruct"
    emb = model.encode([{"text": "a red circle"}, {"image": "cat.png"}], mode="latent")

direct   reads <disc_emb> in one pass (VLM2Vec-style baseline)
explicit writes a rationale, then reads <gen_emb> (UME-R1-style baseline)
latent   K continuous latent steps, then reads <gen_emb> (PLUME)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plume_lite.adapter import TransitionAdapter, balance_loss
from plume_lite.backbone import load_backbone
from plume_lite.config import LORA_TARGETS, MODES, PlumeConfig
from plume_lite.errors import InputError
from plume_lite.items import ItemBatcher
from plume_lite.rollout import latent_rollout, run_prefix
from plume_lite.tokens import EOT, GEN_EMB, INFERENCE_SUFFIX, add_plume_tokens

__all__ = ["PlumeModel", "TrainForward", "INFERENCE_SUFFIX"]   # INFERENCE_SUFFIX: the latent suffix text


@dataclass
class TrainForward:
    gen_emb: torch.Tensor | None        # [B, D], not normalised
    disc_emb: torch.Tensor              # [B, D], not normalised
    ce_loss: torch.Tensor | None        # mean token CE over the suffix
    balance_loss: torch.Tensor          # 0 when there is no router or no latent step
    gates: torch.Tensor | None          # [B, K, E]


class PlumeModel(nn.Module):
    def __init__(self, backbone, processor, config: PlumeConfig):
        super().__init__()
        self.config = config
        self.backbone = backbone          # Qwen2VLForConditionalGeneration (LoRA injected in place)
        self.processor = processor
        self.token_ids = add_plume_tokens(backbone, processor.tokenizer)
        dim = backbone.config.text_config.hidden_size
        self.adapter = TransitionAdapter(dim, config.adapter, config.num_experts, config.top_k,
                                         config.expert_dropout, config.step_table_size)
        self.batcher = ItemBatcher(processor, config.instruction_prompt)
        self.lora_enabled = False

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_backbone(cls, name_or_path: str = "tiny", device=None, dtype=None, **config) -> "PlumeModel":
        cfg = PlumeConfig.from_dict({"backbone": str(name_or_path), **config})
        backbone, processor = load_backbone(cfg.backbone, dtype=dtype)
        model = cls(backbone, processor, cfg)
        return model.to(device) if device is not None else model

    @classmethod
    def from_pretrained(cls, path, device=None, dtype=None) -> "PlumeModel":
        from plume_lite.saving import load_plume
        model = load_plume(cls, path, dtype=dtype)
        return model.to(device) if device is not None else model

    def save_pretrained(self, path) -> None:
        from plume_lite.saving import save_plume
        save_plume(self, path)

    def enable_lora(self, r: int = 16, alpha: int = 32, dropout: float = 0.05,
                    targets=LORA_TARGETS):
        """LoRA on the language model only (the vision tower has other module names)."""
        from plume_lite.saving import inject_lora
        inject_lora(self, dict(r=r, alpha=alpha, dropout=dropout, targets=list(targets)))

    def freeze_vision(self) -> None:
        for p in self.backbone.model.visual.parameters():
            p.requires_grad_(False)

    @property
    def vlm(self):
        return self.backbone.model       # Qwen2VLModel: vision tower + language model

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    # ----------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode(self, items: list, mode: str = "latent", steps: int | None = None,
               batch_size: int = 16, return_trace: bool = False, progress: bool = False):
        """L2-normalised float32 embeddings [N, D] on CPU (and a trace list if asked)."""
        if mode not in MODES:
            raise InputError(f"unsupported mode {mode!r}; choose one of {', '.join(MODES)}")
        if isinstance(items, dict):
            raise InputError("encode() takes a list of items; wrap a single item in a list")
        steps = self.config.latent_steps if steps is None else int(steps)
        if not 0 <= steps <= self.config.step_table_size:
            raise InputError(f"steps must be in [0, {self.config.step_table_size}], got {steps}")
        was_training = self.training
        self.eval()
        chunks = range(0, len(items), batch_size)
        if progress:
            from tqdm.auto import tqdm
            chunks = tqdm(chunks, desc=f"encode ({mode})", unit="batch")
        embeddings, traces = [], []
        try:
            for start in chunks:
                batch = items[start:start + batch_size]
                emb, trace = self._encode_batch(batch, mode, steps, return_trace)
                embeddings.append(F.normalize(emb.float(), dim=-1).cpu())
                traces.extend(trace)
        finally:
            self.train(was_training)
        dim = self.backbone.config.text_config.hidden_size
        out = torch.cat(embeddings) if embeddings else torch.empty(0, dim)
        return (out, traces) if return_trace else out

    def _encode_batch(self, items, mode, steps, return_trace):
        inputs, anchor_index = self.batcher(items, mode, self.device)
        if mode == "direct":
            hidden, _ = run_prefix(self.vlm, inputs, use_cache=False)
            emb = hidden[:, -1]
            traces = [{"mode": "direct"} for _ in items] if return_trace else []
            return emb, traces
        if mode == "explicit":
            from plume_lite.explicit import explicit_encode
            return explicit_encode(self, inputs, anchor_index, return_trace)
        suffix = self.batcher.suffix_ids([EOT + INFERENCE_SUFFIX + GEN_EMB] * len(items), self.device)
        r = latent_rollout(self.vlm, self.adapter, inputs, anchor_index, steps, *suffix)
        emb = r.suffix_hidden[:, -1]
        return emb, (rollout_traces(r, steps) if return_trace else [])

    # ----------------------------------------------------------------- training
    def forward_train(self, items: list, suffix_texts: list | None, n_latent: int,
                      mode: str) -> TrainForward:
        """Teacher-forced forward for the training losses (see plume_lite.train.loop)."""
        if mode not in MODES:
            raise InputError(f"unsupported mode {mode!r}; choose one of {', '.join(MODES)}")
        inputs, anchor_index = self.batcher(items, mode, self.device)
        if mode == "direct":
            hidden, _ = run_prefix(self.vlm, inputs, use_cache=False)
            zero = hidden.new_zeros(())
            return TrainForward(None, hidden[:, -1], None, zero, None)
        if mode == "explicit" and n_latent:
            raise InputError("explicit mode has no latent steps; pass n_latent=0")
        head = EOT if mode == "latent" else ""
        texts = [head + t + GEN_EMB for t in suffix_texts]
        suffix_ids, suffix_mask = self.batcher.suffix_ids(texts, self.device)
        r = latent_rollout(self.vlm, self.adapter, inputs, anchor_index, n_latent, suffix_ids, suffix_mask)
        # position t predicts suffix token t: the first from the last latent state
        predictors = torch.cat([r.last.unsqueeze(1), r.suffix_hidden[:, :-1]], dim=1)
        logits = self.backbone.lm_head(predictors).float()
        labels = suffix_ids.masked_fill(suffix_mask == 0, -100)
        ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        last = suffix_mask.sum(1) - 1
        gen = r.suffix_hidden[torch.arange(len(items), device=last.device), last]
        bal = balance_loss(r.gates)
        gates = torch.stack(r.gates, dim=1) if r.gates else None
        return TrainForward(gen, r.anchor, ce, bal if bal is not None else ce.new_zeros(()), gates)


def rollout_traces(r, steps: int) -> list[dict]:
    """Per item: the anchor, and per latent step the gate, chosen experts and state."""
    traces = []
    for b in range(r.anchor.shape[0]):
        trace = {"mode": "latent", "steps": steps, "anchor": r.anchor[b].float().cpu(),
                 "latents": [z[b].float().cpu() for z in r.latents]}
        if r.gates:
            trace["gates"] = torch.stack([g[b] for g in r.gates]).float().cpu()      # [K, E]
            trace["chosen"] = torch.stack([c[b] for c in r.chosen]).cpu()             # [K, k]
        traces.append(trace)
    return traces
