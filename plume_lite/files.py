"""Files as items: the kind of a file (by its extension) and of an item, and the items
a file or a folder of files stands for.

    items_from_path("photo.png")              # [{"image": "/abs/photo.png"}]
    items_from_path("report.pdf")             # one item per page (up to MAX_PDF_PAGES)
    items_from_path("corpus/", skipped=[])    # every readable file below the folder

Each file is decoded once here, through plume_lite.media, so a bad one fails now with
one line that names it (MediaError), not later inside encode().
"""

from __future__ import annotations

from pathlib import Path

from plume_lite import media
from plume_lite.media import IMAGE_EXTS, MediaError

VIDEO_EXTS = frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"})
PDF_EXTS = frozenset({".pdf"})
TEXT_EXTS = frozenset({".txt"})  # one text item per non-empty line
EXTS = {"image": frozenset(IMAGE_EXTS), "video": VIDEO_EXTS, "pdf": PDF_EXTS, "text": TEXT_EXTS}
VISUAL_KINDS = ("image", "video", "pdf")  # also the item keys that hold them
MAX_PDF_PAGES = 16  # pages taken from one PDF
MAX_TEXT_CHARS = 1000  # a longer text line is cut
VIDEO_FRAMES = 8  # frames decoded to check a video


def media_kind(path) -> str | None:
    """The kind of a file by its extension: image, video, pdf or text; None for any other."""
    ext = Path(path).suffix.lower()
    return next((kind for kind, exts in EXTS.items() if ext in exts), None)


def item_kind(item: dict) -> str:
    """The kind of an item: image, video or pdf for the visual input it carries (at
    most one, see validate_item), else text."""
    return next((kind for kind in VISUAL_KINDS if item.get(kind) is not None), "text")


def extensions(kinds=tuple(EXTS)) -> list[str]:
    """The extensions of these kinds, sorted within each kind (e.g. for an upload box)."""
    return [ext for kind in kinds for ext in sorted(EXTS[kind])]


def require_kind(path, kinds=tuple(EXTS)) -> str:
    """media_kind(path), or a one-line MediaError when it is not one of `kinds`."""
    kind = media_kind(path)
    if kind not in kinds:
        ext = Path(path).suffix.lower() or "(no extension)"
        wanted = "; ".join(f"{kind} ({', '.join(sorted(EXTS[kind]))})" for kind in kinds)
        raise MediaError(f"{Path(path).name}: unsupported file type {ext!r}; expected {wanted}")
    return kind


def text_items(lines) -> list[dict]:
    """One {"text"} item per non-empty line, white space folded, cut at MAX_TEXT_CHARS."""
    texts = (" ".join(str(line).split())[:MAX_TEXT_CHARS] for line in lines)
    return [{"text": text} for text in texts if text]


def items_from_file(path, max_pages: int = MAX_PDF_PAGES) -> list[dict]:
    """The items one file stands for, each checked by decoding it; paths are absolute."""
    path = Path(path).resolve()
    kind = require_kind(path)
    if kind == "text":
        try:
            return text_items(path.read_text(errors="replace").splitlines())
        except OSError as e:
            raise MediaError(f"{path}: cannot read text file ({e.strerror or e})") from None
    if kind == "image":
        media.load_image(path)
        return [{"image": str(path)}]
    if kind == "video":
        media.load_video(path, num_frames=VIDEO_FRAMES)
        return [{"video": str(path)}]
    pages = min(media.pdf_num_pages(path), max_pages)
    for page in range(pages):  # render each now: a broken page fails here, not at search
        media.load_pdf_page(path, page=page)
    return [{"pdf": str(path), "page": page} for page in range(pages)]


def items_from_path(path, skipped: list | None = None, max_pages: int = MAX_PDF_PAGES) -> list[dict]:
    """The items of one file, or of every image, video, PDF and .txt file below a folder
    (in path order; other files are ignored). A missing path or a bad file raises a
    MediaError; with a `skipped` list, a folder's bad files are left out and their
    messages appended there instead."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file or folder")
    if not path.is_dir():
        return items_from_file(path, max_pages)
    items = []
    for file in sorted(p for p in path.rglob("*") if p.is_file() and media_kind(p)):
        try:
            items.extend(items_from_file(file, max_pages))
        except MediaError as e:
            if skipped is None:
                raise
            skipped.append(str(e))
    return items
