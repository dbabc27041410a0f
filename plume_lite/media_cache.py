"""A process-wide, size-bounded cache of decoded visuals.

Training goes over the same PNG, MP4 and PDF files every epoch, and an evaluation
encodes the same candidates for every readout; on the tiny profile decoding them again
was 20-30 % of a training step (cProfile of `plume-lite train`, benchmarks/README.md).

Only regular files are cached, keyed by path, size and mtime (a rewritten file is decoded
again) and by the media settings; a file that fails to decode is never cached, so it
fails the same way every time. Values are decoded PIL images shared between callers:
nothing downstream modifies them in place (the processor copies into arrays).
`PLUME_MEDIA_CACHE_MB` bounds it (default 512; 0 turns it off). Once full it admits
nothing more and evicts nothing: training epochs and evaluations scan the same files in
a cycle, where LRU eviction would drop every entry just before its reuse, while a full
cache keeps serving the share it holds.

A second, optional layer on disk shares decodes between processes: `reproduce` trains
and reads 21 runs in fresh worker processes over the same files, and decoding them again
in each was a third of a direct training step (MP4 frames above all). With a folder set
(`DECODED.use_disk(folder)`, `with DECODED.using_disk(folder)` or PLUME_MEDIA_CACHE_DIR),
an RGB decode is kept there as raw uint8 pixels (`.npy`, written atomically) under a
hash of its key; reading it back gives the same pixels as the decode. A file there that
does not read back is decoded again and replaced. The folder is not bounded: give it a
run's own folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import threading
from pathlib import Path

from plume_lite.errors import ConfigError

DEFAULT_MB = 512


def budget_bytes() -> int:
    raw = os.environ.get("PLUME_MEDIA_CACHE_MB", "")
    if not raw.strip():
        return DEFAULT_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:  # also catches nan
        raise ConfigError(f"PLUME_MEDIA_CACHE_MB must be a number of megabytes >= 0, got {raw!r}")
    return int(mb * (1 << 20))


def file_key(path, *settings):
    """The cache key of a regular file under `settings`, or None (not cacheable)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):  # a frame folder's mtime misses edits to its frames
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, *settings)


def _nbytes(value) -> int:
    frames = value if isinstance(value, list) else [value]
    return sum(f.width * f.height * len(f.getbands()) for f in frames)


class MediaCache:
    def __init__(self):
        self._entries: dict = {}
        self._bytes = 0
        self._lock = threading.Lock()  # the demo encodes from several threads
        self._disk: Path | None = None

    def use_disk(self, folder) -> None:
        """Share decodes through `folder` (None: the memory layer only, unless
        PLUME_MEDIA_CACHE_DIR names one)."""
        self._disk = None if folder is None else Path(folder)

    @contextlib.contextmanager
    def using_disk(self, folder):
        """`use_disk(folder)` for the length of a with-block."""
        previous = self._disk
        self.use_disk(folder)
        try:
            yield self
        finally:
            self._disk = previous

    @property
    def disk(self) -> Path | None:
        if self._disk is not None:
            return self._disk
        env = os.environ.get("PLUME_MEDIA_CACHE_DIR", "").strip()
        return Path(env) if env else None

    def get_or_load(self, key, load):
        """`load()`'s value for `key`, decoded once if it fitted in the cache. A video's
        frame list is returned as a new list, so a caller's list edits stay its own."""
        budget = budget_bytes()
        if key is None or budget == 0:
            return load()
        with self._lock:
            if key in self._entries:
                return _fresh(self._entries[key])
        value = self._load_via_disk(key, load)  # outside the lock: decoding may take a while
        size = _nbytes(value)
        with self._lock:
            if self._bytes + size <= budget and key not in self._entries:
                self._entries[key] = value
                self._bytes += size
        return _fresh(value)

    def _load_via_disk(self, key, load):
        folder = self.disk
        if folder is None:
            return load()
        path = folder / (hashlib.sha256(repr(key).encode()).hexdigest()[:32] + ".npy")
        value = _read_pixels(path)
        if value is None:
            value = load()
            _write_pixels(path, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes


def _read_pixels(path: Path):
    """The image (H, W, 3) or frame list (F, H, W, 3) kept at `path`; None if absent or
    unreadable (then it is decoded and written again)."""
    import numpy as np
    from PIL import Image

    try:
        pixels = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4) or pixels.shape[-1] != 3:
        return None
    if pixels.ndim == 3:
        return Image.fromarray(pixels, "RGB")
    return [Image.fromarray(frame, "RGB") for frame in pixels]


def _write_pixels(path: Path, value) -> None:
    """Keep an RGB decode at `path` (anything else, e.g. frames of mixed sizes, is not kept)."""
    import numpy as np

    from plume_lite.io import atomic_write_bytes

    frames = value if isinstance(value, list) else [value]
    if not frames or any(f.mode != "RGB" or f.size != frames[0].size for f in frames):
        return
    pixels = np.stack([np.asarray(f) for f in frames]) if isinstance(value, list) else np.asarray(value)
    buffer = io.BytesIO()
    np.save(buffer, pixels, allow_pickle=False)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:  # a full or read-only disk costs a decode, never a result
        pass


def _fresh(value):
    return list(value) if isinstance(value, list) else value


DECODED = MediaCache()
