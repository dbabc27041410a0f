"""The paper's chain in training: a run starts from another run's model (init_from) with a
new adapter, and its curriculum can skip the all-text stage (first_stage=1)."""

import pytest
import torch

from plume_lite.curriculum import STAGE_RATIOS, Curriculum
from plume_lite.errors import ConfigError
from plume_lite.train.config import resolve_config
from plume_lite.train.loop import build_model


def test_init_from_takes_the_saved_backbone_and_a_new_adapter(tmp_path):
    from plume_lite.model import PlumeModel

    torch.manual_seed(0)
    u = PlumeModel.from_backbone("tiny")
    with torch.no_grad():
        u.backbone.model.language_model.layers[0].mlp.up_proj.weight.add_(0.5)  # "trained"
    u.save_pretrained(tmp_path / "u")
    config = resolve_config("tiny", mode="latent", overrides=[f"init_from={tmp_path / 'u'}", "adapter=mlp"])
    model = build_model(config)
    for (name, a), b in zip(u.backbone.state_dict().items(), model.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    assert model.config.adapter == "mlp" and model.token_ids == u.token_ids


def test_first_stage_skips_the_all_text_stage_and_is_checked():
    skip = Curriculum(8, ratios=STAGE_RATIOS[1:])
    assert skip.stage_at(0.0).n_latent == 2 and skip.stage_at(0.99).n_latent == 8
    assert Curriculum(8).stage_at(0.0).n_latent == 0
    with pytest.raises(ConfigError, match="first_stage"):
        resolve_config("tiny", overrides=["first_stage=5"])
    with pytest.raises(ConfigError, match="init_from"):
        resolve_config("tiny").replace(init_from=" ")
