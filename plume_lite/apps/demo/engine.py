"""The search behind the page: one PlumeModel, one corpus, and an EmbeddingIndex of the
corpus for every (mode, K) setting asked for so far.

The indexes (plume_lite.evaluation.index) embed through an on-disk EmbeddingCache, so a
row is computed once per (checkpoint, mode, K, item) and read back after a restart. All
model calls take one lock: transformers keeps rope state on the model between calls, so
two encodes must never interleave. Every request runs in a worker thread with a deadline; a request
that misses it gets a clear error instead of holding the page forever.

An item the model refuses (an extreme aspect ratio, a file that went bad) never stops
the service: a batch that fails is embedded again one item at a time, and the items
that fail alone are left out of the corpus (`rejected`, logged as warnings). A
visitor's additions (corpus.SessionCorpus) are embedded when they are added (`vet`:
what fails is refused there, with its reason) and searched beside the shared corpus
for that visitor only, their embeddings kept in the session's memory.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from plume_lite.apps.demo import render
from plume_lite.config import MODES
from plume_lite.errors import PlumeError
from plume_lite.evaluation.index import EmbeddingCache, EmbeddingIndex, checkpoint_fingerprint
from plume_lite.files import item_kind
from plume_lite.io import atomic_write_bytes, one_line
from plume_lite.items import item_digest
from plume_lite.runtime import thread_count, using_threads

log = logging.getLogger(__name__)

MAX_STEPS = 16  # the K slider's default cap (each step is a forward pass; --max-k or
# PLUME_MAX_K sets another); a model whose step table is smaller caps it lower
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
    index: int  # position in the shared corpus (engine.items), or in the session's additions
    item: dict
    source: str = "corpus"  # corpus | session


def describe(item: dict) -> str:
    """An item in a few words, for warnings: its file name (and page) or its text."""
    kind = item_kind(item)
    if kind == "text":
        text = str(item.get("text", ""))
        return f"text {text[:60]!r}" + ("…" if len(text) > 60 else "")
    value = item[kind]
    name = Path(value).name if isinstance(value, (str, Path)) else f"<{type(value).__name__}>"
    return f"{name} page {int(item['page']) + 1}" if kind == "pdf" and "page" in item else name


def _reason(error: Exception) -> str:
    """The error's one line, without the batch position the model's checks put first."""
    text = one_line(error)
    return text.split(": ", 1)[1] if text.startswith("item ") and ": " in text else text


@dataclass
class SearchResult:
    hits: list
    mode: str
    steps: int
    trace: dict
    latency: dict = field(default_factory=dict)  # mode -> {"encode_ms", "search_ms"}
    skipped: list = field(default_factory=list)  # session additions this setting refused


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
        max_steps: int | None = None,
    ):
        self.model = model.eval()
        self.items: list[dict] = []
        self.keys: set[str] = set()
        self.position: dict[str, int] = {}  # item digest -> index in self.items
        self.rejected: dict[str, str] = {}  # digest of a corpus item the model refused -> "item: why"
        self.cache_dir = Path(cache_dir).resolve()
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
        cap = int(max_steps) if max_steps else MAX_STEPS
        self.max_steps = min(cap, int(model.config.step_table_size))  # encode's own bound
        self.default_steps = min(self.default_steps, self.max_steps)
        self.num_experts = int(model.config.num_experts)
        self._lock = threading.Lock()  # model calls, one at a time
        self._guards = threading.Lock()  # the dict of builders below
        self._builders: dict[tuple, threading.Lock] = {}
        self.indexes: dict[tuple, EmbeddingIndex] = {}  # setting -> rows embedded so far
        self._done: dict[tuple, int] = {}  # setting -> corpus items handled (embedded or rejected)
        self.add_items(corpus_items)

    @classmethod
    def from_checkpoint(
        cls, checkpoint, corpus_items, cache_dir, device=None, dtype=None, **kwargs
    ) -> "DemoEngine":
        """The engine of a checkpoint folder, its model on `device` (None/"auto": CUDA when
        present, else the CPU), in `dtype` (None/"auto": bfloat16 on CUDA, a 2B checkpoint's
        evaluation dtype, as saved on the CPU)."""
        from plume_lite import PlumeModel
        from plume_lite.runtime import resolve_device, resolve_dtype

        device = resolve_device(device)
        model = PlumeModel.from_pretrained(checkpoint, device=device, dtype=resolve_dtype(dtype, device))
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
        """Append the items not in the corpus yet (one set look-up each); returns those
        appended. Their embeddings are computed on the next search in each setting."""
        new = []
        for item in items:
            key = item_digest(item)
            if key not in self.keys:
                self.keys.add(key)
                self.position[key] = len(self.items) + len(new)
                new.append(item)
        self.items.extend(new)
        return new

    @property
    def corpus_size(self) -> int:
        """Items of the shared corpus that can be searched (the refused ones left out)."""
        return len(self.items) - len(self.rejected)

    def _index(self, key) -> EmbeddingIndex:
        with self._guards:
            if key not in self.indexes:
                self.indexes[key] = EmbeddingIndex(
                    self.model,
                    (),
                    key[0],
                    key[1],
                    self.batch_size,
                    self.cache_dir / "embeddings",
                    self.checkpoint_id,
                )
            return self.indexes[key]

    def _embed_each(self, embed, batch) -> list[tuple[dict, str]]:
        """embed(batch); if that fails, embed([item]) for each item of it. Returns the
        (item, reason) of the items that fail alone. When every item fails, and not one
        with a PlumeError (a refusal of the input), the model is at fault, not the
        items: the first error is raised."""
        try:
            embed(batch)
            return []
        except Busy:
            raise
        except Exception as e:  # one bad item fails its whole batch
            first = e
        failed = [(batch[0], first)]
        if len(batch) > 1:
            failed = []
            for item in batch:
                try:
                    embed([item])
                except Busy:
                    raise
                except Exception as e:
                    failed.append((item, e))
            if len(failed) == len(batch) and not any(isinstance(e, PlumeError) for _, e in failed):
                raise first
        for item, e in failed:
            if not isinstance(e, PlumeError):
                log.warning("embedding %s failed: %s", describe(item), e, exc_info=e)
        return [(item, _reason(e)) for item, e in failed]

    def embed_corpus(self, mode: str, steps=None, progress=None, deadline=None) -> EmbeddingIndex:
        """The index of the whole corpus in this setting, adding the rows it lacks one
        batch at a time. The model lock is taken per batch, so queries are answered
        while a big corpus is embedded in the background, and an interrupted build
        resumes where it stopped; one builder per setting at a time. An item the model
        refuses is left out (`rejected`, with a warning), the rest of the corpus serves.
        `progress(done, total)` is called between batches."""
        key = self.setting(mode, steps)
        deadline = deadline or time.monotonic() + 3600
        with self._guards:
            build = self._builders.setdefault(key, threading.Lock())
        if not build.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Busy(f"the corpus is still being embedded in {mode} mode; try again shortly")
        try:
            index = self._index(key)
            items = self.items[:]
            for start in range(self._done.get(key, 0), len(items), self.batch_size):
                if progress:
                    progress(start, len(items))
                batch = [
                    it
                    for it in items[start : start + self.batch_size]
                    if item_digest(it) not in self.rejected
                ]
                with self._model_lock(deadline):
                    failed = self._embed_each(index.add, batch) if batch else []
                for item, reason in failed:
                    self.rejected[item_digest(item)] = f"{describe(item)}: {reason}"
                    log.warning("corpus item skipped, the model refuses it: %s: %s", describe(item), reason)
                self._done[key] = start + len(items[start : start + self.batch_size])
            if progress:
                progress(len(items), len(items))
            return index
        finally:
            build.release()

    def _session_cache(self, caches: dict, key) -> EmbeddingCache:
        if key not in caches:  # in memory only: a visitor's rows never reach the shared cache
            caches[key] = EmbeddingCache(self.model, key[0], key[1], self.batch_size, None, "session")
        return caches[key]

    def embed_extra(self, items, caches: dict, mode="latent", steps=None, deadline=None):
        """A session's own items in this setting, through its in-memory `caches`:
        (the items embedded, their [n, D] rows or None, [(item, reason)] refused)."""
        key = self.setting(mode, steps)
        deadline = deadline or time.monotonic() + 3600
        cache = self._session_cache(caches, key)
        todo = [it for it in items if item_digest(it) not in cache.memory]
        refused = []
        for start in range(0, len(todo), self.batch_size):
            with self._model_lock(deadline):
                refused += self._embed_each(cache.encode, todo[start : start + self.batch_size])
        bad = {item_digest(it) for it, _ in refused}
        good = [it for it in items if item_digest(it) not in bad]
        return good, (cache.encode(good) if good else None), refused

    def vet(self, items, caches: dict, deadline=None):
        """Embed a visitor's new items before they are added (in the default setting,
        the one a search starts in): (the items that embed, [(item, reason)] refused)."""
        good, _, refused = self.embed_extra(items, caches, "latent", None, deadline)
        return good, refused

    def ready_settings(self) -> dict:
        """setting -> (rows embedded, corpus size), for the status line."""
        return {key: (self._done.get(key, 0), len(self.items)) for key in list(self.indexes)}

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
        self,
        item: dict,
        mode: str = "latent",
        steps=None,
        k: int = 8,
        time_all: bool = False,
        extra=None,
    ) -> SearchResult:
        """Rank the corpus for one query item (blocking, with the engine's deadline);
        `extra`: a visitor's SessionCorpus, ranked with the corpus for this query only."""
        deadline = time.monotonic() + self.timeout_s
        return self.bounded(
            self._search, item, mode, steps, k, time_all, deadline, extra, timeout_s=self.timeout_s
        )

    def _search(self, item, mode, steps, k, time_all, deadline, extra=None) -> SearchResult:
        key = self.setting(mode, steps)
        k = max(1, min(int(k), MAX_RESULTS))
        index = self.embed_corpus(mode, key[1], deadline=deadline)
        own, own_rows, refused = [], None, []
        if extra is not None and extra.items:
            own, own_rows, refused = self.embed_extra(extra.items, extra.caches, mode, key[1], deadline)
        with self._model_lock(deadline):
            t0 = time.perf_counter()
            q, traces = self.model.encode([item], mode=mode, steps=key[1], return_trace=True)
            t1 = time.perf_counter()
            values, indices = index.search(q, k)
            ranked = [(float(v), "corpus", int(i)) for v, i in zip(values[0].tolist(), indices[0].tolist())]
            if own_rows is not None:
                scores = (q.to("cpu", own_rows.dtype) @ own_rows.T)[0].tolist()
                ranked += [(float(v), "session", j) for j, v in enumerate(scores)]
                ranked = sorted(ranked, key=lambda r: -r[0])[:k]  # stable: the corpus first on ties
            t2 = time.perf_counter()
            latency = {mode: {"encode_ms": 1e3 * (t1 - t0), "search_ms": 1e3 * (t2 - t1)}}
            if time_all:  # the same query through the other modes: encode time only
                for other in MODES:
                    if other != mode:
                        s = time.perf_counter()
                        self.model.encode([item], mode=other, steps=steps if other == "latent" else None)
                        latency[other] = {"encode_ms": 1e3 * (time.perf_counter() - s)}
        hits = []
        for r, (v, source, i) in enumerate(ranked):
            if source == "corpus":
                hit = index.items[i]
                hits.append(Hit(r + 1, v, self.position.get(item_digest(hit), i), hit))
            else:
                hits.append(Hit(r + 1, v, extra.items.index(own[i]), own[i], "session"))
        skipped = [f"{describe(it)}: {why}" for it, why in refused]
        return SearchResult(hits, mode, key[1] or 0, traces[0], latency, skipped)

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
