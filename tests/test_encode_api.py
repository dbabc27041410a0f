"""encode as sentence-transformers users expect: plain strings and PIL images, one item
or a list, numpy or torch out, optional normalisation, a similarity helper, a model card
and push_to_hub (against a stand-in hub client: no network here)."""

import numpy as np
import pytest
import torch
from PIL import Image

from plume_lite import PlumeModel
from plume_lite.errors import InputError


@pytest.fixture(scope="module")
def circle():
    img = Image.new("RGB", (64, 64), "white")
    img.paste((220, 30, 30), (16, 16, 48, 48))
    return img


def test_strings_and_pil_images_give_numpy_rows(tiny_model, circle):
    emb = tiny_model.encode(["a red circle", circle], convert_to_numpy=True)
    assert isinstance(emb, np.ndarray) and emb.dtype == np.float32 and emb.shape[0] == 2
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    as_dicts = tiny_model.encode([{"text": "a red circle"}, {"image": circle}])
    assert np.allclose(emb, as_dicts.numpy(), atol=1e-6)


def test_one_item_gives_one_row(tiny_model):
    one = tiny_model.encode("a red circle")
    assert one.shape == (tiny_model.backbone.config.text_config.hidden_size,)
    assert torch.allclose(one, tiny_model.encode(["a red circle"])[0])
    row, trace = tiny_model.encode({"text": "a red circle"}, return_trace=True)
    assert row.ndim == 1 and isinstance(trace, dict) and trace["mode"] == "latent"


def test_tensor_wins_and_raw_rows_are_not_normalised(tiny_model):
    assert torch.is_tensor(tiny_model.encode(["x"], convert_to_numpy=True, convert_to_tensor=True))
    raw = tiny_model.encode(["a red circle"], normalize_embeddings=False)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(1))
    assert torch.allclose(
        torch.nn.functional.normalize(raw, dim=-1), tiny_model.encode(["a red circle"]), atol=1e-6
    )


def test_similarity_is_cosine(tiny_model):
    emb = tiny_model.encode(["a red circle", "a blue square", "three bars"], convert_to_numpy=True)
    sim = PlumeModel.similarity(emb, emb)
    assert sim.shape == (3, 3) and torch.allclose(sim.diagonal(), torch.ones(3), atol=1e-5)
    assert torch.allclose(tiny_model.similarity(emb[0], emb), sim[:1], atol=1e-6)


def test_other_inputs_are_refused(tiny_model):
    with pytest.raises(InputError, match="must be a dict, a string or a PIL image"):
        tiny_model.encode([3.5])


def test_save_writes_a_model_card_and_push_uploads_the_folder(tiny_model, tmp_path, monkeypatch):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    card = (tmp_path / "ckpt" / "README.md").read_text()
    assert "library_name: plume_lite" in card and '"latent_steps": 8' in card
    assert PlumeModel.from_pretrained(tmp_path / "ckpt") is not None

    calls = {}

    class StandInHub:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False, repo_type=None):
            calls["repo"] = (repo_id, private, repo_type)
            return f"https://hub.invalid/{repo_id}"

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            from pathlib import Path

            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", StandInHub)
    url = tiny_model.push_to_hub("me/plume-lite-tiny", private=True, token="t0k")
    assert url.endswith("me/plume-lite-tiny") and calls["repo"] == ("me/plume-lite-tiny", True, "model")
    assert {"README.md", "plume_config.json", "adapter.safetensors", "backbone"} <= set(calls["files"])
