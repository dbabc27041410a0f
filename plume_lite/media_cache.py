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
"""

from __future__ import annotations

import os
import stat
import threading

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

    def get_or_load(self, key, load):
        """`load()`'s value for `key`, decoded once if it fitted in the cache. A video's
        frame list is returned as a new list, so a caller's list edits stay its own."""
        budget = budget_bytes()
        if key is None or budget == 0:
            return load()
        with self._lock:
            if key in self._entries:
                return _fresh(self._entries[key])
        value = load()  # outside the lock: decoding may take a while
        size = _nbytes(value)
        with self._lock:
            if self._bytes + size <= budget and key not in self._entries:
                self._entries[key] = value
                self._bytes += size
        return _fresh(value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes


def _fresh(value):
    return list(value) if isinstance(value, list) else value


DECODED = MediaCache()
