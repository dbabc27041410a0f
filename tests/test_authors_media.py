"""The authors' image pipeline and frame sampling (spec ../shared/RELEASED_CHECKPOINTS.md §2.3,
§5 D16/D17, §7 P0.6), against values computed by hand from the spec:

- image_pipeline="qwen_vl_utils": qwen_vl_utils' smart_resize (factor 28, area in
  [3136, 12845056]), PIL's default resize, to_rgb (RGBA on white, else convert("RGB")),
  no EXIF orientation; then the processor bounds [784, 2359296];
- frame_sampling="vlm2vec": natural sort, linspace(0, n - 1, 8) truncated, every frame
  when n < 8, padded to an even count;
- the two PlumeConfig settings: validated, saved, absent from old files (defaults), set
  for the released checkpoints.
"""

import json

import numpy as np
import pytest
from PIL import Image

from plume_lite import authors_media
from plume_lite.config import PlumeConfig
from plume_lite.errors import ConfigError
from plume_lite.items import ItemBatcher, load_visual
from plume_lite.pixel_budget import pixel_budget
from plume_lite.released import compat_config
from plume_lite.tokens import PLUME_TOKENS


def _noise(w, h, seed=0, mode="RGB"):
    channels = len(mode)
    a = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(a, mode)


@pytest.fixture(scope="module")
def processor():
    # a fresh copy: the qwen_vl_utils pipeline sets the processor's bounds in place
    from transformers import AutoProcessor

    from plume_lite.backbone import tiny_backbone_path

    proc = AutoProcessor.from_pretrained(tiny_backbone_path(0))
    proc.tokenizer.add_tokens(list(PLUME_TOKENS), special_tokens=True)
    return proc


@pytest.fixture(scope="module")
def authors_batcher(processor):
    return ItemBatcher(processor, "Represent it.", "plume", "qwen_vl_utils", "vlm2vec")


# ------------------------------------------------------------------ stage 1: sizes
# (w, h) in, (w', h') out of qwen_vl_utils' first resize, by hand:
# 20x20: round(20/28) = 1 -> 28x28 = 784 < 3136; beta = sqrt(3136/400) = 2.8,
#   ceil(20 * 2.8 / 28) = 2 -> 56x56
# 300x517: round(517/28) = round(18.46) = 18 -> 504, round(300/28) = round(10.71) = 11 -> 308;
#   504 * 308 = 155,232 is in range
# 5000x3000: 179 * 28 = 5012, 107 * 28 = 2996, 15,015,952 > 12,845,056;
#   beta = sqrt(15,000,000 / 12,845,056) = 1.08066, floor(3000 / beta / 28) = floor(99.15) = 99
#   -> 2772, floor(5000 / beta / 28) = floor(165.24) = 165 -> 4620
# 40x30 (RGBA below): 28x28 < 3136; beta = sqrt(3136/1200) = 1.61658,
#   ceil(48.50 / 28) = 2 -> 56, ceil(64.66 / 28) = 3 -> 84
STAGE1 = [((20, 20), (56, 56)), ((300, 517), (308, 504)), ((5000, 3000), (4620, 2772)), ((40, 30), (84, 56))]
# the same images after the tiny processor (patch 8, merge 2: factor 16) with the authors'
# bounds [784, 2359296], as (t, h / 8, w / 8):
# 56x56: round(3.5) = 4 -> 64x64; 308x504: round(31.5) = 32 -> 512, round(19.25) = 19 -> 304;
# 4620x2772: 4624 * 2768 > 2,359,296, beta = sqrt(2772 * 4620 / 2,359,296) = 2.32984,
#   floor(2772 / beta / 16) = floor(74.36) = 74 -> 1184, floor(4620 / beta / 16) = floor(123.94)
#   = 123 -> 1968; 84x56: round(5.25) = 5 -> 80, round(3.5) = 4 -> 64
GRIDS = {(20, 20): [1, 8, 8], (300, 517): [1, 64, 38], (5000, 3000): [1, 148, 246], (40, 30): [1, 8, 10]}


@pytest.mark.parametrize("size, want", STAGE1)
def test_stage1_sizes_are_qwen_vl_utils_smart_resize(size, want):
    mode = "RGBA" if size == (40, 30) else "RGB"
    assert authors_media.fetch_image(_noise(*size, mode=mode)).size == want


@pytest.mark.parametrize("size", list(GRIDS))
def test_the_processor_grid_follows_stage1_and_the_authors_bounds(authors_batcher, processor, size):
    mode = "RGBA" if size == (40, 30) else "RGB"
    inputs, _ = authors_batcher([{"image": _noise(*size, mode=mode), "text": "x"}], "latent", "cpu")
    assert inputs["image_grid_thw"].tolist() == [GRIDS[size]]
    assert pixel_budget(processor) == (784, 2359296)


def test_stage1_pixels_are_pils_default_resize_of_the_file(tmp_path, authors_batcher, processor):
    path = tmp_path / "page.png"
    _noise(300, 517, seed=3).save(path)
    got = authors_media.fetch_image(str(path))
    original = Image.open(path).convert("RGB")
    assert got.tobytes() == original.resize((308, 504)).tobytes()
    assert got.tobytes() == original.resize((308, 504), Image.Resampling.BICUBIC).tobytes()
    assert got.tobytes() != original.resize((308, 504), Image.Resampling.BILINEAR).tobytes()
    # and what the processor receives is that image
    inputs, _ = authors_batcher([{"image": str(path)}], "latent", "cpu")
    want = processor.image_processor(images=[original.resize((308, 504))], return_tensors="pt")
    assert np.array_equal(inputs["pixel_values"].numpy(), want["pixel_values"].numpy())


def test_to_rgb_pastes_rgba_on_white_and_converts_everything_else():
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # left half: transparent red
    rgba.paste((0, 0, 255, 255), (20, 0, 40, 30))  # right half: opaque blue
    rgba.putpixel((0, 0), (0, 0, 0, 128))  # half-transparent black over white: 127
    out = authors_media.to_rgb(rgba)
    assert out.mode == "RGB" and out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((30, 5)) == (0, 0, 255) and out.getpixel((0, 0)) == (127, 127, 127)
    # the fetched RGBA image is that conversion, resized
    fetched = authors_media.fetch_image(rgba)
    assert fetched.tobytes() == out.resize((84, 56)).tobytes()
    # LA is not RGBA: convert("RGB") drops the alpha and keeps the grey under it
    la = Image.new("LA", (10, 10), (90, 0))
    assert authors_media.to_rgb(la).getpixel((0, 0)) == (90, 90, 90)


def test_an_exif_rotated_jpeg_is_not_rotated_under_qwen_vl_utils(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: shown rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (60, 40), (0, 200, 0)).save(path, exif=exif)
    item = {"image": str(path)}
    kind, img = load_visual(item, "qwen_vl_utils")
    # 60x40 stored: 28x56 < 3136, beta = sqrt(3136/2400) = 1.14310, ceil(1.63) = 2 -> 56,
    # ceil(2.45) = 3 -> 84: landscape, as stored
    assert kind == "image" and img.size == (84, 56)
    assert img.tobytes() == Image.open(path).convert("RGB").resize((84, 56)).tobytes()
    _, default = load_visual(item)  # this package's loader applies the orientation
    assert default.size == (40, 60)


def test_an_image_over_200_to_1_is_refused_as_qwen_vl_utils_does():
    with pytest.raises(authors_media.MediaError, match="10x2100, more than 200:1"):
        authors_media.fetch_image(Image.new("RGB", (10, 2100)))


# ------------------------------------------------------------------ frame sampling
def test_vlm2vec_frame_indices():
    assert authors_media.vlm2vec_indices(64, 8) == [0, 9, 18, 27, 36, 45, 54, 63]  # 63 / 7 = 9
    # 19 / 7 = 2.714: 0, 2.71, 5.43, 8.14, 10.86, 13.57, 16.29, 19, truncated
    assert authors_media.vlm2vec_indices(20, 8) == [0, 2, 5, 8, 10, 13, 16, 19]
    assert authors_media.vlm2vec_indices(8, 8) == list(range(8))
    assert authors_media.vlm2vec_indices(5, 8) == [0, 1, 2, 3, 4]  # all kept, no repeats
    # a video file: frame floor(i * 100 / 64) of the 64 pre-extracted, then the 8 above:
    # 9 * 100 / 64 = 14.06, 18 -> 28.1, 27 -> 42.2, 36 -> 56.25, 45 -> 70.3, 54 -> 84.4, 63 -> 98.4
    assert authors_media.vlm2vec_video_indices(100, 8) == [0, 14, 28, 42, 56, 70, 84, 98]
    assert authors_media.vlm2vec_video_indices(64, 8) == [0, 9, 18, 27, 36, 45, 54, 63]


def test_natural_sort_puts_frame_2_before_frame_10():
    names = ["frame_10.jpg", "frame_2.jpg", "Frame_3.jpg", "frame_1.jpg"]
    assert sorted(names, key=authors_media.natural_key) == [
        "frame_1.jpg",
        "frame_2.jpg",
        "Frame_3.jpg",
        "frame_10.jpg",
    ]
    assert sorted(names)[0] == "Frame_3.jpg"  # plain string order would differ


def _red(frame) -> int:
    return int(round(float(np.asarray(frame)[..., 0].mean()) / 20))


def test_a_frame_folder_is_read_in_natural_order_all_kept_and_padded_to_even(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in (1, 2, 3, 10, 11):  # frame n is red n * 20
        name = f"Frame_{n}.png" if n == 3 else f"frame_{n}.png"
        Image.new("RGB", (56, 56), (n * 20, 0, 0)).save(folder / name)
    (folder / "notes.txt").write_text("not a frame")
    (folder / "frame_4.webp").write_bytes(b"")  # not among the harness's .jpg/.jpeg/.png
    frames = authors_media.load_video(str(folder), "qwen_vl_utils", "vlm2vec")
    assert [_red(f) for f in frames] == [1, 2, 3, 10, 11, 11]  # 5 frames, padded to 6
    assert all(f.size == (56, 56) for f in frames)


def test_five_frames_give_six_and_the_processor_three_temporal_patches(authors_batcher, processor):
    video = [Image.new("RGB", (56, 56), (i * 20, 0, 0)) for i in range(5)]
    frames = authors_media.load_video(video, "plume_lite", "vlm2vec")
    assert [_red(f) for f in frames] == [0, 1, 2, 3, 4, 4]
    inputs, _ = authors_batcher([{"video": video}], "latent", "cpu")
    assert inputs["video_grid_thw"].tolist() == [[3, 8, 8]]  # 6 frames, 2 per temporal patch
    # this package's sampling repeats up to 8 frames
    assert len(authors_media.load_video(video, "plume_lite", "plume_lite")) == 8
    assert len(load_visual({"video": video})[1]) == 8


def test_a_video_file_samples_the_vlm2vec_frames(tmp_path):
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w", format="mp4") as out:  # frame i has brightness i * 6
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 6, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    frames = authors_media.load_video(str(path), "qwen_vl_utils", "vlm2vec")
    # 39 / 7 = 5.571: 0, 5.57, 11.14, 16.71, 22.29, 27.86, 33.43, 39, truncated
    assert [round(float(np.asarray(f).mean()) / 6) for f in frames] == [0, 5, 11, 16, 22, 27, 33, 39]
    assert frames[0].size == (56, 56)  # 32x32: 28x28 < 3136, beta = 1.75, ceil(2) = 2 -> 56


# ------------------------------------------------------------------ settings
@pytest.mark.parametrize("key, value", [("image_pipeline", "qwen"), ("frame_sampling", "uniform")])
def test_an_invalid_setting_is_a_one_line_config_error(key, value):
    with pytest.raises(ConfigError) as e:
        PlumeConfig(**{key: value})
    assert str(e.value).startswith(f"{key} must be one of (") and repr(value) in str(e.value)
    assert "\n" not in str(e.value)


def test_the_settings_are_saved_and_old_files_load_with_the_defaults(tmp_path):
    config = PlumeConfig(image_pipeline="qwen_vl_utils", frame_sampling="vlm2vec")
    config.save(tmp_path / "plume_config.json")
    again = PlumeConfig.load(tmp_path / "plume_config.json")
    assert (again.image_pipeline, again.frame_sampling) == ("qwen_vl_utils", "vlm2vec")
    old = PlumeConfig().to_dict()
    del old["image_pipeline"], old["frame_sampling"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = PlumeConfig.load(tmp_path / "old.json")
    assert (loaded.image_pipeline, loaded.frame_sampling) == ("plume_lite", "plume_lite")


def test_released_checkpoints_record_the_authors_media_settings(tmp_path):
    sizes = {"num_experts": 4, "step_table_size": 32}
    config = compat_config(tmp_path, "ckpt", sizes, {})
    assert (config.image_pipeline, config.frame_sampling) == ("qwen_vl_utils", "vlm2vec")
    config = compat_config(tmp_path, "ckpt", sizes, {"image_pipeline": "plume_lite"})
    assert (config.image_pipeline, config.frame_sampling) == ("plume_lite", "vlm2vec")
