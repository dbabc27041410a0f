"""Pictures for the page: gallery thumbnails and captions, text cards, and the message
that stands in for the routing heatmap. The pictures of items themselves (a video's
frames, a PDF page) and the heatmap come from plume_lite.apps.viz, shared with the
notebooks.

SynthMMEB media are 64 px wide; browsers blur them when they scale them up, so small
pictures are enlarged here with nearest-neighbour sampling, which keeps edges crisp.
"""

from __future__ import annotations

import hashlib
import io
import os
import textwrap
import threading
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from plume_lite import media
from plume_lite.apps.viz import item_picture
from plume_lite.files import item_kind
from plume_lite.io import atomic_write_bytes

THUMB = 192  # gallery thumbnails and previews are at least this wide
CARD = (240, 240)  # text cards
BACKGROUND = (248, 248, 246)
INK = (30, 30, 30)
ACCENT = (70, 90, 200)


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def enlarge(img: Image.Image, side: int = THUMB) -> Image.Image:
    """Scale a small image up by an integer factor (crisp), leave big ones alone."""
    w, h = img.size
    factor = side // max(1, max(w, h))
    if factor >= 2:
        return img.resize((w * factor, h * factor), Image.NEAREST)
    return img


def shrink(img: Image.Image, side: int = 512) -> Image.Image:
    img = img.copy()
    img.thumbnail((side, side))
    return img


def text_card(text: str, title: str = "text", size=CARD) -> Image.Image:
    """A text candidate drawn as a card, so it sits in the gallery beside the pictures."""
    img = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, size[0] - 1, size[1] - 1], outline=(200, 200, 200), width=2)
    draw.rectangle([0, 0, size[0] - 1, 26], fill=ACCENT)
    draw.text((10, 5), title.upper(), fill=(255, 255, 255), font=font(14))
    lines = textwrap.wrap(" ".join(str(text).split()), width=26) or ["(empty)"]
    max_lines = (size[1] - 44) // 20
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [lines[max_lines - 1][:22] + " …"]
    draw.multiline_text((10, 36), "\n".join(lines), fill=INK, font=font(16), spacing=4)
    return img


def badge(img: Image.Image, label: str) -> Image.Image:
    """A small dark tag in the corner (e.g. 'video', 'page 3')."""
    img = img.copy()
    draw = ImageDraw.Draw(img)
    f = font(13)
    box = draw.textbbox((0, 0), label, font=f)
    draw.rectangle([4, 4, box[2] + 12, box[3] + 10], fill=(20, 20, 20))
    draw.text((8, 6), label, fill=(255, 255, 255), font=f)
    return img


def thumbnail(item: dict) -> Image.Image:
    """What a corpus item looks like in the gallery: the image, the middle frame of a
    video, the rendered page of a PDF, or a card with the text."""
    kind = item_kind(item)
    try:  # a sharper page than the notebooks' default, within a thumbnail's budget
        picture = item_picture(item, frames=1, dpi=144, max_pixels=600_000)
    except media.MediaError as e:  # a corpus file that went bad after it was added
        return text_card(str(e), title="unreadable")
    if picture is None:
        return text_card(item.get("text") or item.get("instruction") or "", title="text")
    picture = enlarge(shrink(picture))
    if kind == "video":
        return badge(picture, "▶ video")
    if kind == "pdf":
        return badge(picture, f"page {int(item.get('page', 0)) + 1}")
    return picture


def message_image(text: str, size=(550, 176)) -> Image.Image:
    """Stands in for the heatmap when a mode has no router (direct, explicit, K = 0)."""
    img = Image.new("RGB", size, (255, 255, 255))
    draw, f = ImageDraw.Draw(img), font(16)
    box = draw.multiline_textbbox((0, 0), text, font=f, spacing=6, align="center")
    at = ((size[0] - box[2]) // 2, (size[1] - box[3]) // 2)  # centred
    draw.multiline_text(at, text, fill=INK, font=f, spacing=6, align="center")
    return img


def caption(rank: int, score: float, item: dict, width: int = 60) -> str:
    """'#rank · score · kind · text': the instruction is left out (the same for a whole
    task, it would hide the words that tell candidates apart)."""
    kind = item_kind(item)
    words = item.get("text") or ""
    words = textwrap.shorten(words, width=width, placeholder=" …") if words else ""
    head = f"#{rank} · {score:.3f} · {kind}"
    return f"{head} · {words}" if words else head


class RenderFolder:
    """The pictures of replies (previews, heatmaps, visitors' thumbnails) as PNG files,
    written atomically under the hash of their bytes, for gradio to serve.

    gradio writes a PIL image handed to it without care, truncating the file at a
    name given by the image's bytes: two identical replies at once (the same query
    twice) truncate the file while the first is being sent, and its download fails.
    A path is copied by gradio atomically instead. The folder keeps the `keep` newest
    files; an older one goes once it is `min_age_s` old (gradio has long copied it)."""

    def __init__(self, root, keep: int = 2000, min_age_s: float = 600.0):
        self.root = Path(root).resolve()
        self.keep, self.min_age_s = keep, min_age_s
        self._writes = 0
        self._lock = threading.Lock()

    def save(self, img: Image.Image) -> str:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = buf.getvalue()
        path = self.root / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
        try:
            os.utime(path)  # in use again: kept longer
        except OSError:
            atomic_write_bytes(path, data)
            with self._lock:
                self._writes += 1
                prune = self._writes % 100 == 0
            if prune:
                self.prune()
        return str(path)

    def prune(self) -> None:
        try:
            files = sorted(self.root.glob("*.png"), key=lambda p: p.stat().st_mtime)
        except OSError:  # a file went while listing: next time
            return
        now = time.time()
        for old in files[: max(0, len(files) - self.keep)]:
            try:
                if now - old.stat().st_mtime > self.min_age_s:
                    old.unlink()
            except OSError:
                pass
