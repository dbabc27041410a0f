"""Drawing primitives for SynthMMEB: flat coloured shapes, bar charts, motion clips and
document pages, sized for a tiny model (64x64 images, 8-frame clips, 64x80 pages), plus
deterministic writers for PNG, mp4 (PyAV) and PDF (Pillow)."""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image, ImageDraw

IMG = 64  # image and video side
PAGE = (64, 80)  # document page (w, h) in pixels = points at 72 dpi
FPS = 8
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 95, 235),
    "yellow": (240, 215, 30),
    "purple": (150, 60, 205),
    "orange": (245, 135, 20),
    "cyan": (40, 205, 215),
    "pink": (245, 125, 190),
}
COLOR_NAMES = list(COLORS)
SHAPES = ["circle", "square", "triangle", "diamond"]
OUTLINE = {
    "circle": "round",
    "square": "made of four equal sides",
    "triangle": "made of three corners",
    "diamond": "a square turned on its tip",
}
NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh"]
MOTIONS = [
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "growing",
    "shrinking",
    "blinking",
    "standing still",
]
_FIXED_DATE = time.gmtime(946684800)  # PDF dates pinned so the bytes are reproducible


def background(rng, size=(IMG, IMG)) -> Image.Image:
    g = rng.randint(25, 60)  # nuisance: background shade varies, colours never do
    return Image.new("RGB", size, (g, g, g))


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, color) -> None:
    fill = COLORS[color] if isinstance(color, str) else color
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def scene(rng, objects, size=(IMG, IMG)) -> Image.Image:
    """objects: iterable of (shape, colour, cx, cy, r)."""
    img = background(rng, size)
    d = ImageDraw.Draw(img)
    for shape, color, cx, cy, r in objects:
        draw_shape(d, shape, cx, cy, r, color)
    return img


def draw_bars(d: ImageDraw.ImageDraw, heights, line, color, box, dash=3, line_color=(255, 255, 255)) -> None:
    """Bars (heights in px) standing on the bottom edge of box=(x0, y0, x1, y1), and a
    dashed horizontal threshold line `line` px above that edge."""
    x0, y0, x1, y1 = box
    n = len(heights)
    step = (x1 - x0) / n
    for i, h in enumerate(heights):
        left = x0 + i * step + 1
        d.rectangle([left, y1 - h, left + step - 3, y1], fill=COLORS[color])
    d.line([x0, y1, x1, y1], fill=(200, 200, 200))
    y = y1 - line
    for x in range(int(x0), int(x1), 2 * dash):  # dashed threshold line
        d.line([x, y, min(x + dash - 1, x1), y], fill=line_color)


# ----------------------------------------------------------------------------- motion


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def listing(items: list[str]) -> str:
    """'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def motion_frames(rng, shape, color, motion, n=FPS, bg=None) -> list[Image.Image]:
    """One object performing `motion` over n frames (64x64)."""
    g = bg if bg is not None else rng.randint(25, 60)
    cx, cy, r = rng.randint(26, 38), rng.randint(26, 38), rng.randint(8, 11)
    span = rng.randint(26, 34)
    frames = []
    for t in range(n):
        a = t / (n - 1)
        x, y, rr, show = cx, cy, r, True
        if motion == "moving left":
            x = 32 + span / 2 - a * span
        elif motion == "moving right":
            x = 32 - span / 2 + a * span
        elif motion == "moving up":
            y = 32 + span / 2 - a * span
        elif motion == "moving down":
            y = 32 - span / 2 + a * span
        elif motion == "growing":
            rr = 4 + a * 14
        elif motion == "shrinking":
            rr = 18 - a * 14
        elif motion == "blinking":
            show = t % 2 == 0
        img = Image.new("RGB", (IMG, IMG), (g, g, g))
        if show:
            draw_shape(ImageDraw.Draw(img), shape, x, y, rr, color)
        frames.append(img)
    return frames


def motion_place(motion: str) -> tuple[str, str]:
    """Where the object starts and ends, in words, for rationales."""
    return {
        "moving left": ("on the right", "on the left"),
        "moving right": ("on the left", "on the right"),
        "moving up": ("near the bottom", "near the top"),
        "moving down": ("near the top", "near the bottom"),
        "growing": ("small", "large"),
        "shrinking": ("large", "small"),
    }.get(motion, ("in the middle", "in the middle"))


# ----------------------------------------------------------------------------- writers


def save_png(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "PNG", optimize=False)


def _video_codec():
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def save_mp4(frames: list[Image.Image], path: Path, fps: int = FPS) -> None:
    """Frames -> a real h264 mp4 (mpeg4 if x264 is missing); single-threaded so the
    bytes are reproducible."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = _video_codec()
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "12", "threads": "1"}
        else:
            stream.options = {"qscale": "2"}
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.asarray(img.convert("RGB")), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def save_pdf(pages: list[Image.Image], path: Path) -> None:
    """Pages -> one PDF, 1 px = 1 pt. Palette mode keeps the flat colours lossless."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pal = [p.convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for p in pages]
    pal[0].save(
        path,
        "PDF",
        save_all=True,
        append_images=pal[1:],
        resolution=72,
        title="SynthMMEB document",
        creationDate=_FIXED_DATE,
        modDate=_FIXED_DATE,
    )
