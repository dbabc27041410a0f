"""UME-R1-2B as its own harness ran it (RELEASED_CHECKPOINTS.md §4.1, D20, D22).

Prompt: the authors' collator rendered by the Qwen2-VL chat template, as for PLUME
(plume_lite/protocols.py) but with nothing after the generation prompt, so the model
writes `<think>…` itself:

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\n<vision>{T}\n<disc_emb>\n{GP}<|im_end|>\n<|im_start|>assistant\n

Media as their evaluation prepared it: qwen_vl_utils' resize, VLM2Vec's frame sampling,
the processor bounds [784, 2359296] px, a blank image for text-only items.

explicit (their "gen" mode): `generate` with the checkpoint's generation_config (no
    sampling arguments of ours), `max_new_tokens` 8192, stopped at EOS only. Let j be the
    last generated <gen_emb> of the row and n the tokens it generated (up to its EOS):
    the embedding is the hidden state of step j + 1 (the step that feeds <gen_emb>), or,
    without a <gen_emb> or when j + 1 > n - 1, of step n - 1 (the last token fed).
    Counting steps per row makes a batched row equal its batch-1 read; their batched
    harness counted the batch's steps, so a row that stopped early and wrote no <gen_emb>
    was read at a padding step there.
direct (their "disc" mode): one forward pass, the hidden state at the last <disc_emb>.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from plume_lite.authors_media import QWEN_VL_UTILS, VLM2VEC
from plume_lite.baseline_encoder import BaselineEncoder
from plume_lite.baseline_loading import baseline_id, load_backbone
from plume_lite.errors import CheckpointError
from plume_lite.files import item_kind
from plume_lite.items import ItemBatcher, checked_int, escape_special_tokens
from plume_lite.protocols import AUTHORS_INSTRUCTION, AUTHORS_SYSTEM_PROMPT, MEDIA_TOKENS, authors_text
from plume_lite.tokens import DISC_EMB, GEN_EMB, VISION_PLACEHOLDER

__all__ = ["UmeR1Encoder", "ume_r1_prompt", "read_step", "MAX_NEW_TOKENS"]

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = 8192  # their eval command's --max_new_tokens
UME_TOKENS = (GEN_EMB, DISC_EMB)


def ume_r1_prompt(item: dict, kind: str, instruction_prompt: str = AUTHORS_INSTRUCTION) -> str:
    """The full prompt text of one item (see the module docstring); `kind` is its visual
    kind ("image", "video", "pdf" or "text", which carries the blank image)."""
    vision = VISION_PLACEHOLDER["video" if kind == "video" else "image"]
    return (
        f"<|im_start|>system\n{AUTHORS_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{vision}"
        f"{authors_text(item)}\n{DISC_EMB}\n{instruction_prompt}<|im_end|>\n<|im_start|>assistant\n"
    )


def read_step(generated: list[int], gen_id: int) -> int:
    """The generation step whose hidden state is the embedding (step 0 is the prompt's
    last position, step s feeds generated token s - 1): the last <gen_emb> j read at
    j + 1 when j + 1 <= n - 1, else n - 1, for the n tokens of `generated` (EOS included)."""
    n = len(generated)
    last = next((j for j in range(n - 1, -1, -1) if generated[j] == gen_id), None)
    return last + 1 if last is not None and last + 1 <= n - 1 else n - 1


class UmeBatcher(ItemBatcher):
    """ItemBatcher with UME-R1's prompt. Media tokens leave the text before special
    tokens are escaped (the collator removes them; escaped they would stay as text)."""

    def _user_text(self, item: dict) -> dict:
        for key in ("text", "instruction"):
            if key in item:
                text = item[key]
                for token in MEDIA_TOKENS:
                    text = text.replace(token, "")
                item[key] = escape_special_tokens(text, self.specials)
        return item

    def prompt(self, item: dict, mode: str) -> str:
        return ume_r1_prompt(item, item_kind(item), self.instruction_prompt)


class _LastHidden:
    """Keeps the decoder's last-position output of every forward `generate` runs (the
    final-norm hidden state, what `output_hidden_states[-1]` holds), without keeping
    every layer of every step."""

    def __init__(self, decoder):
        self.decoder, self.steps, self.handle = decoder, [], None

    def __enter__(self):
        def hook(module, args, output):
            h = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            self.steps.append(h[:, -1])

        self.handle = self.decoder.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


class UmeR1Encoder(BaselineEncoder):
    """UME-R1: explicit chain of thought, then the hidden state at <gen_emb> (module docstring).

    Build it with `UmeR1Encoder.from_pretrained(path_or_hub_id)`."""

    modes = ("explicit", "direct")
    name = "ume_r1"

    def __init__(self, backbone, processor, checkpoint_id: str, max_new_tokens: int = MAX_NEW_TOKENS):
        super().__init__(backbone, processor, checkpoint_id)
        self.max_new_tokens = checked_int("max_new_tokens", max_new_tokens, 1)
        vocab = self.tokenizer.get_vocab()
        missing = [t for t in UME_TOKENS if t not in vocab]
        if missing:
            raise CheckpointError(f"the tokenizer lacks {missing}; not a UME-R1 checkpoint")
        self.gen_id = vocab[GEN_EMB]
        eos = getattr(backbone.generation_config, "eos_token_id", None)
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.eos_ids = {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None}
        if not self.eos_ids:
            raise CheckpointError("neither generation_config.json nor the tokenizer names an EOS token")
        self.batcher = UmeBatcher(
            processor,
            AUTHORS_INSTRUCTION,
            protocol="plume",
            image_pipeline=QWEN_VL_UTILS,
            frame_sampling=VLM2VEC,
        )  # also sets the processor's bounds to [784, 2359296] px

    @classmethod
    def from_pretrained(cls, path_or_hub_id, device=None, dtype=None, max_new_tokens: int = MAX_NEW_TOKENS):
        """Load a UME-R1 checkpoint (a plain Qwen2-VL folder with <gen_emb> and <disc_emb>
        in its tokenizer, or a hub id) as stored: nothing is added or resized (D20).

        Args:
            device: where to run (None: the CPU).
            dtype: weights' dtype (None: float32; "auto": as stored, bf16 for the release).
            max_new_tokens: the generation budget of explicit mode (theirs: 8192).
        """
        backbone, processor, folder = load_backbone(path_or_hub_id, dtype=dtype)
        rows = backbone.get_input_embeddings().weight.shape[0]
        if rows < len(processor.tokenizer):
            raise CheckpointError(
                f"{folder}: the embedding matrix has {rows} rows but the tokenizer "
                f"{len(processor.tokenizer)} tokens; a baseline is never resized"
            )
        settings = {"protocol": cls.name, "max_new_tokens": int(max_new_tokens)}
        encoder = cls(backbone, processor, baseline_id(cls.name, folder, settings), max_new_tokens)
        return encoder.to(device) if device is not None else encoder

    def _encode_batch(self, items, mode, offset):
        inputs, disc_index = self.batcher(items, "explicit", self.device)
        if mode == "direct":
            out = self.vlm(**inputs)  # no position_ids: transformers computes M-RoPE
            rows = torch.arange(len(items), device=self.device)
            emb = out.last_hidden_state[rows, disc_index]
            return F.normalize(emb.float(), dim=-1), [{"mode": "direct", "read": "<disc_emb>"} for _ in items]
        return self._generate(inputs)

    def _generate(self, inputs):
        self.vlm.rope_deltas = None  # state transformers keeps between calls
        prompt_len = inputs["input_ids"].shape[1]
        with _LastHidden(self.vlm.language_model) as seen:
            out = self.backbone.generate(**inputs, max_new_tokens=self.max_new_tokens, use_cache=True)
        sequences = out.sequences if hasattr(out, "sequences") else out
        written = sequences[:, prompt_len:].tolist()
        if len(seen.steps) < max(map(len, written)):  # never: one decoder call per step
            raise RuntimeError(
                f"generate ran {len(seen.steps)} decoder calls for {max(map(len, written))} tokens"
            )
        embs, traces = [], []
        for row, ids in enumerate(written):
            n = next((k + 1 for k, t in enumerate(ids) if t in self.eos_ids), len(ids))
            ids = ids[:n]
            step = read_step(ids, self.gen_id)
            embs.append(seen.steps[step][row])
            traces.append(
                {
                    "mode": "explicit",
                    "text": self.tokenizer.decode(ids, skip_special_tokens=False),
                    "generated_tokens": n,
                    "read_step": step,
                    "read_gen_emb": step > 0 and ids[step - 1] == self.gen_id,
                    "hit_max_new_tokens": not ids or ids[-1] not in self.eos_ids,
                }
            )
        return F.normalize(torch.stack(embs).float(), dim=-1), traces
