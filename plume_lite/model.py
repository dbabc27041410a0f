"""PlumeModel: a Qwen2-VL backbone + transition adapter, with three encode modes.

    model = PlumeModel.from_backbone("tiny")            # or "Qwen/Qwen2-VL-2B-Instruct"
    emb = model.encode([{"text": "a red circle"}, {"image": "cat.png"}], mode="latent")

direct   reads <disc_emb> in one pass (VLM2Vec-style baseline)
explicit writes a rationale, then reads <gen_emb> (UME-R1-style baseline)
latent   K continuous latent steps, then reads <gen_emb> (PLUME)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from plume_lite.adapter import TransitionAdapter, balance_loss
from plume_lite.backbone import load_backbone
from plume_lite.config import LORA_TARGETS, MODES, PlumeConfig
from plume_lite.curriculum import DEFAULT_READ_POSITION, READ_POSITIONS, place_gen_emb
from plume_lite.errors import InputError
from plume_lite.items import ItemBatcher, as_item, checked_int, is_single_item
from plume_lite.protocols import post_suffix_decoder
from plume_lite.rollout import latent_rollout, run_prefix
from plume_lite.static_rollout import ENGINES
from plume_lite.tokens import EOT, GEN_EMB, INFERENCE_SUFFIX, add_plume_tokens

__all__ = ["PlumeModel", "TrainForward", "INFERENCE_SUFFIX"]  # INFERENCE_SUFFIX: the latent suffix text


@dataclass
class TrainForward:
    gen_emb: torch.Tensor | None  # [B, D], not normalised
    disc_emb: torch.Tensor  # [B, D], not normalised
    ce_loss: torch.Tensor | None  # mean token CE over the suffix
    balance_loss: torch.Tensor  # 0 when there is no router or no latent step
    gates: torch.Tensor | None  # [B, K, E]


class PlumeModel(nn.Module):
    """A Qwen2-VL backbone plus a transition adapter: one embedding model, three encode modes.

    Build one with `from_backbone` (a fresh adapter on a backbone) or `from_pretrained`
    (a saved PLUME checkpoint) rather than calling the constructor. The constructor adds
    the PLUME tokens to the backbone's tokenizer (rows copied from existing tokens, see
    docs/method.md §Tokens and sequence layout) and builds the adapter that
    `config.adapter` names.

    Args:
        backbone: a Qwen2-VL / Qwen2.5-VL `...ForConditionalGeneration` model, as returned
            by `plume_lite.load_backbone`. Its embedding matrix is resized in place if the
            PLUME tokens are new to it.
        processor: the backbone's processor (tokenizer, image and video processors).
        config: the PlumeConfig of the model (K, adapter variant, explicit-mode budget,
            instruction prompt).

    Attributes:
        config (PlumeConfig): the model's settings; saved as `plume_config.json`.
        backbone: the wrapped backbone (LoRA layers, once enabled, are injected in place).
        processor: the processor, with the PLUME tokens added.
        adapter (TransitionAdapter): the transition adapter (`plume_lite.adapter`).
        token_ids (dict[str, int]): ids of `<disc_emb> <bot> <ct> <eot> <gen_emb>`.
        lora_enabled (bool): whether `enable_lora` ran (or the checkpoint had LoRA).

    Example:
        >>> from plume_lite import PlumeModel
        >>> model = PlumeModel.from_backbone("tiny")        # built offline on first use
        >>> emb = model.encode([{"text": "a red circle"}, {"text": "two blue squares"}])
        >>> emb.shape, emb.dtype                            # tiny backbone: D = 128
        (torch.Size([2, 128]), torch.float32)
    """

    def __init__(self, backbone, processor, config: PlumeConfig):
        super().__init__()
        self.config = config
        self.backbone = backbone  # Qwen2VLForConditionalGeneration (LoRA injected in place)
        self.processor = processor
        self.token_ids = add_plume_tokens(backbone, processor.tokenizer)
        dim = backbone.config.text_config.hidden_size
        self.adapter = TransitionAdapter(
            dim,
            config.adapter,
            config.num_experts,
            config.top_k,
            config.expert_dropout,
            config.step_table_size,
            precision=config.adapter_precision,
        )
        media = {"image_pipeline": config.image_pipeline, "frame_sampling": config.frame_sampling}
        self.batcher = ItemBatcher(processor, config.instruction_prompt, config.protocol, **media)
        self.lora_enabled = False

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_backbone(cls, name_or_path: str = "tiny", device=None, dtype=None, **config) -> "PlumeModel":
        """A new PlumeModel on a pretrained backbone, with a freshly initialised adapter.

        Args:
            name_or_path: a hub id (e.g. "Qwen/Qwen2-VL-2B-Instruct"), a local backbone
                folder, or "tiny" / "tiny:SEED" for the offline tiny Qwen2-VL, built into
                the cache folder (`$PLUME_CACHE`, see plume_lite.runtime) on first use.
            device: if given, the model is moved there (`"cpu"`, `"cuda"`, a
                torch.device); otherwise it stays on the CPU.
            dtype: torch dtype of the backbone weights (default float32). The adapter
                is created in float32 and computes in float32 in any case.
            **config: PlumeConfig fields, e.g. `latent_steps=4`, `adapter="mlp"`,
                `num_experts`, `top_k`, `max_new_tokens`, `instruction_prompt`.

        Returns:
            PlumeModel: in training mode, as any new nn.Module (`encode` switches to
            eval mode by itself). The adapter's weights come from torch's current
            random state: seed it first (`torch.manual_seed`) for a reproducible model.

        Raises:
            ConfigError: an unknown config key (the message names the closest valid
                one) or an invalid value, e.g. an adapter not in `ADAPTERS`,
                `latent_steps` outside [0, step_table_size], `top_k` outside
                [1, num_experts].
            CheckpointError: the backbone cannot be loaded (missing folder, no
                config.json, hub unreachable) or is not a Qwen2-VL / Qwen2.5-VL model.

        Example:
            >>> model = PlumeModel.from_backbone("tiny", latent_steps=4, adapter="mlp")
            >>> model.config.latent_steps, model.config.adapter
            (4, 'mlp')
        """
        cfg = PlumeConfig.from_dict({"backbone": str(name_or_path), **config})
        backbone, processor = load_backbone(cfg.backbone, dtype=dtype)
        model = cls(backbone, processor, cfg)
        return model.to(device) if device is not None else model

    @classmethod
    def from_pretrained(cls, path, device=None, dtype=None, **settings) -> "PlumeModel":
        """Load a PlumeModel saved by `save_pretrained` (or by `plume-lite train`), or one
        of the authors' released checkpoints (e.g. "CUDAOUTOFMEMORY/PLUME-Qwen2-VL-2B").

        A full checkpoint (`backbone/`) is self-contained. A LoRA checkpoint (`lora/`)
        loads its base backbone again from the name in its `plume_config.json` (a hub
        id, folder or "tiny"), so that backbone must be reachable; LoRA is re-attached.
        A folder in the authors' layout (a Qwen2-VL config.json, `latent_moe_transition.*`
        tensors in its weights, no plume_config.json) is detected and loaded strictly
        with their evaluation's settings (plume_lite/released.py; docs/method.md
        §Running the authors' released models).

        Args:
            path: the checkpoint folder (str or os.PathLike), e.g. `RUN/model`, or a hub
                id ("owner/name", fetched with huggingface_hub.snapshot_download when no
                such local folder exists).
            device: if given, the model is moved there; otherwise it stays on the CPU.
            dtype: torch dtype of the backbone weights (default float32).
            **settings: authors' layout only: PlumeConfig fields its weights do not
                record (e.g. `latent_steps=6`, `positions="mrope"`); see
                `plume_lite.released.COMPAT_SETTINGS` for what is chosen otherwise.

        Returns:
            PlumeModel: with the saved config, adapter and backbone (or LoRA) weights, in
            training mode as any new nn.Module (`encode` switches to eval mode itself).

        Raises:
            CheckpointError: the folder does not exist, lacks `plume_config.json` or
                `adapter.safetensors`, has neither `backbone/` nor `lora/`, or its
                backbone cannot be loaded.
            ConfigError: `plume_config.json` holds an unknown or invalid key, or
                `settings` are given for a checkpoint of this package's own layout.

        Example:
            >>> model.save_pretrained("my_ckpt")
            >>> loaded = PlumeModel.from_pretrained("my_ckpt")
            >>> items = [{"text": "a red circle"}]
            >>> torch.equal(loaded.encode(items), model.encode(items))
            True
        """
        from plume_lite.saving import load_checkpoint

        model = load_checkpoint(cls, path, dtype=dtype, **settings)
        return model.to(device) if device is not None else model

    def save_pretrained(self, path) -> None:
        """Save the model as safetensors + JSON (never pickle), atomically.

        The folder holds `plume_config.json`, `adapter.safetensors`, a `README.md` model
        card (what the checkpoint is, how to use it, its settings) and either
        `backbone/` (full weights and processor) or, after `enable_lora`, `lora/`,
        `processor/` and `token_rows.safetensors` (the base backbone is not copied).
        Everything is written into a temporary sibling folder that then replaces
        `path` in one rename: an existing folder at `path` is replaced, and a crash
        leaves either the old folder or the new one, never a half-written one.

        Args:
            path: the folder to write (str or os.PathLike); parents are created.

        Returns:
            None.

        Example:
            >>> model.save_pretrained("my_ckpt")
            >>> sorted(os.listdir("my_ckpt"))
            ['README.md', 'adapter.safetensors', 'backbone', 'plume_config.json']
        """
        from plume_lite.saving import save_plume

        save_plume(self, path)

    def enable_lora(self, r: int = 16, alpha: int = 32, dropout: float = 0.05, targets=LORA_TARGETS):
        """LoRA on the language model only (the vision tower has other module names)."""
        from plume_lite.saving import inject_lora

        inject_lora(self, dict(r=r, alpha=alpha, dropout=dropout, targets=list(targets)))

    def freeze_vision(self) -> None:
        for p in self.backbone.model.visual.parameters():
            p.requires_grad_(False)

    @property
    def vlm(self):
        return self.backbone.model  # Qwen2VLModel: vision tower + language model

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    # ----------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode(
        self,
        items,
        mode: str = "latent",
        steps: int | None = None,
        batch_size: int = 16,
        return_trace: bool = False,
        progress: bool = False,
        *,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = False,
        convert_to_tensor: bool | None = None,
        normalize_embeddings: bool = True,
        engine: str = "eager",
    ):
        """Embed items: L2-normalised float32 rows [N, D] on the CPU (and traces if asked).

        Runs without gradients and in eval mode (the previous train/eval mode is
        restored afterwards). Items are validated before any tensor work. Each row does
        not depend on the others in its batch (left padding, per-row positions).

        Args:
            items: a list of items, or one item (then one row [D] comes back, as in
                sentence-transformers). An item is a string (its text), a PIL image, or
                a dict with keys among `instruction` (str),
                `text` (str), and at most one of `image` (path, bytes or PIL image),
                `video` (mp4/webm/gif path, frame folder, or list of frames; 8 frames
                are sampled uniformly) and `pdf` (path) with `page` (0-based int,
                default 0). A key whose value is None counts as absent; special-token
                strings inside the text are read as plain characters.
            mode: "latent" (PLUME: K latent steps, then read `<gen_emb>`), "direct"
                (read `<disc_emb>` in one pass) or "explicit" (write a rationale of at
                most `config.max_new_tokens` tokens, then read `<gen_emb>`).
            steps: latent steps K for this call, an int in [0, config.step_table_size];
                None uses `config.latent_steps`. Only "latent" mode uses it.
            batch_size: items per forward pass (an int >= 1).
            return_trace: also return one trace dict per item.
            progress: show a tqdm progress bar over batches (`show_progress_bar` is
                the sentence-transformers name for it).
            convert_to_numpy: return a numpy float32 array instead of a torch tensor.
            convert_to_tensor: return a torch tensor (wins over `convert_to_numpy`).
            normalize_embeddings: L2-normalise each row (default); False returns the
                raw hidden states read at the embedding token.
            engine: how "latent" mode runs its K steps and suffix: "eager" (default, the
                reference loop of plume_lite.rollout), "static" (a preallocated static
                KV cache, decoder layers called directly: plume_lite.static_rollout) or
                "graph" ("static" replayed as one CUDA graph per batch-size and
                prefix-length bucket; on a CPU it runs as "static") or "compiled" ("static"
                through torch.compile, opt-in: each new shape bucket compiles first, 10 s
                to minutes on a CPU). The results equal "eager" to float rounding
                (tests/test_static_engine.py). "direct" and "explicit" run as they always
                do whatever the engine; the fast engines refuse a config with post-suffix
                decoding (InputError).

        Returns:
            torch.Tensor: [N, D] float32 on the CPU, each row of unit L2 norm (D is the
            backbone's hidden size; an empty list gives [0, D]). With `return_trace`, a
            tuple (embeddings, traces), where traces[i] is a dict with "mode" and, in
            latent mode, "steps", "anchor" [D], "latents" (K tensors [D]) and, for the
            moe adapters, "gates" [K, E] (router probabilities) and "chosen" [K, top_k]
            (expert indices); in explicit mode, "text" (what was written) and
            "generated_tokens" (int).

        Raises:
            InputError: an unknown mode or engine, `steps` or `batch_size` not an integer in range,
                or a malformed item
                (unknown key, a value of the wrong type, text over the length limit,
                several visual inputs, empty item, `page` without `pdf`, missing file,
                an image of extreme aspect ratio).
            MediaError: a media file is corrupt, truncated, encrypted or too large.

        Example:
            >>> items = [{"text": "three red bars above the dashed line", "instruction": "Find the chart."},
            ...          {"image": "cat.png", "text": "What animal is this?"}]
            >>> emb = model.encode(items, mode="latent")          # [2, D]
            >>> emb, traces = model.encode(items, steps=4, return_trace=True)
            >>> traces[0]["gates"].shape, traces[0]["chosen"].shape   # moe adapter, E = 4
            (torch.Size([4, 4]), torch.Size([4, 2]))
            >>> scores = emb[:1] @ emb.T                          # cosine similarities
        """
        if mode not in MODES:
            raise InputError(f"unsupported mode {mode!r}; choose one of {', '.join(MODES)}")
        if engine not in ENGINES:
            raise InputError(f"unsupported engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if engine != "eager" and mode == "latent" and self.config.post_suffix_decode:
            raise InputError(
                f"engine={engine!r} does not run post-suffix decoding "
                f"(config.post_suffix_decode={self.config.post_suffix_decode}); use engine='eager'"
            )
        single = is_single_item(items)
        items = [as_item(x, i) for i, x in enumerate([items] if single else list(items))]
        progress = progress if show_progress_bar is None else bool(show_progress_bar)
        steps = (
            self.config.latent_steps
            if steps is None
            else checked_int("steps", steps, 0, self.config.step_table_size)
        )
        batch_size = checked_int("batch_size", batch_size, 1)
        was_training = self.training
        self.eval()
        chunks = range(0, len(items), batch_size)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc=f"encode ({mode})", unit="batch")
        embeddings, traces = [], []
        try:
            for start in chunks:
                batch = items[start : start + batch_size]
                emb, trace = self._encode_batch(batch, mode, steps, return_trace, engine)
                emb = emb.float()
                embeddings.append((F.normalize(emb, dim=-1) if normalize_embeddings else emb).cpu())
                traces.extend(trace)
        finally:
            self.train(was_training)
        dim = self.backbone.config.text_config.hidden_size
        out = torch.cat(embeddings) if embeddings else torch.empty(0, dim)
        if single:
            out, traces = out[0], traces[:1]
        if convert_to_numpy and not convert_to_tensor:
            out = out.numpy()
        if return_trace:
            return out, (traces[0] if single and traces else traces)
        return out

    @staticmethod
    def similarity(a, b):
        """Cosine similarities [N, M] of two sets of embeddings (tensors, numpy arrays or
        single rows), as sentence-transformers' `model.similarity`; a torch tensor.

        Example:
            >>> emb = model.encode(["a red circle", "a blue square"])
            >>> model.similarity(emb, emb).shape
            torch.Size([2, 2])
        """
        a = torch.as_tensor(a, dtype=torch.float32)
        b = torch.as_tensor(b, dtype=torch.float32)
        a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T

    def push_to_hub(
        self,
        repo_id: str,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload PLUME-lite checkpoint",
    ) -> str:
        """Save this model (with its model card) and upload the folder to the Hugging Face
        Hub as a model repository; returns the repository URL.

        Example:
            >>> model.push_to_hub("me/plume-lite-tiny")      # needs `huggingface-cli login`
        """
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(Path(tmp) / "model")
            api.upload_folder(
                folder_path=str(Path(tmp) / "model"),
                repo_id=repo_id,
                repo_type="model",
                commit_message=commit_message,
            )
        return str(url)

    def _encode_batch(self, items, mode, steps, return_trace, engine="eager"):
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
        if engine != "eager":
            r = self._static_engine(engine).rollout(
                inputs, anchor_index, steps, suffix[0], self.config.positions
            )
            return r.suffix_hidden[:, -1], (rollout_traces(r, steps) if return_trace else [])
        decode = post_suffix_decoder(self.backbone, self.processor.tokenizer, self.config.post_suffix_decode)
        r = latent_rollout(
            self.vlm,
            self.adapter,
            inputs,
            anchor_index,
            steps,
            *suffix,
            positions=self.config.positions,
            decode=decode,
        )
        emb = r.suffix_hidden[:, -1] if r.decoded is None else r.decoded.embedding
        return emb, (rollout_traces(r, steps) if return_trace else [])

    def _static_engine(self, engine: str):
        """The engine of this model (kept: it holds the captured CUDA graphs)."""
        key = (engine, id(self.vlm), id(self.adapter))
        if getattr(self, "_engine_key", None) != key:
            from plume_lite.static_rollout import StaticLatentEngine

            self._engine = StaticLatentEngine(
                self.vlm, self.adapter, use_graph=engine == "graph", use_compile=engine == "compiled"
            )
            self._engine_key = key
        return self._engine

    # ----------------------------------------------------------------- training
    def forward_train(
        self,
        items: list,
        suffix_texts: list | None,
        n_latent: int,
        mode: str,
        *,
        read_position: str | None = None,
        checkpoint_prefix: bool = False,
    ) -> TrainForward:
        """Teacher-forced forward for the training losses (see plume_lite.train.loop).

        `read_position` (latent mode): "after_latents" (None: the default,
        curriculum.DEFAULT_READ_POSITION) reads `<gen_emb>` right after `<eot></think>\n`,
        as inference does, with the suffix text predicted after it (curriculum.place_gen_emb);
        "after_text" reads it after the suffix text (the paper's layout). Explicit mode
        reads after its text only, as its inference does (None gives that).
        `checkpoint_prefix`: recompute the prefix pass in the backward (less memory, same
        results; plume_lite.rollout.run_prefix)."""
        if mode not in MODES:
            raise InputError(f"unsupported mode {mode!r}; choose one of {', '.join(MODES)}")
        if read_position is None:
            read_position = DEFAULT_READ_POSITION if mode == "latent" else "after_text"
        if read_position not in READ_POSITIONS:
            raise InputError(
                f"read_position must be one of {', '.join(READ_POSITIONS)}, got {read_position!r}"
            )
        inputs, anchor_index = self.batcher(items, mode, self.device)
        if mode == "direct":
            hidden, _ = run_prefix(self.vlm, inputs, use_cache=False, checkpoint_prefix=checkpoint_prefix)
            zero = hidden.new_zeros(())
            return TrainForward(None, hidden[:, -1], None, zero, None)
        if mode == "explicit" and n_latent:
            raise InputError("explicit mode has no latent steps; pass n_latent=0")
        if mode == "explicit" and read_position != "after_text":
            raise InputError(
                "explicit mode reads <gen_emb> after the text it writes; pass read_position='after_text'"
            )
        if mode == "latent":
            texts = [EOT + place_gen_emb(t, read_position, GEN_EMB) for t in suffix_texts]
        else:
            texts = [t + GEN_EMB for t in suffix_texts]
        suffix_ids, suffix_mask = self.batcher.suffix_ids(texts, self.device)
        r = latent_rollout(
            self.vlm,
            self.adapter,
            inputs,
            anchor_index,
            n_latent,
            suffix_ids,
            suffix_mask,
            positions=self.config.positions,
            checkpoint_prefix=checkpoint_prefix,  # recompute the prefix in the backward (rollout.py)
        )
        # position t predicts suffix token t: the first from the last latent state
        predictors = torch.cat([r.last.unsqueeze(1), r.suffix_hidden[:, :-1]], dim=1)
        logits = self.backbone.lm_head(predictors).float()
        labels = suffix_ids.masked_fill(suffix_mask == 0, -100)
        ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        if read_position == "after_latents":  # the first <gen_emb>: text follows it
            read = (suffix_ids == self.token_ids[GEN_EMB]).int().argmax(1)
        else:
            read = suffix_mask.sum(1) - 1
        gen = r.suffix_hidden[torch.arange(len(items), device=read.device), read]
        bal = balance_loss(r.gates)
        gates = torch.stack(r.gates, dim=1) if r.gates else None
        return TrainForward(gen, r.anchor, ce, bal if bal is not None else ce.new_zeros(()), gates)


def rollout_traces(r, steps: int) -> list[dict]:
    """Per item: the anchor, and per latent step the gate, chosen experts and state."""
    traces = []
    for b in range(r.anchor.shape[0]):
        trace = {
            "mode": "latent",
            "steps": steps,
            "anchor": r.anchor[b].float().cpu(),
            "latents": [z[b].float().cpu() for z in r.latents],
        }
        if r.gates:
            trace["gates"] = torch.stack([g[b] for g in r.gates]).float().cpu()  # [K, E]
            trace["chosen"] = torch.stack([c[b] for c in r.chosen]).cpu()  # [K, k]
        if r.decoded is not None:  # post-suffix decoding (PlumeConfig.post_suffix_decode)
            trace["post_suffix_tokens"] = len(r.decoded.generated[b])
            trace["hit_max_new_tokens"] = r.decoded.hit_max_new_tokens[b]
        traces.append(trace)
    return traces
