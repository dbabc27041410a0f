"""The search behind the page: one PlumeModel, one corpus, and an EmbeddingIndex of the
corpus for every (mode, K) setting asked for so far.

The indexes (plume_lite.evaluation.index) embed through an on-disk EmbeddingCache, so a
row is computed once per (checkpoint, mode, K, item) and read back after a restart. All
model calls take one lock: transformers keeps rope state on the model between calls, so
two encodes must never interleave. Every request runs in a worker thread with a deadline; a request
that misses it gets a clear error instead of holding the page forever.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from plume_lite.apps.demo import render
from plume_lite.config import MODES
from plume_lite.evaluation.index import EmbeddingIndex, checkpoint_fingerprint
from plume_lite.io import atomic_write_bytes
from plume_lite.items import item_digest
from plume_lite.runtime import thread_count, using_threads

MAX_STEPS = 16  # the K slider's cap (each step is a forward pass); a model whose
# step table is smaller caps it lower (DemoEngine.max_steps)
MAX_RESULTS = 24
SMALL_MODEL = 50_000_000  # parameters; below this, model calls use one CPU thread


class Busy(RuntimeError):
    """The model stayed busy (or the work ran) past the request's deadline."""


_POOL = cf.ThreadPoolExecutor(max_workers=8, thread_name_prefix="plume-demo")


def run_bounded(fn, *args, timeout_s: float = 60.0):
    """fn(*args) in a worker thread; Busy if it is not done by the deadline. (A thread
    cannot be killed: an overrun finishes in the background, still bounded by the media
    caps and the fixed token budget, while the request has already been answered.)"""
    # the caller's context goes along: gradio finds its progress bar through it
    future = _POOL.submit(contextvars.copy_context().run, fn, *args)
    try:
        return future.result(timeout=timeout_s)
    except cf.TimeoutError:
        raise Busy(
            f"the request did not finish within {timeout_s:.0f} s; the server is busy "
            f"or the input is too heavy; try again, or use direct mode"
        ) from None


@dataclass
class Hit:
    rank: int
    score: float
    index: int
    item: dict


@dataclass
class SearchResult:
    hits: list
    mode: str
    steps: int
    trace: dict
    latency: dict = field(default_factory=dict)  # mode -> {"encode_ms", "search_ms"}


class DemoEngine:
    def __init__(
        self,
        model,
        corpus_items,
        cache_dir,
        checkpoint_id: str | None = None,
        batch_size: int = 16,
        timeout_s: float = 60.0,
        threads: int | None = None,
    ):
        self.model = model.eval()
        self.items: list[dict] = []
        self.keys: set[str] = set()
        self.cache_dir = Path(cache_dir)
        self.checkpoint_id = checkpoint_id
        self.checkpoint_path: str | None = None
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        # A tiny model's ops are too small to split across CPU threads: a second OpenMP
        # thread only adds synchronisation, and on a busy 2-core machine it waits for a
        # core (a query measured 5-20x slower with 2 threads than with 1).
        small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL
        self.threads = threads or (thread_count() if small and model.device.type == "cpu" else None)
        self.default_steps = int(model.config.latent_steps)
        self.max_steps = min(MAX_STEPS, int(model.config.step_table_size))  # encode's own bound
        self.num_experts = int(model.config.num_experts)
        self._lock = threading.Lock()  # model calls, one at a time
        self._guards = threading.Lock()  # the dict of builders below
        self._builders: dict[tuple, threading.Lock] = {}
        self.indexes: dict[tuple, EmbeddingIndex] = {}  # setting -> rows embedded so far
        self.add_items(corpus_items)

    @classmethod
    def from_checkpoint(cls, checkpoint, corpus_items, cache_dir, **kwargs) -> "DemoEngine":
        from plume_lite import PlumeModel

        model = PlumeModel.from_pretrained(checkpoint)
        engine = cls(model, corpus_items, cache_dir, checkpoint_fingerprint(checkpoint), **kwargs)
        engine.checkpoint_path = str(checkpoint)
        return engine

    # ------------------------------------------------------------------ deadlines
    def bounded(self, fn, *args, timeout_s: float | None = None):
        return run_bounded(fn, *args, timeout_s=self.timeout_s if timeout_s is None else timeout_s)

    @contextlib.contextmanager
    def _model_lock(self, deadline: float):
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Busy("the model stayed busy with other queries; try again in a moment")
        try:
            with using_threads(self.threads):  # the rest of the process keeps its setting
                yield
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ corpus
    def setting(self, mode: str, steps) -> tuple:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != "latent":
            return (mode, None)  # K only shapes the latent rollout
        steps = self.default_steps if steps is None else int(steps)
        if not 0 <= steps <= self.max_steps:
            raise ValueError(f"K must be between 0 and {self.max_steps}, got {steps}")
        return (mode, steps)

    def add_items(self, items) -> list[dict]:
        """Append the items not in the corpus yet; returns those appended. Their
        embeddings are computed on the next search in each setting."""
        new = []
        for item in items:
            key = item_digest(item)
            if key not in self.keys:
                self.keys.add(key)
                new.append(item)
        self.items.extend(new)
        return new

    def extend(self, items, progress=None) -> list[dict]:
        """add_items, then embed the new rows in every setting already in use, so the
        next search (and the next start, through the disk cache) finds them ready."""
        new = self.add_items(items)
        for mode, steps in list(self.indexes):
            self.embed_corpus(mode, steps, progress)
        return new

    def embed_corpus(self, mode: str, steps=None, progress=None, deadline=None) -> EmbeddingIndex:
        """The index of the whole corpus in this setting, adding the rows it lacks one
        batch at a time. The model lock is taken per batch, so queries are answered
        while a big corpus is embedded in the background, and an interrupted build
        resumes where it stopped; one builder per setting at a time.
        `progress(done, total)` is called between batches."""
        key = self.setting(mode, steps)
        deadline = deadline or time.monotonic() + 3600
        with self._guards:
            build = self._builders.setdefault(key, threading.Lock())
        if not build.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Busy(f"the corpus is still being embedded in {mode} mode; try again shortly")
        try:
            index = self.indexes.get(key)
            if index is None:
                index = EmbeddingIndex(
                    self.model,
                    (),
                    key[0],
                    key[1],
                    self.batch_size,
                    self.cache_dir / "embeddings",
                    self.checkpoint_id,
                )
                self.indexes[key] = index
            items = self.items[:]
            for start in range(len(index), len(items), self.batch_size):
                if progress:
                    progress(start, len(items))
                with self._model_lock(deadline):
                    index.add(items[start : start + self.batch_size])
            if progress:
                progress(len(items), len(items))
            return index
        finally:
            build.release()

    def ready_settings(self) -> dict:
        """setting -> (rows embedded, corpus size), for the status line."""
        return {key: (len(index), len(self.items)) for key, index in list(self.indexes.items())}

    def warmup(self, modes) -> None:
        """Throw-away image and video queries in each mode: the first call of each code
        path pays one-off setup costs that should not show up as a user's latency."""
        from PIL import Image

        frame = Image.new("RGB", (64, 64), (90, 90, 90))
        items = [{"image": frame, "text": "warm-up"}, {"video": [frame] * 8}]
        with self._model_lock(time.monotonic() + 600):
            for mode in modes:
                for item in items:
                    self.model.encode([item], mode=mode, steps=self.default_steps)

    # ------------------------------------------------------------------ search
    def search(
        self, item: dict, mode: str = "latent", steps=None, k: int = 8, time_all: bool = False
    ) -> SearchResult:
        """Rank the corpus for one query item (blocking, with the engine's deadline)."""
        deadline = time.monotonic() + self.timeout_s
        return self.bounded(self._search, item, mode, steps, k, time_all, deadline, timeout_s=self.timeout_s)

    def _search(self, item, mode, steps, k, time_all, deadline) -> SearchResult:
        key = self.setting(mode, steps)
        k = max(1, min(int(k), MAX_RESULTS))
        index = self.embed_corpus(mode, key[1], deadline=deadline)
        with self._model_lock(deadline):
            t0 = time.perf_counter()
            q, traces = self.model.encode([item], mode=mode, steps=key[1], return_trace=True)
            t1 = time.perf_counter()
            values, indices = index.search(q, k)
            t2 = time.perf_counter()
            latency = {mode: {"encode_ms": 1e3 * (t1 - t0), "search_ms": 1e3 * (t2 - t1)}}
            if time_all:  # the same query through the other modes: encode time only
                for other in MODES:
                    if other != mode:
                        s = time.perf_counter()
                        self.model.encode([item], mode=other, steps=steps if other == "latent" else None)
                        latency[other] = {"encode_ms": 1e3 * (time.perf_counter() - s)}
        hits = [
            Hit(r + 1, float(v), int(i), index.items[int(i)])
            for r, (v, i) in enumerate(zip(values[0].tolist(), indices[0].tolist()))
        ]
        return SearchResult(hits, mode, key[1] or 0, traces[0], latency)

    # ------------------------------------------------------------------ pictures
    def thumbnail_path(self, item: dict) -> str:
        """A PNG of the item for the gallery, drawn once and kept under cache_dir/thumbs."""
        path = self.cache_dir / "thumbs" / f"{item_digest(item)[:24]}.png"
        if not path.exists():
            import io

            buf = io.BytesIO()
            render.thumbnail(item).save(buf, format="PNG")
            atomic_write_bytes(path, buf.getvalue())
        return str(path)
