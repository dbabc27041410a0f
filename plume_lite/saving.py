"""Checkpoint format of a PlumeModel: safetensors + JSON, written atomically, never pickled.

    plume_config.json         PlumeConfig (backbone name, adapter, K, LoRA settings)
    adapter.safetensors       transition adapter
    backbone/                 full backbone + processor (full fine-tuning), or
    lora/ + processor/ +      LoRA weights (peft), the processor with PLUME tokens and
    token_rows.safetensors    the embedding rows of the PLUME tokens; the base backbone
                              is loaded from its hub id / folder named in the config
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from plume_lite.config import PlumeConfig
from plume_lite.errors import CheckpointError
from plume_lite.io import atomic_dir

LORA_TARGETS_REGEX = r".*language_model.*\.({})"


def inject_lora(model, settings: dict) -> None:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                        target_modules=LORA_TARGETS_REGEX.format("|".join(settings["targets"])))
    # LoRA layers are injected into the backbone's own modules; keep the peft wrapper
    # out of the module tree (for saving only) so parameters are not registered twice.
    object.__setattr__(model, "_peft", get_peft_model(model.backbone, config))
    model.lora_enabled = True
    model.config = dataclasses.replace(model.config, lora=dict(settings))


def save_plume(model, path) -> None:
    with atomic_dir(path) as tmp:
        model.config.save(tmp / "plume_config.json")
        adapter_state = {k: v.detach().cpu().contiguous() for k, v in model.adapter.state_dict().items()}
        save_file(adapter_state, str(tmp / "adapter.safetensors"))
        if model.lora_enabled:
            model._peft.save_pretrained(tmp / "lora", safe_serialization=True, save_embedding_layers=False)
            model.processor.save_pretrained(tmp / "processor")
            ids = torch.tensor(list(model.token_ids.values()))
            emb = model.backbone.get_input_embeddings().weight
            rows = {"input": emb[ids].detach().cpu().contiguous()}
            out = model.backbone.get_output_embeddings()
            if out is not None and out.weight is not emb:
                rows["output"] = out.weight[ids].detach().cpu().contiguous()
            save_file(rows, str(tmp / "token_rows.safetensors"))
        else:
            model.backbone.save_pretrained(tmp / "backbone")
            model.processor.save_pretrained(tmp / "backbone")


def load_plume(cls, path, dtype=None):
    from transformers import AutoProcessor

    from plume_lite.backbone import load_backbone

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {path}")
    for name in ("plume_config.json", "adapter.safetensors"):
        if not (path / name).exists():
            raise CheckpointError(f"{path} is not a complete plume_lite checkpoint: {name} is missing")
    config = PlumeConfig.load(path / "plume_config.json")
    if (path / "backbone").is_dir():
        backbone, processor = load_backbone(path / "backbone", dtype=dtype)
        model = cls(backbone, processor, config)
    else:
        if not (path / "lora").is_dir():
            raise CheckpointError(f"{path} has neither backbone/ nor lora/: incomplete checkpoint")
        from peft import PeftModel
        backbone, _ = load_backbone(config.backbone, dtype=dtype)
        processor = AutoProcessor.from_pretrained(path / "processor")
        model = cls(backbone, processor, dataclasses.replace(config, lora=None))
        rows = load_file(str(path / "token_rows.safetensors"))
        ids = torch.tensor(list(model.token_ids.values()))
        with torch.no_grad():
            model.backbone.get_input_embeddings().weight[ids] = rows["input"].to(dtype or torch.float32)
            if "output" in rows:
                model.backbone.get_output_embeddings().weight[ids] = rows["output"].to(dtype or torch.float32)
        peft = PeftModel.from_pretrained(backbone, path / "lora")
        object.__setattr__(model, "_peft", peft)
        model.lora_enabled = True
        model.config = config
    model.adapter.load_state_dict(load_file(str(path / "adapter.safetensors")))
    return model
