"""Media decoding: every supported type decodes; every bad file ends in one MediaError
that names the file, within a few seconds."""

import io
import os
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from plume_lite.errors import PlumeError
from plume_lite.media import MediaError, load_image, load_pdf_page, load_video, pdf_num_pages, uniform_indices


def _write_video(path, codec, fmt, n=30, size=(64, 48), opts=None):
    """Frame i carries its index in its brightness (i * 8)."""
    import av

    w, h = size
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=10)
        s.width, s.height = w, h
        s.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        if opts:
            s.options = opts
        for i in range(n):
            a = np.full((h, w, 3), i * 8, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _png_header_only(path, w, h):
    """A valid PNG header declaring w x h, with almost no pixel data (a bomb stand-in)."""

    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import pypdf

    d = tmp_path_factory.mktemp("media_cases")
    _write_video(d / "ok.mp4", "libx264", "mp4", opts={"g": "5"})
    _write_video(d / "ok.webm", "libvpx-vp9", "webm")
    _write_video(d / "ok.gif", "gif", "gif")
    _write_video(d / "fast.mp4", "libx264", "mp4", opts={"g": "5"})
    data = (d / "ok.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "text.mp4").write_text("this is not a video\n" * 10)
    (d / "empty.mp4").write_bytes(b"")
    (d / "empty.png").write_bytes(b"")
    (d / "random.png").write_bytes(os.urandom(4096))
    _png_header_only(d / "huge.png", 30000, 30000)
    pages = [Image.new("RGB", (64, 80), c) for c in ((200, 30, 30), (30, 30, 200))]
    pages[0].save(d / "doc.pdf", "PDF", save_all=True, append_images=pages[1:])
    w = pypdf.PdfWriter(clone_from=str(d / "doc.pdf"))
    w.encrypt("secret")
    w.write(str(d / "locked.pdf"))
    (d / "random.pdf").write_bytes(os.urandom(3000))
    (d / "empty.pdf").write_bytes(b"")
    frames = d / "frames"
    frames.mkdir()
    for i in range(12):
        Image.new("RGB", (32, 32), (i * 20, 0, 0)).save(frames / f"{i:04d}.jpg", quality=95)
    # EXIF orientation 6 = rotate 90 degrees clockwise when displayed
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (0, 200, 0)).save(d / "rotated.jpg", exif=exif)
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.save(d / "transparent.png")
    return d


def _marks(frames):
    return [round(float(np.asarray(f)[..., 0].mean()) / 8) for f in frames]


@pytest.mark.parametrize("name", ["ok.mp4", "ok.webm", "ok.gif"])
def test_video_files_decode_with_uniform_sampling(files, name):
    frames = load_video(files / name)
    assert len(frames) == 8 and all(f.mode == "RGB" and f.size == (64, 48) for f in frames)
    assert _marks(frames) == uniform_indices(30, 8) == [1, 5, 9, 13, 16, 20, 24, 28]


def test_video_seeks_when_over_the_decode_cap_and_resizes(files):
    frames = load_video(files / "ok.mp4", num_frames=4, max_decoded_frames=20, size=32)
    assert [f.size for f in frames] == [(32, 32)] * 4
    assert _marks(frames) == uniform_indices(30, 4)
    with pytest.raises(MediaError, match="decoded frames"):  # one keyframe: cap is binding
        load_video(files / "ok.webm", max_decoded_frames=12)


def test_video_from_frame_folder_and_frame_list(files):
    folder = load_video(files / "frames", num_frames=4)
    assert len(folder) == 4 and folder[0].size == (32, 32)
    pil = [Image.new("RGB", (8, 8), (i, i, i)) for i in range(3)]
    out = load_video(pil, num_frames=8, size=(16, 12))
    assert len(out) == 8 and out[0].size == (16, 12)  # short clips repeat frames
    assert [f.getpixel((0, 0))[0] for f in out] == [0, 0, 0, 1, 1, 2, 2, 2]


def test_frame_budget_is_checked_before_decoding(files):
    with pytest.raises(MediaError, match="per-frame budget"):
        load_video(files / "ok.mp4", max_frame_pixels=1000)


def test_images_exif_alpha_bytes_and_pil(files):
    assert load_image(files / "rotated.jpg").size == (20, 40)
    img = load_image(files / "transparent.png")
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)
    buf = io.BytesIO()
    Image.new("L", (5, 7), 9).save(buf, "PNG")
    assert load_image(buf.getvalue()).size == (5, 7)
    assert load_image(Image.new("P", (3, 3))).mode == "RGB"
    with pytest.raises(MediaError, match="budget"):
        load_image(Image.new("RGB", (100, 100)), max_pixels=5000)


def test_pdf_pages(files):
    assert pdf_num_pages(files / "doc.pdf") == 2
    page = load_pdf_page(files / "doc.pdf", page=1)
    assert page.size == (64, 80) and page.getpixel((30, 40))[2] > 150
    assert load_pdf_page(files / "doc.pdf", dpi=144).size == (128, 160)
    big = load_pdf_page(files / "doc.pdf", dpi=100_000, max_pixels=20_000)
    assert big.size[0] * big.size[1] <= 20_000
    with pytest.raises(MediaError, match="page 2 is out of range.*2 pages"):
        load_pdf_page(files / "doc.pdf", page=2)


BAD = [
    ("empty.png", load_image, "empty"),
    ("empty.mp4", load_video, "empty"),
    ("empty.pdf", load_pdf_page, "empty"),
    ("truncated.mp4", load_video, "truncated|corrupt"),
    ("random.png", load_image, "not a recognised image"),
    ("locked.pdf", load_pdf_page, "encrypted"),
    ("huge.png", load_image, "too large|budget"),
    ("text.mp4", load_video, "not a recognised video"),
    ("missing.mp4", load_video, "not found"),
    ("missing.png", load_image, "not found"),
    ("random.pdf", load_pdf_page, "not a valid PDF"),
    ("text.mp4", load_pdf_page, "not a valid PDF"),
    ("random.png", load_video, "not a recognised video|cannot decode video"),
    ("frames", load_image, "folder"),
]


@pytest.mark.parametrize("name,fn,why", BAD, ids=[f"{b[1].__name__}-{b[0]}" for b in BAD])
def test_bad_files_raise_one_media_error_quickly(files, name, fn, why):
    t0 = time.perf_counter()
    with pytest.raises(MediaError, match=why) as info:
        fn(files / name)
    assert time.perf_counter() - t0 < 3
    assert name in str(info.value)  # the message names the file
    assert isinstance(info.value, PlumeError)
    assert info.value.__cause__ is None  # no library traceback chained on
