"""Tiny fake checkpoints in the authors' released layouts, and batch-1 reference encoders.

Written from ../shared/RELEASED_CHECKPOINTS.md (cited as "spec §…"), not from this
package's code and not from the authors' code. Nothing here imports plume_lite except
`make_backbone`, the tiny Qwen2-VL the fixture starts from (spec §7, fixture).

    build_authors_checkpoint(out, "plume")            # PLUME-Qwen2-VL-2B layout (spec §1)
    build_authors_checkpoint(out, "plume", sharded=True)
    build_authors_checkpoint(out, "ume")              # UME-R1-2B: <gen_emb>, <disc_emb>, no adapter
    build_authors_checkpoint(out, "vlm2vec")          # VLM2Vec-V2.0 (full weights): no tokens added
    build_authors_checkpoint(out, "plume", backbone="qwen2_5_vl")   # the same on a tiny Qwen2.5-VL

    authors_adapter(state, z, step, context)          # spec §1.3, restated with the authors' names
    authors_prompt(item) / authors_inputs(processor, item)   # spec §2.1
    authors_latent_embed(model, processor, state, item, K)   # spec §2.4 steps 1-3 and 5, batch 1
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from safetensors import safe_open
from safetensors.torch import save_file

# Qwen2-VL-2B-Instruct's chat template (public model file): it inserts the default system
# turn when the first message is not a system message (spec §2.1, "Chat template").
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# spec §2.1, GP: one line
GP = (
    "Represent the above input text, images, videos, or any combination of the three as embeddings. "
    "First output the thinking process in <think> </think> tags and then summarize the entire input "
    "in a word or sentence. Finally, use the <gen_emb> tag to represent the entire input."
)
PREFILL = "<think><bot>"  # spec §2.1, gen mode, PLUME latent
FORCED_SUFFIX = "<eot></think>\n<gen_emb>"  # spec §1.4, eval_plume_moe.sh
MARKER = "latent_moe_transition."
UME_TOKENS = ["<gen_emb>", "<disc_emb>"]
PLUME_ALL_TOKENS = ["<gen_emb>", "<disc_emb>", "<bot>", "<eot>", "<ct>"]
# spec §3: new rows copied from <|object_ref_end|> (gen, eot, ct) / <|object_ref_start|> (disc, bot)
ROW_SOURCE = {
    "<gen_emb>": "<|object_ref_end|>",
    "<eot>": "<|object_ref_end|>",
    "<ct>": "<|object_ref_end|>",
    "<disc_emb>": "<|object_ref_start|>",
    "<bot>": "<|object_ref_start|>",
}
# Qwen2.5-VL's tokenizer has no <|object_ref_*|> rows to copy: PLUME copies from
# </tool_call> (gen, eot, ct) / <tool_call> (disc, bot) there (spec §3)
ROW_SOURCE_QWEN25 = {
    t: "</tool_call>" if s == "<|object_ref_end|>" else "<tool_call>" for t, s in ROW_SOURCE.items()
}
QWEN25_TOOL_TOKENS = ["<tool_call>", "</tool_call>"]  # non-special added tokens in Qwen2.5's tokenizer
BACKBONES = ("qwen2_vl", "qwen2_5_vl")
ATTENTION_SHARPNESS = 4.0  # q and k scaled: attention logits x16, so positions matter
VOCAB_PADDING = 9  # extra embedding rows, like Qwen2-VL's 151,936-row matrix over a 151,657 tokenizer


# ------------------------------------------------------------------ the adapter, spec §1.3
def authors_adapter_shapes(D: int, E: int = 4, rows: int = 32, shared: bool = True) -> dict:
    """{authors' key (no prefix): shape} of LatentMoETransition(D, E, use_shared_expert=shared)."""
    shapes = {
        "ln.weight": (D,),
        "ln.bias": (D,),
        "step_embed.weight": (rows, D),
        "router.weight": (E, 2 * D),
        "router.bias": (E,),
    }
    names = [f"experts.{i}" for i in range(E)] + (["shared_expert"] if shared else [])
    for name in names:
        shapes |= {
            f"{name}.fc1.weight": (2 * D, D),
            f"{name}.fc1.bias": (2 * D,),
            f"{name}.fc2.weight": (D, 2 * D),
            f"{name}.fc2.bias": (D,),
        }
    return shapes


def random_authors_adapter(D: int, seed: int = 0, E: int = 4, rows: int = 32, dtype=torch.bfloat16) -> dict:
    """Seeded random adapter tensors named as the authors name them; LN weight and bias
    non-trivial, router logits spread enough that the top-k choice varies with the input."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in authors_adapter_shapes(D, E, rows).items():
        if key == "ln.weight":
            t = 1.0 + 0.3 * torch.randn(shape, generator=g)
        elif key.endswith("bias"):
            t = 0.1 * torch.randn(shape, generator=g)
        elif key == "step_embed.weight":
            t = 0.5 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[1]
            t = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        state[key] = t.to(dtype)
    return state


def authors_adapter(state: dict, z, step_id: int, context=None, top_k: int = 2):
    """LatentMoETransition.forward restated (spec §1.3), fp32, functional.

    Returns (out [B, D], probabilities [B, E], top-k indices [B, k])."""
    s = {k: v.float() for k, v in state.items()}
    rows = s["step_embed.weight"].shape[0]
    step = min(max(int(step_id), 0), rows - 1)  # clamp(step_id, 0, rows - 1)
    ctx = torch.zeros_like(z) if context is None else context
    step_vec = s["step_embed.weight"][step].expand_as(z)
    logits = F.linear(torch.cat([z + ctx, step_vec], dim=-1), s["router.weight"], s["router.bias"])
    p = torch.softmax(logits, dim=-1)
    topk_prob, topk_idx = torch.topk(p, top_k, dim=-1)  # not renormalised
    u = F.layer_norm(z, (z.shape[-1],), s["ln.weight"], s["ln.bias"], eps=1e-5)

    def mlp(name, x):
        h = F.gelu(F.linear(x, s[f"{name}.fc1.weight"], s[f"{name}.fc1.bias"]))  # exact erf GELU
        return F.linear(h, s[f"{name}.fc2.weight"], s[f"{name}.fc2.bias"])

    out = z + mlp("shared_expert", u) if "shared_expert.fc1.weight" in s else z.clone()
    for b in range(z.shape[0]):
        for slot in range(top_k):
            e = int(topk_idx[b, slot])
            out[b] = out[b] + topk_prob[b, slot] * mlp(f"experts.{e}", u[b : b + 1])[0]
    return out, p, topk_idx


# ------------------------------------------------------------------ the checkpoint, spec §7 fixture
def make_qwen25_backbone(seed: int = 0):
    """(model, processor) of a random tiny Qwen2.5-VL: make_backbone's tokenizer, image
    and video processors (patch 8, merge 2) in a Qwen2_5_VLProcessor, and the same decoder
    sizes (D = 128, 2 layers, 4 heads, 2 KV heads) in a Qwen2_5_VLConfig, whose vision
    tower differs from Qwen2-VL's: RMSNorm + gated SiLU MLP blocks, window attention
    (window_size 32 px = 2x2 merged tokens per window) except in the full-attention
    block 1, and a merger to out_hidden_size = D; video temporal positions are spaced by
    tokens_per_second x second_per_grid_ts (2, as the released Qwen2.5-VL models)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    from plume_lite.backbone import make_backbone

    base, qwen2 = make_backbone(seed=seed)
    text = base.config.text_config
    processor = Qwen2_5_VLProcessor(
        image_processor=qwen2.image_processor,
        tokenizer=qwen2.tokenizer,
        video_processor=qwen2.video_processor,
        chat_template=qwen2.chat_template,
    )
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=text.vocab_size,
            hidden_size=text.hidden_size,
            intermediate_size=text.intermediate_size,
            num_hidden_layers=text.num_hidden_layers,
            num_attention_heads=text.num_attention_heads,
            num_key_value_heads=text.num_key_value_heads,
            max_position_embeddings=4096,
            rope_parameters=dict(text.rope_parameters),
            bos_token_id=text.bos_token_id,
            eos_token_id=text.eos_token_id,
            pad_token_id=text.pad_token_id,
            tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=2,
            out_hidden_size=text.hidden_size,
            patch_size=8,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=32,
            fullatt_block_indexes=[1],
            tokens_per_second=2,
        ),
        image_token_id=base.config.image_token_id,
        video_token_id=base.config.video_token_id,
        vision_start_token_id=base.config.vision_start_token_id,
        vision_end_token_id=base.config.vision_end_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = text.pad_token_id
    return model, processor


def _rewrite_weights(folder: Path, extra: dict, sharded: bool) -> None:
    """model.safetensors + the adapter tensors, one file or two shards (adapter in shard 2)."""
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    path.unlink()
    if not sharded:
        save_file({**tensors, **extra}, str(path), metadata={"format": "pt"})
        return
    first = {k: v for k, v in tensors.items() if k.startswith(("visual.", "model.visual."))}
    second = {**{k: v for k, v in tensors.items() if k not in first}, **extra}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    for name, part in zip(names, (first, second)):
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, name)
    total = sum(t.numel() * t.element_size() for t in {**first, **second}.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def build_authors_checkpoint(
    out_dir,
    kind: str = "plume",
    sharded: bool = False,
    seed: int = 0,
    latent_tokens: float | None = 8.0,
    legacy_names: bool = True,
    backbone: str = "qwen2_vl",
) -> Path:
    """Write a tiny checkpoint in the authors' layout (spec §7, fixture); return its folder.

    plume: tokens as UME-R1 then PLUME add them, embeddings resized to len(tokenizer)
    (it shrinks, as the released one does), new rows copied and then perturbed (as training
    would), the 25 adapter tensors in bf16 under `latent_moe_transition.` inside the model
    weights, trainer_state.json, no plume_config.json. ume: the two UME-R1 tokens only,
    no resize, no adapter. vlm2vec: the backbone as it is. `legacy_names=False` saves
    the backbone under transformers 5's own names (model.language_model.*,
    model.visual.*), which the spec cannot rule out. `backbone="qwen2_5_vl"` starts from
    make_qwen25_backbone instead (its tokenizer gains <tool_call> / </tool_call>, the
    rows PLUME copies from on Qwen2.5-VL)."""
    from plume_lite.backbone import make_backbone

    if kind not in ("plume", "ume", "vlm2vec"):
        raise ValueError(f"kind must be plume, ume or vlm2vec, got {kind!r}")
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    out = Path(out_dir)
    if backbone == "qwen2_5_vl":
        model, processor = make_qwen25_backbone(seed=seed)
        processor.tokenizer.add_tokens(QWEN25_TOOL_TOKENS)
        model.resize_token_embeddings(len(processor.tokenizer), mean_resizing=False)
        row_source = ROW_SOURCE_QWEN25
    else:
        model, processor = make_backbone(seed=seed)
        row_source = ROW_SOURCE
    with torch.no_grad():  # sharper attention: random init attends almost uniformly, blind to positions
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(ATTENTION_SHARPNESS)
            layer.self_attn.k_proj.weight.mul_(ATTENTION_SHARPNESS)
    tok = processor.tokenizer
    base_len = len(tok)
    model.resize_token_embeddings(base_len + VOCAB_PADDING, mean_resizing=False)
    emb = model.get_input_embeddings().weight
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        emb[base_len:] = 0.02 * torch.randn(emb[base_len:].shape, generator=g)
    processor.chat_template = QWEN2_VL_CHAT_TEMPLATE
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE

    def copy_rows(tokens):
        with torch.no_grad():
            w = model.get_input_embeddings().weight
            for t in tokens:
                i, src = tok.convert_tokens_to_ids(t), tok.convert_tokens_to_ids(row_source[t])
                w[i] = w[src] + 0.05 * torch.randn(w.shape[1], generator=g)  # copied, then "trained"

    if kind in ("ume", "plume"):
        tok.add_tokens(["<gen_emb>"])
        tok.add_tokens(["<disc_emb>"])
        copy_rows(UME_TOKENS)
    if kind == "plume":
        before = set(tok.get_vocab())
        tok.add_tokens(PLUME_ALL_TOKENS)
        model.resize_token_embeddings(len(tok), mean_resizing=False)
        copy_rows([t for t in PLUME_ALL_TOKENS if t not in before])
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.save_pretrained(out, save_original_format=legacy_names)
    processor.save_pretrained(out)
    if kind == "plume":
        D = model.config.text_config.hidden_size
        adapter = random_authors_adapter(D, seed=seed + 2)
        _rewrite_weights(out, {MARKER + k: v for k, v in adapter.items()}, sharded)
        if latent_tokens is not None:
            log = [{"loss": 1.0, "curriculum_latent_tokens": latent_tokens, "step": 10}]
            (out / "trainer_state.json").write_text(json.dumps({"log_history": log}))
    return out


def read_authors_adapter(folder) -> dict:
    """The adapter tensors of a fixture folder, authors' names without the prefix."""
    state = {}
    for path in sorted(Path(folder).glob("model*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            state |= {k[len(MARKER) :]: f.get_tensor(k) for k in f.keys() if k.startswith(MARKER)}
    return state


def read_backbone_tensors(folder) -> dict:
    """Every non-adapter tensor of a fixture folder, under its saved (legacy) name."""
    state = {}
    for path in sorted(Path(folder).glob("model*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            state |= {k: f.get_tensor(k) for k in f.keys() if not k.startswith(MARKER)}
    return state


# ------------------------------------------------------------------ the eval inputs, spec §2.1 and §2.3
def scene_image(w: int, h: int, seed: int = 0) -> Image.Image:
    """A small test picture: a red ellipse (shifted by `seed`) and a blue rectangle on grey."""
    img = Image.new("RGB", (w, h), (235, 235, 235))
    d = ImageDraw.Draw(img)
    d.ellipse([4 + seed, 6, w // 2 + seed, h - 8], fill=(200, 40, 40))
    d.rectangle([w // 2, 4, w - 4, h // 2], fill=(30, 60, 210))
    return img


def smart_resize(h: int, w: int, factor: int = 28, min_pixels: int = 3136, max_pixels: int = 12845056):
    """qwen_vl_utils' stage-1 size rule (spec §2.3), written from its description."""
    h_bar, w_bar = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        h_bar, w_bar = math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        h_bar, w_bar = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return h_bar, w_bar


def stage1(img: Image.Image) -> Image.Image:
    """fetch_image: RGB, smart_resize, PIL's default resampling, no EXIF transpose."""
    img = img.convert("RGB")
    h, w = smart_resize(img.height, img.width)
    return img.resize((w, h))


def blank_image() -> Image.Image:
    """The white 28x28 JPEG of text-only items (spec §2.1), decoded and stage-1 resized (56x56)."""
    buffer = io.BytesIO()
    Image.new("RGB", (28, 28), (255, 255, 255)).save(buffer, format="JPEG")
    return stage1(Image.open(io.BytesIO(buffer.getvalue())))


def authors_text(item: dict) -> str:
    """The item's text T (instruction, then text), media tokens removed and stripped (spec §2.1)."""
    t = " ".join(s for s in (item.get("instruction"), item.get("text")) if s)
    return t.replace("<|video_pad|>", "").replace("<|image_pad|>", "").strip()


def authors_messages(item: dict) -> list:
    """One user message: the visual part first (a blank image for text-only), then the text."""
    if "image" in item:
        visual = {"type": "image", "image": "<image>"}
    elif "video" in item:
        visual = {"type": "video", "video": ["<frame>"]}
    else:
        visual = {"type": "image", "image": "<blank>"}
    text = {"type": "text", "text": authors_text(item) + "\n<disc_emb>\n" + GP}
    return [{"role": "user", "content": [visual, text]}]


def authors_prompt(processor, item: dict) -> str:
    """The chat-template rendering the collator produces, before the <think><bot> prefill."""
    return processor.apply_chat_template(authors_messages(item), tokenize=False, add_generation_prompt=True)


def authors_visuals(item: dict) -> dict:
    if "image" in item:
        return {"images": [stage1(item["image"])]}
    if "video" in item:
        frames = [stage1(f) for f in item["video"]]
        if len(frames) % 2:  # qwen_vl_utils pads a frame list to an even count
            frames.append(frames[-1])
        return {"videos": [frames]}
    return {"images": [blank_image()]}


def authors_inputs(processor, item: dict) -> dict:
    """Batch-1 processor inputs: template text processed, then encode('<think><bot>') appended."""
    enc = processor(text=[authors_prompt(processor, item)], return_tensors="pt", **authors_visuals(item))
    extra = torch.tensor([processor.tokenizer.encode(PREFILL, add_special_tokens=False)])
    enc = dict(enc)
    enc["input_ids"] = torch.cat([enc["input_ids"], extra], dim=1)
    enc["attention_mask"] = torch.cat([enc["attention_mask"], torch.ones_like(extra)], dim=1)
    if "mm_token_type_ids" in enc:
        enc["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
    return enc


# ------------------------------------------------------------------ the latent rollout, spec §2.4
def _decoder(model):
    return model.model.language_model


def _cache_arg(module, cache) -> dict:
    import inspect

    key = "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
    return {key: cache}


def _out_cache(out):
    return getattr(out, "cache", None) or getattr(out, "past_key_values", None)


@torch.no_grad()
def authors_latent_embed(
    model, processor, adapter_state: dict, item: dict, K: int = 8, context="disc", max_new_tokens: int = 0
):
    """The authors' batch-1 latent embedding of one item, fp32 (spec §2.4 steps 1-5).

    With max_new_tokens = 0 the forced <gen_emb> is read; otherwise step 4 runs: argmax of
    model.lm_head, fed one token at a time at the next position, until <gen_emb> or an
    id of generation_config.eos_token_id, and the last <gen_emb> fed is read. Returns the
    embedding, or (embedding, hit_max_new_tokens, generated ids) when decoding."""
    inputs = authors_inputs(processor, item)
    vlm = model.model
    vlm.rope_deltas = None
    names = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")
    names += ("pixel_values_videos", "video_grid_thw", "mm_token_type_ids")
    names += ("second_per_grid_ts",)  # Qwen2.5-VL's processor only: the video frames' time spacing
    kwargs = {k: inputs[k] for k in names if k in inputs}
    out = vlm(**kwargs, use_cache=True)  # no position_ids: HF computes M-RoPE
    h = out.last_hidden_state[0]
    cache = _out_cache(out)
    ids = inputs["input_ids"][0]
    L = ids.shape[0]  # the cache length: every prefix token, expanded pads included
    disc = processor.tokenizer.convert_tokens_to_ids("<disc_emb>")
    where = (ids == disc).nonzero().flatten()
    z = h[-1:].clone()
    anchor = h[int(where[-1]) : int(where[-1]) + 1] if len(where) else z.clone()
    ctx = {"disc": anchor, "prefix_last": h[-1:], "none": None}[context]
    lm = _decoder(model)
    for j in range(K):
        x, _, _ = authors_adapter(adapter_state, z, j, ctx)
        pos = torch.full((3, 1, 1), L + j, dtype=torch.long)
        step = lm(inputs_embeds=x[:, None], position_ids=pos, use_cache=True, **_cache_arg(lm, cache))
        cache = _out_cache(step)
        z = step.last_hidden_state[:, -1]
    suffix = torch.tensor([processor.tokenizer.encode(FORCED_SUFFIX, add_special_tokens=False)])
    S = suffix.shape[1]
    pos = torch.arange(L + K, L + K + S).view(1, 1, -1).expand(3, 1, -1)
    embeds = model.get_input_embeddings()(suffix)
    out = lm(inputs_embeds=embeds, position_ids=pos, use_cache=True, **_cache_arg(lm, cache))
    rep = out.last_hidden_state[0, -1]
    if not max_new_tokens:
        return F.normalize(rep.float(), dim=-1)
    gen = processor.tokenizer.convert_tokens_to_ids("<gen_emb>")
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
    cache, last, at = _out_cache(out), rep, L + K + S
    written, stopped = [], False
    for _ in range(max_new_tokens):
        token = int(model.lm_head(last[None]).float()[0].argmax())
        pos = torch.full((3, 1, 1), at, dtype=torch.long)
        step = lm(
            inputs_embeds=model.get_input_embeddings()(torch.tensor([[token]])),
            position_ids=pos,
            use_cache=True,
            **_cache_arg(lm, cache),
        )
        cache, last, at = _out_cache(step), step.last_hidden_state[0, -1], at + 1
        written.append(token)
        if token == gen:
            rep = last  # the hidden state at the <gen_emb> fed
        if token == gen or token in eos:
            stopped = True
            break
    return F.normalize(rep.float(), dim=-1), not stopped, written


# ------------------------------------------------------------------ the baselines, spec §4
def ume_inputs(processor, item: dict) -> dict:
    """Batch-1 processor inputs of UME-R1: the collator's template text, nothing appended
    (spec §2.1, gen mode UME-R1 explicit), media as authors_visuals prepares them."""
    return dict(
        processor(text=[authors_prompt(processor, item)], return_tensors="pt", **authors_visuals(item))
    )


@torch.no_grad()
def ume_explicit_embed(model, processor, item: dict, max_new_tokens: int):
    """UME-R1's batch-1 gen-mode embedding (spec §4.1): generate with the checkpoint's
    generation_config and hidden states; j the last generated <gen_emb>; index j+1, or -1
    when j+1 >= len-1 or there is none; hidden_states[index][-1], the last position.
    Returns (embedding, generated ids)."""
    inputs = ume_inputs(processor, item)
    model.model.rope_deltas = None
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        output_hidden_states=True,
        return_dict_in_generate=True,
        use_cache=True,
    )
    written = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    gen = processor.tokenizer.convert_tokens_to_ids("<gen_emb>")
    idx = -1
    for j in range(len(written) - 1, -1, -1):
        if written[j] == gen:
            idx = -1 if j + 1 >= len(written) - 1 else j + 1
            break
    h = out.hidden_states[idx][-1][0][-1]  # step 0 holds the whole prompt: its last position
    return F.normalize(h.float(), dim=-1), written


@torch.no_grad()
def ume_disc_embed(model, processor, item: dict):
    """UME-R1's disc-mode embedding (spec §4.1): one pass, hidden at the last <disc_emb>."""
    inputs = ume_inputs(processor, item)
    model.model.rope_deltas = None
    h = model.model(**inputs).last_hidden_state[0]
    disc = processor.tokenizer.convert_tokens_to_ids("<disc_emb>")
    j = int((inputs["input_ids"][0] == disc).nonzero().flatten()[-1])
    return F.normalize(h[j].float(), dim=-1)


def vlm2vec_image(img: Image.Image) -> Image.Image:
    """TIGER's image preparation (spec §4.2): RGB; under 28 px on a side -> 56x56."""
    img = img.convert("RGB")
    return img.resize((56, 56)) if min(img.size) < 28 else img


@torch.no_grad()
def vlm2vec_embed(model, processor, text: str, image=None, frames=None, positions: str = "1d"):
    """VLM2Vec-V2's batch-1 embedding (spec §4.2): the raw string T, no template, bare
    pads; the image (or the frame list, padded to even) as given; positions arange on all
    three axes ("1d") or transformers' own ("hf"); the last token's final hidden, L2-normalised.
    The processor's bounds are the caller's to set ([3136, 1003520] in the harness)."""
    kwargs = {}
    if image is not None:
        kwargs["images"] = [vlm2vec_image(image)]
    if frames is not None:
        frames = [f.convert("RGB") for f in frames]
        kwargs["videos"] = [frames + frames[-1:] if len(frames) % 2 else frames]
    enc = dict(processor(text=[text], return_tensors="pt", **kwargs))
    names = (
        "input_ids",
        "attention_mask",
        "pixel_values",
        "image_grid_thw",
        "pixel_values_videos",
        "video_grid_thw",
    )
    args = {k: enc[k] for k in names if k in enc}
    if positions == "1d":
        S = enc["input_ids"].shape[1]
        args["position_ids"] = torch.arange(S).view(1, 1, S).expand(3, 1, S)
    else:
        args["mm_token_type_ids"] = enc["mm_token_type_ids"]
    model.model.rope_deltas = None
    h = model.model(**args).last_hidden_state[0, -1]
    return F.normalize(h.float(), dim=-1)
