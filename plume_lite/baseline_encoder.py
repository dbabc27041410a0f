"""What the two baseline encoders share: the `encode` that plume_lite's evaluation calls
(`model.encode(items, mode=, steps=, batch_size=, progress=)`, plus `return_trace` in
explicit mode), batching, device placement and the mode check. A subclass embeds one
batch of validated items in `_encode_batch`."""

from __future__ import annotations

import torch

from plume_lite.errors import InputError
from plume_lite.items import as_item, checked_int, is_single_item

__all__ = ["BaselineEncoder"]


class BaselineEncoder:
    """Base class: `modes` are the evaluation modes the baseline runs (the first is its
    default); `checkpoint_id` names weights and settings for evaluation caches."""

    modes: tuple[str, ...] = ()
    name = "baseline"

    def __init__(self, backbone, processor, checkpoint_id: str):
        self.backbone, self.processor = backbone, processor
        self.tokenizer = processor.tokenizer
        self.checkpoint_id = checkpoint_id

    @property
    def default_mode(self) -> str:
        return self.modes[0]

    @property
    def device(self) -> torch.device:
        return self.backbone.get_input_embeddings().weight.device

    @property
    def vlm(self):
        """The Qwen2-VL model under the LM head (`Qwen2VLModel`)."""
        return self.backbone.model

    def to(self, device):
        self.backbone.to(device)
        return self

    def _check_mode(self, mode) -> str:
        mode = self.default_mode if mode is None else mode
        if mode not in self.modes:
            raise InputError(f"{self.name} runs mode {' or '.join(map(repr, self.modes))}, got {mode!r}")
        return mode

    @torch.no_grad()
    def encode(
        self, items, mode=None, steps=None, batch_size: int = 16, progress: bool = False, return_trace=False
    ):
        """L2-normalised float32 embeddings [N, D] on the CPU (one row [D] for one item).

        Args:
            items: item dicts (plume_lite.items), strings (text) or PIL images.
            mode: one of `self.modes` (None: the default).
            steps: accepted for plume_lite's evaluation and unused (no latent steps).
            batch_size: items per left-padded batch.
            progress: a tqdm bar over batches.
            return_trace: also return one dict per item (what was generated, where read).
        """
        mode = self._check_mode(mode)
        batch_size = checked_int("batch_size", batch_size, 1)
        single = is_single_item(items)
        items = [as_item(items)] if single else [as_item(it, i) for i, it in enumerate(items)]
        if not items:
            raise InputError("no items to encode")
        starts = range(0, len(items), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"encode ({self.name}, {mode})", unit="batch")
        rows, traces = [], []
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            for s in starts:
                emb, trace = self._encode_batch(items[s : s + batch_size], mode, s)
                rows.append(emb.detach().to("cpu", torch.float32))
                traces += trace
        finally:
            self.backbone.train(was_training)
        emb = torch.cat(rows)
        if single:
            emb, traces = emb[0], traces[:1]
        return (emb, traces) if return_trace else emb

    def _encode_batch(self, items: list, mode: str, offset: int) -> tuple[torch.Tensor, list[dict]]:
        raise NotImplementedError
