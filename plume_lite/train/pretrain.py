"""`plume-lite pretrain`: language-model pre-training of the tiny Qwen2-VL backbone.

The paper's chain starts from a pretrained VLM (UME-R1-2B writes correct rationales); a
random-init 0.6 M model cannot perceive or verbalise anything, so no reasoning path can
matter (LITE_DIAGNOSIS.md). This stage makes the tiny backbone a small "VLM": next-token
cross-entropy on dense captions and text lookups (plume_lite/data/captions.py), the loss
on the assistant's answer only. The recipe is PRETRAIN_PROBE.md's: AdamW lr 1e-3,
warm-up 30, cosine to 0, weight decay 0.01, clip 1.0, batch 32.

    from plume_lite.train.pretrain import pretrain
    pretrain("runs/pretrain", steps=5000)      # -> a backbone folder, loadable as any other

The output folder is a backbone (config, safetensors, tokenizer, processors) plus
`pretrain.json` (command, seed, steps, CPU seconds, gate) and `log.jsonl`; it is written
atomically. Same seed, steps and thread count give the same weights."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from plume_lite.data.captions import CAPTION_KINDS, ORDINAL_ORDERS, VOCAB, CaptionStream, Sample, held_out
from plume_lite.errors import ConfigError
from plume_lite.io import atomic_dir, atomic_write_text
from plume_lite.runtime import using_threads

PROMPT = "<|im_start|>user\n{vision}{text}<|im_end|>\n<|im_start|>assistant\n"
VISION = "<|vision_start|><|image_pad|><|vision_end|>"
END = "<|im_end|>"


def chat_text(sample: Sample, answer: bool = True) -> str:
    head = PROMPT.format(vision=VISION if sample.image is not None else "", text=sample.prompt)
    return head + (sample.target + END if answer else "")


def lm_batch(processor, samples: list[Sample]) -> dict:
    """Right-padded processor inputs with `labels`: the assistant's text and its end token,
    -100 elsewhere (prompt, image placeholders, padding)."""
    tok = processor.tokenizer
    tok.padding_side = "right"
    images = [s.image for s in samples if s.image is not None]
    inputs = processor(
        text=[chat_text(s) for s in samples], images=images or None, padding=True, return_tensors="pt"
    )
    ids = inputs["input_ids"]
    # the answer starts after the last "<|im_start|>assistant\n" of each row
    start_id = tok.convert_tokens_to_ids("<|im_start|>")
    head = len(tok("assistant\n", add_special_tokens=False)["input_ids"])
    cols = torch.arange(ids.shape[1]).expand_as(ids)
    last_start = torch.where(ids == start_id, cols, -1).max(dim=1, keepdim=True).values
    keep = (cols >= last_start + 1 + head) & (inputs["attention_mask"] == 1)
    inputs["labels"] = ids.masked_fill(~keep, -100)
    return inputs


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 0 at `steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


@torch.no_grad()
def generate(model, processor, samples: list[Sample], max_new_tokens: int = 96) -> list[str]:
    """Greedy answers to the samples' prompts (left-padded batch)."""
    tok = processor.tokenizer
    tok.padding_side = "left"
    images = [s.image for s in samples if s.image is not None]
    inputs = processor(
        text=[chat_text(s, answer=False) for s in samples],
        images=images or None,
        padding=True,
        return_tensors="pt",
    )
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=tok.convert_tokens_to_ids(END),
        pad_token_id=tok.pad_token_id,
    )
    return [
        tok.decode(row, skip_special_tokens=True).strip() for row in out[:, inputs["input_ids"].shape[1] :]
    ]


def caption_gate(
    model,
    processor,
    n: int = 32,
    seed: int = 0,
    batch_size: int = 16,
    ordinals: str = "left_to_right",
    neighbours: bool = False,
) -> dict:
    """Share (%) of held-out samples answered exactly, per kind: the whole caption for the
    image kinds, the linked colour for one-hop lookups (chance 12.5 %)."""
    was_training = model.training
    model.eval()
    scores = {}
    try:
        for kind in CAPTION_KINDS + ("lookup",):
            samples = held_out(kind, n, seed, ordinals, neighbours)
            right = 0
            for i in range(0, n, batch_size):
                chunk = samples[i : i + batch_size]
                for s, text in zip(chunk, generate(model, processor, chunk)):
                    right += text == s.target
            scores[kind] = round(100.0 * right / n, 2)
    finally:
        model.train(was_training)
    return scores


def pretrain(
    out,
    steps: int = 5000,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 1e-3,
    warmup: int = 30,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    threads: int | None = 1,
    gate_queries: int = 64,
    log_every: int = 50,
    mixed: bool = True,
    init=None,
    command: str = "",
    ordinals: str = "left_to_right",
    neighbours: bool = False,
) -> dict:
    """Pre-train a fresh tiny backbone (`make_backbone(seed)`), or continue the one saved
    at `init` (a previous `pretrain` folder), and save it to `out`.

    mixed: every batch mixes the kinds (default); False: one kind per batch (cheaper).
    ordinals: the order of a row caption's ordinal clauses (captions.ORDINAL_ORDERS);
    neighbours: row captions also name the shape just left of each shape.
    Returns the record written as `pretrain.json` (with the `init` folder's record
    under "previous")."""
    from plume_lite.backbone import load_backbone, make_backbone

    out = Path(out)
    if ordinals not in ORDINAL_ORDERS:
        raise ConfigError(f"--ordinals must be one of {', '.join(ORDINAL_ORDERS)}, got {ordinals!r}")
    with using_threads(threads):
        torch.manual_seed(seed)
        previous = None
        if init is None:
            model, processor = make_backbone(seed=seed, vocab_text=VOCAB)
        else:
            from plume_lite.io import read_json

            previous = read_json(Path(init) / "pretrain.json")
            model, processor = load_backbone(str(init))
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        # a continued run draws its own stream, not the first run's samples again
        corpus = dict(ordinals=ordinals, neighbours=neighbours)
        stream = CaptionStream(seed if init is None else f"{seed}+{previous['steps']}", **corpus)
        log_lines, cpu0, wall0 = [], time.process_time(), time.time()
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, lr, warmup)
            loss = model(**lm_batch(processor, stream.batch(batch_size, step / steps, mixed))).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pre-training loss became {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            if step % log_every == 0 or step == steps - 1:
                line = {
                    "step": step,
                    "loss": round(loss.item(), 4),
                    "grad_norm": round(float(norm), 3),
                    "lr": opt.param_groups[0]["lr"],
                    "cpu_s": round(time.process_time() - cpu0, 1),
                }
                log_lines.append(json.dumps(line))
                print(json.dumps(line), flush=True)
        train_cpu = time.process_time() - cpu0
        gate = caption_gate(model, processor, n=gate_queries, seed=seed, **corpus)
        record = {
            "command": command,
            "seed": seed,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "warmup": warmup,
            "threads": threads,
            "mixed_batches": mixed,
            "ordinals": ordinals,
            "neighbours": neighbours,
            "train_cpu_s": round(train_cpu, 1),
            "wall_s": round(time.time() - wall0, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "final_loss": json.loads(log_lines[-1])["loss"],
            "gate": {"queries_per_kind": gate_queries, "exact_match": gate},
            "previous": previous,
        }
        with atomic_dir(out) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            atomic_write_text(Path(tmp) / "log.jsonl", "\n".join(log_lines) + "\n")
            atomic_write_text(Path(tmp) / "pretrain.json", json.dumps(record, indent=1))
    return record
