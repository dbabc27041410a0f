"""Untrusted media is decoded within hard bounds: a hostile PDF ends in one MediaError
from an isolated, memory-limited worker (the caller and the next request are unharmed), a
video that lies about its frame size is stopped on the first oversized decoded frame, and
high-bit-depth and float images keep their grey levels."""

import threading
import time

import av
import numpy as np
import pytest
from PIL import Image

from plume_lite import isolated, media
from plume_lite.media import MediaError


def nested_xobject_pdf(depth: int = 12, fanout: int = 10) -> bytes:
    """A ~5 KB PDF whose page draws form 0, which draws form 1 `fanout` times, and so on:
    fanout**depth drawing operations (pdfium has no operation budget)."""
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] "
        "/Resources << /XObject << /F0 5 0 R >> >> /Contents 4 0 R >>",
        "<< /Length 6 >>\nstream\n/F0 Do\nendstream",
    ]
    for d in range(depth):
        last = d + 1 == depth
        body = "0 0 m 100 100 l S" if last else " ".join(["q 0.9 0 0 0.9 1 1 cm /F Do Q"] * fanout)
        res = "" if last else f"/Resources << /XObject << /F {6 + d} 0 R >> >>"
        objs.append(
            f"<< /Type /XObject /Subtype /Form /BBox [0 0 200 200] {res} "
            f"/Length {len(body)} >>\nstream\n{body}\nendstream"
        )
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


@pytest.fixture()
def bomb_pdf(tmp_path):
    path = tmp_path / "nested.pdf"
    path.write_bytes(nested_xobject_pdf())
    return path


def test_hostile_pdf_ends_in_one_line_and_the_next_page_renders(bomb_pdf, media_files):
    start = time.monotonic()
    with pytest.raises(MediaError) as err:
        media.load_pdf_page(bomb_pdf)
    assert time.monotonic() - start < media.PDF_TIMEOUT_S + 5
    assert "\n" not in str(err.value) and str(bomb_pdf) in str(err.value)
    # the worker that died was replaced; this process never saw the allocation
    assert media.load_pdf_page(media_files["pdf"], page=1).size[0] > 0


def test_a_pdf_worker_past_its_time_is_killed_and_replaced(media_files):
    pool = isolated.WorkerPool(workers=1)
    try:
        with pytest.raises(TimeoutError):
            pool.call("pdf_num_pages", timeout_s=1e-4, path=media_files["pdf"])
        ok, pages = pool.call("pdf_num_pages", path=media_files["pdf"])
        assert ok and pages == 2
    finally:
        pool.close()


def test_a_good_pdf_is_served_while_a_hostile_one_renders(bomb_pdf, media_files):
    errors = []
    hostile = threading.Thread(
        target=lambda: errors.append(pytest.raises(MediaError, media.load_pdf_page, bomb_pdf))
    )
    hostile.start()
    time.sleep(0.2)
    start = time.monotonic()
    img = media.load_pdf_page(media_files["pdf"])  # a second worker answers it
    assert time.monotonic() - start < 5 and img.mode == "RGB"
    hostile.join()
    assert errors


def test_pdf_page_must_be_an_integer(media_files):
    with pytest.raises(MediaError, match="page must be an integer"):
        media.load_pdf_page(media_files["pdf"], page=2.9)


def _m4v(path, side: int, frames: int) -> bytes:
    with av.open(str(path), "w", format="m4v") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((side, side, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def test_video_that_lies_about_its_frame_size_is_stopped(tmp_path):
    # a 64x64 stream followed by a 512x512 one: the header (and the probe) say 64x64
    liar = tmp_path / "liar.m4v"
    liar.write_bytes(_m4v(tmp_path / "a.m4v", 64, 4) + _m4v(tmp_path / "b.m4v", 512, 4))
    with pytest.raises(MediaError, match="a decoded frame is 512x512"):
        media.load_video(liar, num_frames=8, max_frame_pixels=100_000)


def test_sixteen_bit_grey_png_keeps_its_grey_levels(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    out = np.asarray(media.load_image(tmp_path / "g16.png"))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert abs(out.mean() - 127.5) < 1 and out.min() == 0 and out.max() == 255


def test_float_tiff_in_unit_range_is_scaled_and_others_are_refused(tmp_path):
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "half.tif")
    assert np.asarray(media.load_image(tmp_path / "half.tif")).mean() == pytest.approx(128, abs=1)
    Image.fromarray(np.full((8, 8), 1e6, np.float32)).save(tmp_path / "huge.tif")
    with pytest.raises(MediaError, match="outside"):
        media.load_image(tmp_path / "huge.tif")
