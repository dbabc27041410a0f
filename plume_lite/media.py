"""Safe decoding of images, videos and PDF pages.

Every failure -- missing, empty, truncated, mistyped, encrypted or oversized file -- ends in
one `MediaError` whose message names the file and the problem. Library exceptions are
translated (`from None`) so a user sees one line, not a decoder traceback. Sizes are checked
from headers *before* pixels are decoded, and video decoding is capped in frames, so a
hostile file costs at most a bounded amount of time and memory.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from math import ceil
from pathlib import Path

from PIL import Image, ImageOps

from plume_lite.errors import PlumeError

DEFAULT_MAX_PIXELS = 50_000_000  # one image: ~7000 x 7000; a 30000^2 "bomb" is refused
DEFAULT_MAX_FRAME_PIXELS = 8_500_000  # one video frame: 4K fits
DEFAULT_MAX_DECODED_FRAMES = 4096  # total frames a single load_video may decode
VIDEO_TIMEOUT_S = 30.0  # wall-clock budget of one load_video
DEFAULT_PDF_MAX_PIXELS = 16_000_000  # rendered page; the DPI is lowered to fit
MAX_PDF_DPI = 300
PDF_TIMEOUT_S = 20.0  # one page, opened and rendered in a worker process
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class MediaError(PlumeError, ValueError):
    """A media file could not be read; the message says which file and why."""


def _name(src) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else f"<{type(src).__name__}>"


def _check_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, expected a file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")
    return path


def _mpx(n: float) -> str:
    return f"{n / 1e6:.1f} Mpx"


# ----------------------------------------------------------------------------- images


def _to_8bit(img: Image.Image, name: str) -> Image.Image:
    """16/32-bit integer and float single-channel images -> 8-bit "L", scaled by their
    range (PIL's convert("RGB") clips them: 16-bit greys come out almost white, floats
    in [0, 1] black)."""
    import numpy as np

    a = np.asarray(img)
    if img.mode == "F":
        if not np.isfinite(a).all():
            raise MediaError(f"{name}: float image holds NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0 and hi <= 1:
            scale = 255.0  # the usual [0, 1] float convention
        elif lo >= 0 and hi <= 255:
            scale = 1.0
        else:
            raise MediaError(
                f"{name}: float image values span [{lo:g}, {hi:g}], outside "
                f"[0, 1] and [0, 255]; convert it to 8 bits first"
            )
        return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), "L")
    hi = int(a.max()) if a.size else 0
    if a.size and int(a.min()) < 0:
        raise MediaError(f"{name}: {img.mode} image holds negative values")
    # the declared depth where the mode has one; else the smallest depth that holds the values
    bits = 16 if img.mode.startswith("I;16") else 8 if hi <= 255 else 16 if hi <= 65535 else 32
    return Image.fromarray((a.astype(np.float64) * 255.0 / (2**bits - 1)).round().astype(np.uint8), "L")


def _to_rgb(img: Image.Image, name: str = "<image>") -> Image.Image:
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img, name)
    # Transparent pixels become white rather than whatever colour hides under alpha=0.
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.getchannel("A"))
        return bg
    return img.convert("RGB") if img.mode != "RGB" else img.copy()


def _check_budget(name, size, max_pixels):
    w, h = size
    if w * h > max_pixels:
        raise MediaError(
            f"{name}: image is {w}x{h} ({_mpx(w * h)}), over the "
            f"{_mpx(max_pixels)} budget (possible decompression bomb)"
        )


def _decode(img: Image.Image, name: str, convert=None) -> Image.Image:
    try:
        img.load()  # decode now, inside the try: truncated data fails here
        if convert is not None:
            return convert(img)
        return _to_rgb(ImageOps.exif_transpose(img), name)
    except MediaError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise MediaError(
            f"{name}: cannot decode image, corrupt or truncated ({type(e).__name__}: {e})"
        ) from None


def load_image(src, max_pixels: int = DEFAULT_MAX_PIXELS, convert=None) -> Image.Image:
    """Path, bytes or PIL image -> RGB PIL image, EXIF orientation applied.

    The pixel budget is checked on the header size, before any pixel is decoded.
    `convert`, if given, maps the decoded image to the RGB image returned instead of
    EXIF orientation plus this module's conversion (the authors' pipeline passes
    qwen_vl_utils' to_rgb: plume_lite.authors_media)."""
    name = _name(src)
    if isinstance(src, Image.Image):
        _check_budget(getattr(src, "filename", "") or name, src.size, max_pixels)
        return _decode(src, getattr(src, "filename", "") or name, convert)
    if isinstance(src, (bytes, bytearray)):
        if not src:
            raise MediaError("<bytes>: image data is empty")
        fp, name = io.BytesIO(src), "<bytes>"
    else:
        fp = _check_file(src)
    try:
        with warnings.catch_warnings():
            # PIL's own bomb check warns/raises at its global limit; ours is explicit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except Image.UnidentifiedImageError:
        raise MediaError(f"{name}: not a recognised image format (corrupt or wrong file type)") from None
    except Image.DecompressionBombError as e:
        raise MediaError(f"{name}: image too large (possible decompression bomb): {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise MediaError(f"{name}: cannot open image ({type(e).__name__}: {e})") from None
    with img:
        _check_budget(name, img.size, max_pixels)
        return _decode(img, name, convert)


# ----------------------------------------------------------------------------- videos


def uniform_indices(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n): the centre of each of k equal segments
    (repeats when n < k, so a short clip still yields k frames)."""
    if n <= 0 or k <= 0:
        return []
    return [min(n - 1, int((i + 0.5) * n / k)) for i in range(k)]


def _size_tuple(size):
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    w, h = size
    return (int(w), int(h))


def _frame_list(frames, num_frames, size, indices=uniform_indices) -> list[Image.Image]:
    if len(frames) == 0:
        raise MediaError("video frame list is empty")
    out = []
    for i in indices(len(frames), num_frames):
        img = load_image(frames[i])
        out.append(img.resize(size, Image.BILINEAR) if size else img)
    return out


def _frame_folder(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise MediaError(f"{path}: frame folder holds no image files")
    return files


def load_video(
    src,
    num_frames: int = 8,
    max_decoded_frames: int = DEFAULT_MAX_DECODED_FRAMES,
    size=None,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    indices=uniform_indices,
) -> list[Image.Image]:
    """Video file (mp4/webm/gif/...), frame folder, or list of frame paths/PIL images ->
    `num_frames` uniformly sampled RGB frames, resized to `size` ((w, h) or int) if given.
    `indices(n, num_frames)` picks which of the n frames (default uniform_indices; the
    authors' rule is in plume_lite.authors_media)."""
    size = _size_tuple(size)
    if isinstance(src, (list, tuple)):
        return _frame_list(list(src), num_frames, size, indices)
    path = Path(src)
    if path.is_dir():
        return _frame_list(_frame_folder(path), num_frames, size, indices)
    path = _check_file(path)
    try:
        import av
    except ImportError:  # pragma: no cover - av is a hard dependency
        raise MediaError(f"{path}: PyAV is not installed (pip install av)") from None
    try:
        return _decode_video(av, path, num_frames, max_decoded_frames, size, max_frame_pixels, indices)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, MemoryError) as e:
        raise MediaError(
            f"{path}: cannot decode video, corrupt or truncated ({type(e).__name__}: {e})"
        ) from None


def _open_video(av, path):
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as e:
        why = getattr(e, "strerror", None) or e
        raise MediaError(
            f"{path}: not a recognised video container (corrupt, truncated or wrong file type: {why})"
        ) from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path}: file holds no video stream")
    return container


def _decode_video(av, path, num_frames, max_decoded, size, max_frame_pixels, indices=uniform_indices):
    # Pass 1: demux only (no decoding) to count frames and learn their timestamps.
    with _open_video(av, path) as container:
        stream = container.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > max_frame_pixels:
            raise MediaError(
                f"{path}: video frames are {w}x{h} ({_mpx(w * h)}), over the "
                f"{_mpx(max_frame_pixels)} per-frame budget"
            )
        declared = stream.frames
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size > 0]
    pts = [t for t, _ in packets]
    keyframes = sorted(t for t, k in packets if k and t is not None)
    n = len(pts)
    if n == 0:
        raise MediaError(f"{path}: video stream holds no frames")
    if declared and n < declared:
        raise MediaError(f"{path}: video is truncated ({n} of {declared} declared frames present)")
    want = indices(n, num_frames)
    budget = _VideoBudget(path, max_frame_pixels)
    if n <= max_decoded:
        frames = _decode_sequential(av, path, set(want), max(want), size, budget)
        if len(frames) < len(set(want)):
            raise MediaError(
                f"{path}: video is truncated or corrupt (decoded too few frames, "
                f"needed frame {max(want) + 1} of {n})"
            )
        return [frames[i] for i in want]
    order = sorted(p for p in pts if p is not None)
    if len(order) < n:
        raise MediaError(
            f"{path}: video timestamps are missing; cannot seek in a "
            f"{n}-frame video within the {max_decoded}-frame decode cap"
        )
    return _decode_by_seek(av, path, [order[i] for i in want], keyframes, max_decoded, size, budget)


def _decode_sequential(av, path, keep: set, last: int, size, budget) -> dict:
    frames = {}  # converted at once: decoder buffers are not held across iterations
    with _open_video(av, path) as container:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            budget.check(frame)
            if i in keep:
                frames[i] = _to_pil(frame, size)
            if i >= last:
                break
    return frames


def _decode_by_seek(av, path, targets, keyframes, max_decoded, size, budget):
    # Long video: seek to the keyframe before each target and decode forward to it; when
    # the next target lies in the same keyframe interval, just keep decoding forward.
    out, decoded, last = [], 0, None
    with _open_video(av, path) as container:
        stream = container.streams.video[0]
        frames = None
        for t in targets:
            kf = max((k for k in keyframes if k <= t), default=None)
            if frames is None or last is None or kf is None or kf > last:
                container.seek(t, stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
            got = None
            for frame in frames:
                budget.check(frame)
                decoded += 1
                if decoded > max_decoded:
                    raise MediaError(
                        f"{path}: sampling {len(targets)} frames needs more than "
                        f"{max_decoded} decoded frames (sparse keyframes?)"
                    )
                last = frame.pts
                if frame.pts is None or frame.pts >= t:
                    got = frame
                    break
            if got is None:
                raise MediaError(f"{path}: video is truncated (no frame at timestamp {t})")
            out.append(_to_pil(got, size))
    return out


class _VideoBudget:
    """Bounds on what decoding one video may cost, checked on every decoded frame: the
    header's frame size can lie, and a codec can be slow."""

    def __init__(self, path, max_frame_pixels: int, timeout_s: float = VIDEO_TIMEOUT_S):
        self.path, self.max_frame_pixels = path, max_frame_pixels
        self.deadline = time.monotonic() + timeout_s
        self.timeout_s = timeout_s

    def check(self, frame) -> None:
        if frame.width * frame.height > self.max_frame_pixels:
            raise MediaError(
                f"{self.path}: a decoded frame is {frame.width}x{frame.height} "
                f"({_mpx(frame.width * frame.height)}), over the "
                f"{_mpx(self.max_frame_pixels)} per-frame budget"
            )
        if time.monotonic() > self.deadline:
            raise MediaError(f"{self.path}: video took longer than {self.timeout_s:.0f} s to decode; refused")


def _to_pil(frame, size) -> Image.Image:
    if size:
        return frame.reformat(width=size[0], height=size[1], format="rgb24").to_image()
    return frame.to_image().convert("RGB")


# ----------------------------------------------------------------------------- PDF pages


def _open_pdf(path, password=None):
    import pypdfium2 as pdfium

    path = _check_file(path)
    try:
        return pdfium.PdfDocument(str(path), password=password)
    except pdfium.PdfiumError as e:
        msg = str(e).lower()
        if "password" in msg or "security" in msg:
            raise MediaError(f"{path}: PDF is encrypted (password protected); decrypt it first") from None
        if "format" in msg or "file" in msg:
            raise MediaError(f"{path}: not a valid PDF (corrupt, truncated or wrong file type)") from None
        raise MediaError(f"{path}: cannot open PDF ({e})") from None


def _pdf_num_pages_here(path) -> int:
    doc = _open_pdf(path)
    try:
        return len(doc)
    finally:
        doc.close()


def _render_pdf_page_here(path, page, dpi, max_pixels, password):
    """(mode, size, pixel bytes) of one rendered page; runs inside an isolated worker."""
    import pypdfium2 as pdfium

    doc = _open_pdf(path, password)
    try:
        n = len(doc)
        if not 0 <= page < n:
            raise MediaError(
                f"{path}: page {page} is out of range; the document has {n} "
                f"page{'s' if n != 1 else ''} (0-based index)"
            )
        pg = doc[page]
        try:
            w_pt, h_pt = pg.get_size()
            scale = min(float(dpi), MAX_PDF_DPI) / 72.0
            if w_pt <= 0 or h_pt <= 0:
                raise MediaError(f"{path}: page {page} has an empty size")
            scale = min(scale, (max_pixels / (w_pt * h_pt)) ** 0.5)  # fit the budget...
            while scale > 1e-3 and ceil(w_pt * scale) * ceil(h_pt * scale) > max_pixels:
                scale *= 0.98  # ...after the renderer rounds the size up
            img = pg.render(scale=scale).to_pil().convert("RGB")
        except pdfium.PdfiumError as e:
            raise MediaError(f"{path}: cannot render page {page} ({e})") from None
        finally:
            pg.close()
        return img.mode, img.size, img.tobytes()
    finally:
        doc.close()


def _isolated(name: str, path, **kwargs):
    """Run a PDF decoder in a limited worker process (plume_lite.isolated)."""
    from plume_lite import isolated

    path = _check_file(path)
    try:
        ok, value = isolated.pool().call(name, timeout_s=PDF_TIMEOUT_S, path=str(path), **kwargs)
    except TimeoutError:
        raise MediaError(
            f"{path}: PDF took longer than {PDF_TIMEOUT_S:.0f} s to decode; refused (too complex, or hostile)"
        ) from None
    except ChildProcessError as e:
        raise MediaError(f"{path}: PDF decoder stopped on this file ({e}); refused") from None
    if not ok:
        raise MediaError(value)
    return value


def pdf_num_pages(path) -> int:
    """Number of pages of a PDF file (opened in an isolated, memory-limited process)."""
    return _isolated("pdf_num_pages", path)


def load_pdf_page(
    path,
    page: int = 0,
    dpi: float = 72,
    max_pixels: int = DEFAULT_PDF_MAX_PIXELS,
    password: str | None = None,
) -> Image.Image:
    """Render one page (0-based) of a PDF to an RGB PIL image.

    `dpi` is capped at MAX_PDF_DPI and lowered further so the render fits `max_pixels`.
    The PDF is opened and rendered in a separate process limited in memory and time
    (plume_lite.isolated): a hostile page ends in a MediaError, not in a dead server."""
    if isinstance(page, bool) or not isinstance(page, int):
        raise MediaError(f"{path}: page must be an integer (0-based), got {page!r}")
    mode, size, data = _isolated(
        "pdf_page", path, page=page, dpi=dpi, max_pixels=max_pixels, password=password
    )
    return Image.frombytes(mode, size, data)
