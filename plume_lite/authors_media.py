"""The authors' image pipeline and frame sampling, selected by two PlumeConfig settings.

image_pipeline="qwen_vl_utils" (the authors' evaluation, spec RELEASED_CHECKPOINTS.md §2.3):
    every image and video frame goes through qwen_vl_utils' `fetch_image` first:
    - `to_rgb`: an RGBA image is pasted on white by its alpha; any other mode is PIL's
      `convert("RGB")` (so LA and transparent P images lose their alpha, 16-bit greys
      clip), and EXIF orientation is *not* applied;
    - resized with PIL's default resampling to `smart_resize(h, w)`: multiples of 28,
      area in [3136, 12845056];
    then the processor runs with its own bounds [784, 2359296] pixels (AUTHORS_PIXELS),
    so an image above 2.36 MP is resized twice.
image_pipeline="plume_lite" (default): plume_lite.media's loader (EXIF orientation,
    transparency on white for every mode, 16-bit scaled), then the checkpoint's processor.

frame_sampling="vlm2vec" (the authors' harness, VLM2Vec's `vision_utils`):
    a frame folder's .jpg/.jpeg/.png files in natural order ("frame_2" before
    "frame_10"); k = 8 of n frames at `numpy.linspace(0, n - 1, k, dtype=int)`; all of
    them when n < k; then the count padded to an even number by repeating the last
    frame (qwen_vl_utils does that for a frame list). A frame list is taken in the order
    given. A video file stands for the authors' pre-extracted folder of at most 64
    frames (frame floor(i * n / 64)), from which the k are picked the same way.
frame_sampling="plume_lite" (default): plume_lite.media's sampling and decoding (the
    centres of k equal segments, repeated up to k for a short clip; folders sorted by
    name; frame files EXIF-oriented), then the image pipeline's resize.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from plume_lite import media
from plume_lite.media import MediaError
from plume_lite.protocols import smart_resize

__all__ = [
    "AUTHORS_PIXELS",
    "to_rgb",
    "fetch_image",
    "prepare_image",
    "load_image",
    "load_video",
    "natural_key",
    "vlm2vec_indices",
    "vlm2vec_video_indices",
    "pad_to_even",
]

QWEN_VL_UTILS = "qwen_vl_utils"
VLM2VEC = "vlm2vec"
AUTHORS_PIXELS = (784, 2359296)  # the processor's (min_pixels, max_pixels) in their evaluation
MAX_RATIO = 200  # qwen_vl_utils refuses a longer side over 200x the shorter
NUM_FRAMES = 8  # every video task of their evaluation
MAX_FRAMES_SAVED = 64  # their raw videos are pre-extracted to at most this many frames
FRAME_EXTS = (".jpg", ".jpeg", ".png")  # the frame files their harness lists


# ------------------------------------------------------------------ images (stage 1)
def to_rgb(img):
    """qwen_vl_utils' RGB conversion: RGBA pasted on white by its alpha, any other mode
    through `convert("RGB")`; a new image either way."""
    from PIL import Image

    if img.mode == "RGBA":
        out = Image.new("RGB", img.size, (255, 255, 255))
        out.paste(img, mask=img.getchannel("A"))
        return out
    return img.convert("RGB")


def fetch_image(src):
    """qwen_vl_utils' `fetch_image` of a path, bytes or PIL image: decoded safely by
    plume_lite.media (size checks, one-line errors) but with `to_rgb` and no EXIF
    orientation, then resized to `smart_resize` with PIL's default resampling."""
    name = str(src) if isinstance(src, (str, os.PathLike)) else f"<{type(src).__name__}>"
    return _resize(media.load_image(src, convert=to_rgb), name)


def _resize(img, name: str = "<image>"):
    w, h = img.size
    if max(w, h) > MAX_RATIO * min(w, h):
        raise MediaError(f"{name}: image is {w}x{h}, more than {MAX_RATIO}:1, which qwen_vl_utils refuses")
    height, width = smart_resize(h, w)
    return img.resize((width, height))


def prepare_image(img, image_pipeline: str):
    """An already decoded RGB image (a rendered PDF page) as the pipeline sizes it."""
    return _resize(img) if image_pipeline == QWEN_VL_UTILS else img


def load_image(src, image_pipeline: str):
    """One image under `image_pipeline` ("plume_lite" | "qwen_vl_utils")."""
    return fetch_image(src) if image_pipeline == QWEN_VL_UTILS else media.load_image(src)


# ------------------------------------------------------------------ video frames
def natural_key(name: str) -> list:
    """Sort key of a file name: digit runs compare as numbers, the rest case-insensitively
    (re.split with a group alternates text and digits, so the types line up)."""
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"([0-9]+)", name))]


def vlm2vec_indices(n: int, k: int = NUM_FRAMES) -> list[int]:
    """The k frames of n that VLM2Vec's harness keeps: linspace(0, n - 1, k) truncated to
    ints, or every frame when n < k (no repeats)."""
    import numpy as np

    if n < k:
        return list(range(n))
    return np.linspace(0, n - 1, k, dtype=int).tolist()


def vlm2vec_video_indices(n: int, k: int = NUM_FRAMES) -> list[int]:
    """The frames of an n-frame video file: frame floor(i * n / 64) of the at most 64 the
    authors pre-extract (all of them for n <= 64), then vlm2vec_indices of those."""
    saved = [i * n // MAX_FRAMES_SAVED for i in range(MAX_FRAMES_SAVED)] if n > MAX_FRAMES_SAVED else range(n)
    return [saved[i] for i in vlm2vec_indices(len(saved), k)]


def pad_to_even(frames: list) -> list:
    """`frames` with the last one repeated once when their count is odd (qwen_vl_utils'
    padding of a frame list to the processor's 2-frame temporal patch)."""
    return frames + frames[-1:] if len(frames) % 2 else frames


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTS), key=lambda p: natural_key(p.name)
    )
    if not files:
        raise MediaError(f"{folder}: frame folder holds no {'/'.join(FRAME_EXTS)} files")
    return files


def load_video(src, image_pipeline: str, frame_sampling: str, num_frames: int = NUM_FRAMES) -> list:
    """The frames of a video (file, frame folder, or list of frame paths / PIL images)
    under the two settings (see the module docstring)."""
    if frame_sampling != VLM2VEC:  # this package's sampling and decoding, then stage 1
        frames = media.load_video(src, num_frames=num_frames)
        return [prepare_image(f, image_pipeline) for f in frames]
    if isinstance(src, (list, tuple)) or Path(src).is_dir():
        sources = list(src) if isinstance(src, (list, tuple)) else _frame_files(Path(src))
        if not sources:
            raise MediaError("video frame list is empty")
        frames = [load_image(sources[i], image_pipeline) for i in vlm2vec_indices(len(sources), num_frames)]
    else:
        frames = media.load_video(src, num_frames=num_frames, indices=vlm2vec_video_indices)
        frames = [prepare_image(f, image_pipeline) for f in frames]
    return pad_to_even(frames)
