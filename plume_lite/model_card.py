"""The README.md model card that `save_pretrained` writes beside the weights: what the
checkpoint is, how to load and use it, and its settings (read from its own config), so
a folder pushed to the Hugging Face Hub explains itself."""

from __future__ import annotations

import dataclasses
import json


def model_card(model) -> str:
    config = model.config
    settings = json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)
    weights = "LoRA on the language model (`lora/`)" if config.lora else "full backbone weights (`backbone/`)"
    return f"""---
library_name: plume_lite
tags:
- multimodal-embeddings
- latent-reasoning
- qwen2-vl
license: apache-2.0
---

# PLUME-lite checkpoint

A universal multimodal embedding model in the PLUME style (arXiv 2604.02073): the backbone
`{config.backbone}` reads an item (text, image, video or document page), takes
{config.latent_steps} continuous latent steps through a `{config.adapter}` transition adapter,
and its `<gen_emb>` hidden state is the embedding. Saved by
[plume_lite](https://pypi.org/project/plume_lite/) with {weights}.

## Use

```python
from plume_lite import PlumeModel

model = PlumeModel.from_pretrained("path/or/hub-id")
emb = model.encode(["a red circle", {{"image": "cat.png"}}], convert_to_numpy=True)
scores = model.similarity(emb[:1], emb)
```

Modes: `latent` (this model's K latent steps), `direct` (one pass, read `<disc_emb>`),
`explicit` (write a rationale, then read `<gen_emb>`).

## Settings

```json
{settings}
```
"""
