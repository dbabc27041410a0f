"""The processor's pixel budget bounds the visual tokens of images and video frames."""

import numpy as np
import pytest
from PIL import Image

from plume_lite.errors import InputError
from plume_lite.pixel_budget import pixel_budget, set_pixel_budget


@pytest.fixture
def processor():
    from transformers import AutoProcessor

    from plume_lite.backbone import tiny_backbone_path

    return AutoProcessor.from_pretrained(tiny_backbone_path(0))


def test_a_larger_budget_gives_more_patches_for_images_and_video_frames(processor):
    image = Image.new("RGB", (256, 256))
    frames = np.zeros((8, 256, 256, 3), dtype=np.uint8)
    low, high = pixel_budget(processor)
    assert processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"].tolist() == [
        [1, 8, 8]
    ]
    set_pixel_budget(processor, max_pixels=128 * 128)
    assert pixel_budget(processor) == (low, 128 * 128)
    assert processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"].tolist() == [
        [1, 16, 16]
    ]
    grid = processor.video_processor(videos=[frames], return_tensors="pt")["video_grid_thw"].tolist()
    assert grid == [[4, 16, 16]]  # 8 frames, 2 per temporal patch


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_pixels": 10}, "below one 256-pixel patch"),
        ({"min_pixels": 9000, "max_pixels": 4096}, "above max_pixels"),
    ],
)
def test_an_impossible_budget_is_one_line(processor, kwargs, words):
    with pytest.raises(InputError, match=words):
        set_pixel_budget(processor, **kwargs)
