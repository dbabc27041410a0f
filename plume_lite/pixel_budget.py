"""The processor's pixel budget: how many pixels an image (or a video frame) keeps before
it is cut into patches, hence how many visual tokens it costs.

Qwen2-VL's processors resize every image to a multiple of patch × merge size whose area
lies in [min_pixels, max_pixels] (in transformers 5 the `size` fields `shortest_edge` and
`longest_edge`, both in pixels). The released checkpoints' processors allow up to
12.8 M pixels; the authors' evaluation caps it lower through qwen-vl-utils
(RELEASED_CHECKPOINTS.md D16), and a small GPU needs a lower cap still.

    set_pixel_budget(model.processor, max_pixels=448 * 448)
"""

from __future__ import annotations

import dataclasses

from plume_lite.errors import InputError


def _unit(processor) -> int:
    """Pixels of one merged patch: the smallest budget that still yields one token."""
    ip = processor.image_processor
    side = int(getattr(ip, "patch_size", 14)) * int(getattr(ip, "merge_size", 2))
    return side * side


def pixel_budget(processor) -> tuple[int, int]:
    """(min_pixels, max_pixels) the processor's images are resized into."""
    size = processor.image_processor.size
    return int(size.shortest_edge), int(size.longest_edge)


def set_pixel_budget(processor, max_pixels: int | None = None, min_pixels: int | None = None) -> None:
    """Bound the pixels of every image and video frame the processor prepares, in place.

    Args:
        processor: a Qwen2-VL / Qwen2.5-VL processor (e.g. ``model.processor``).
        max_pixels: largest area in pixels (None: unchanged).
        min_pixels: smallest area in pixels (None: unchanged).

    Raises:
        InputError: a budget below one merged patch, or min_pixels above max_pixels.
    """
    low, high = pixel_budget(processor)
    low = low if min_pixels is None else int(min_pixels)
    high = high if max_pixels is None else int(max_pixels)
    unit = _unit(processor)
    if high < unit or low < 1:
        raise InputError(f"pixel budget {low}..{high} is below one {unit}-pixel patch of this processor")
    if low > high:
        raise InputError(f"min_pixels {low} is above max_pixels {high}")
    for name in ("image_processor", "video_processor"):
        part = getattr(processor, name, None)
        if part is not None and getattr(part, "size", None) is not None:
            part.size = dataclasses.replace(part.size, shortest_edge=low, longest_edge=high)
