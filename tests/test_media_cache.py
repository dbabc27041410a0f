"""The decoded-media cache: one decode per file while it is unchanged and in budget,
the same pixels as a fresh decode, and failures never cached."""

import os

import numpy as np
import pytest
from PIL import Image

from plume_lite import authors_media, media
from plume_lite.errors import ConfigError
from plume_lite.items import load_visual
from plume_lite.media import MediaError
from plume_lite.media_cache import DECODED, MediaCache, budget_bytes


@pytest.fixture(autouse=True)
def empty_cache():
    DECODED.clear()
    yield
    DECODED.clear()


def counting(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def write_png(path, colour):
    Image.new("RGB", (24, 16), colour).save(path)
    return str(path)


def test_an_image_file_is_decoded_once_and_gives_the_same_pixels(tmp_path, monkeypatch):
    calls = counting(monkeypatch, authors_media, "load_image")
    path = write_png(tmp_path / "a.png", (200, 10, 10))
    kind, first = load_visual({"image": path})
    _, second = load_visual({"image": path})
    assert kind == "image" and len(calls) == 1
    fresh = media.load_image(path)
    assert np.array_equal(np.asarray(second), np.asarray(fresh))


def test_a_rewritten_file_is_decoded_again(tmp_path, monkeypatch):
    calls = counting(monkeypatch, authors_media, "load_image")
    path = write_png(tmp_path / "a.png", (200, 10, 10))
    load_visual({"image": path})
    Image.new("RGB", (30, 20), (0, 0, 250)).save(path)
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    _, img = load_visual({"image": path})
    assert len(calls) == 2 and img.size == (30, 20) and img.getpixel((0, 0)) == (0, 0, 250)


def test_the_media_settings_are_part_of_the_key(tmp_path, monkeypatch):
    calls = counting(monkeypatch, authors_media, "load_image")
    path = write_png(tmp_path / "a.png", (1, 2, 3))
    load_visual({"image": path}, image_pipeline="plume_lite")
    load_visual({"image": path}, image_pipeline="qwen_vl_utils")
    assert len(calls) == 2


def test_a_video_is_cached_and_callers_get_their_own_frame_list(media_files, monkeypatch):
    calls = counting(monkeypatch, authors_media, "load_video")
    _, frames = load_visual({"video": media_files["video"]})
    n = len(frames)
    frames.clear()
    _, again = load_visual({"video": media_files["video"]})
    assert len(calls) == 1 and len(again) == n == 8


def test_pdf_pages_are_cached_per_page(media_files, monkeypatch):
    calls = counting(monkeypatch, media, "load_pdf_page")
    pages = [load_visual({"pdf": media_files["pdf"], "page": p})[1] for p in (0, 1, 0, 1)]
    assert len(calls) == 2
    assert np.array_equal(np.asarray(pages[0]), np.asarray(pages[2]))
    assert not np.array_equal(np.asarray(pages[0]), np.asarray(pages[1]))


def test_a_corrupt_file_is_not_cached_and_fails_every_time(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"not a png")
    for _ in range(2):
        with pytest.raises(MediaError, match="not a recognised image format"):
            load_visual({"image": str(path)})
    assert len(DECODED) == 0


def test_a_full_cache_keeps_what_it_holds_and_admits_nothing_more(monkeypatch):
    img = Image.new("RGB", (32, 32))  # 3 KiB
    monkeypatch.setenv("PLUME_MEDIA_CACHE_MB", str(7 * 1024 / (1 << 20)))  # room for two
    cache = MediaCache()
    loads = []

    def load(name):
        loads.append(name)
        return img

    for _ in range(3):  # a cyclic scan, as an epoch or an evaluation makes
        for name in ("a", "b", "c"):
            cache.get_or_load(name, lambda n=name: load(n))
    # a and b stay cached; c, which does not fit, is loaded on every pass
    assert loads == ["a", "b", "c", "c", "c"] and len(cache) == 2 and cache.nbytes == 6 * 1024


def test_zero_turns_it_off_and_a_wrong_value_is_one_line(monkeypatch, tmp_path):
    calls = counting(monkeypatch, authors_media, "load_image")
    monkeypatch.setenv("PLUME_MEDIA_CACHE_MB", "0")
    path = write_png(tmp_path / "a.png", (5, 5, 5))
    load_visual({"image": path})
    load_visual({"image": path})
    assert len(calls) == 2 and len(DECODED) == 0
    monkeypatch.setenv("PLUME_MEDIA_CACHE_MB", "lots")
    with pytest.raises(ConfigError, match="PLUME_MEDIA_CACHE_MB must be a number"):
        budget_bytes()


@pytest.fixture
def disk(tmp_path):
    folder = tmp_path / "media-cache"
    DECODED.use_disk(folder)
    yield folder
    DECODED.use_disk(None)


def test_the_disk_layer_shares_decodes_between_processes_with_the_same_pixels(media_files, disk, monkeypatch):
    items = [{"image": media_files["image"]}, {"video": media_files["video"]}, {"pdf": media_files["pdf"]}]
    first = [load_visual(dict(it))[1] for it in items]
    assert len(list(disk.glob("*.npy"))) == 3
    DECODED.clear()  # what a fresh process sees: an empty memory layer, the same folder
    loads = [counting(monkeypatch, authors_media, name) for name in ("load_image", "load_video")]
    loads.append(counting(monkeypatch, media, "load_pdf_page"))
    second = [load_visual(dict(it))[1] for it in items]
    assert loads == [[], [], []]  # none decoded again
    for a, b in zip(first, second):
        frames_a, frames_b = (a, b) if isinstance(a, list) else ([a], [b])
        assert len(frames_a) == len(frames_b)
        for fa, fb in zip(frames_a, frames_b):
            assert fb.mode == fa.mode == "RGB" and np.array_equal(np.asarray(fa), np.asarray(fb))


def test_a_broken_disk_entry_is_decoded_again_and_replaced(tmp_path, disk, monkeypatch):
    calls = counting(monkeypatch, authors_media, "load_image")
    path = write_png(tmp_path / "a.png", (9, 80, 200))
    load_visual({"image": path})
    (entry,) = disk.glob("*.npy")
    entry.write_bytes(entry.read_bytes()[:40])  # truncated, as a killed copy would leave it
    DECODED.clear()
    _, img = load_visual({"image": path})
    assert len(calls) == 2 and img.getpixel((0, 0)) == (9, 80, 200)
    DECODED.clear()
    _, again = load_visual({"image": path})
    assert len(calls) == 2 and np.array_equal(np.asarray(again), np.asarray(img))


def test_the_disk_layer_keeps_only_rgb_decodes(disk):
    cache = MediaCache()
    cache.use_disk(disk)
    grey = Image.new("L", (8, 8), 7)
    assert cache.get_or_load(("grey",), lambda: grey) is grey
    assert not disk.exists() or not list(disk.glob("*.npy"))
