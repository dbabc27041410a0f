"""Getting the demo ready: data, checkpoint, corpus and corpus embeddings, in a
background thread, so the page is up at once and shows what is happening.

On a fresh machine the default path generates SynthMMEB tiny and trains the default
checkpoint (plume_lite.apps.defaults, minutes on a CPU); later starts find both in the
cache folder, and the corpus embeddings in the demo's embedding cache.

A corpus file that cannot be read, or that the model refuses (an extreme aspect ratio),
is skipped with a warning and the rest serves; so is an addition stored by an earlier
version of the demo (when additions were shared). Visitors' additions now live in their
sessions (`new_session`), under `sessions/` of the cache folder, and no start reads them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

from plume_lite.apps.demo.corpus import (
    SESSION_TTL_S,
    DiskQuota,
    SessionCorpus,
    UserCorpus,
    load_corpus,
    task_corpus,
)
from plume_lite.apps.demo.engine import DemoEngine
from plume_lite.apps.demo.render import RenderFolder
from plume_lite.config import MODES
from plume_lite.runtime import DEFAULT_THREADS, using_threads

log = logging.getLogger(__name__)


class NotReady(RuntimeError):
    pass


def default_cache_dir() -> Path:
    from plume_lite.runtime import cache_root

    return cache_root() / "demo"


class Startup:
    """checkpoint: a PlumeModel folder, or None for the default trained checkpoint.
    corpus: a list of items, a folder (data folder with tasks.json, or any folder of
    images/videos/PDFs/.txt), or None for the SynthMMEB test corpus.
    warm: the modes whose corpus embeddings are computed before the page says ready.
    prefetch: the modes embedded after that, in the background, while the page serves.
    max_steps: the K limit (None: engine.MAX_STEPS), capped by the checkpoint's step table."""

    def __init__(
        self,
        checkpoint=None,
        corpus=None,
        cache_dir=None,
        warm=("latent",),
        prefetch=(),
        timeout_s: float = 60.0,
        batch_size: int = 16,
        log=True,
        max_steps: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ):
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.device, self.dtype = device, dtype
        self.corpus = corpus
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.warm = [m for m in warm if m in MODES]
        self.prefetch = [m for m in prefetch if m in MODES and m not in self.warm]
        self.background = ""  # what the prefetch is doing, if anything
        self.background_done = threading.Event()
        self.timeout_s, self.batch_size, self.log = timeout_s, batch_size, log
        self.max_steps = max_steps
        self.status = "Starting…"
        self.error: str | None = None
        self.engine: DemoEngine | None = None
        self.user = UserCorpus(self.cache_dir / "user_corpus")  # earlier versions' additions
        # this server's sessions: a folder of its own (another server may share the cache)
        self.sessions_dir = self.cache_dir / "sessions" / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.quota = DiskQuota()
        self.renders = RenderFolder(self.cache_dir / "renders")  # the pictures of replies
        self.skipped: list[str] = []
        self.timings: dict = {}
        self.ready = threading.Event()
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ status
    def report(self, text: str) -> None:
        self.status = text
        if self.log:
            log.info("%6.1fs  %s", time.monotonic() - self._t0, text)

    def require(self) -> DemoEngine:
        if self.error:
            raise NotReady(f"the demo failed to start: {self.error}")
        if not self.ready.is_set():
            raise NotReady(f"the demo is still starting: {self.status}")
        return self.engine

    def new_session(self) -> SessionCorpus:
        """An empty SessionCorpus for one visitor, in a folder of its own."""
        return SessionCorpus(self.sessions_dir / secrets.token_hex(8), self.quota)

    def tiny_model(self) -> bool:
        """Whether the checkpoint is of the tiny backbone (the default one is), known
        before it is loaded: the page then says what such a model can recognise."""
        if self.checkpoint is None:
            return True
        try:
            config = json.loads((self.checkpoint / "plume_config.json").read_text())
        except (OSError, ValueError):
            return False  # a hub snapshot in the authors' layout, or not there at all
        backbone = config.get("backbone") if isinstance(config, dict) else None
        return isinstance(backbone, str) and (
            backbone in ("tiny", "tiny-pretrained") or backbone.startswith("tiny:")
        )

    def skipped_count(self) -> int:
        """Corpus files or items left out: unreadable, or refused by the model."""
        return len(self.skipped) + (len(self.engine.rejected) if self.engine else 0)

    def _clean_sessions(self) -> None:
        """Remove the session folders of servers that stopped long ago (a live server
        touches its folder whenever a visitor adds a file)."""
        root = self.cache_dir / "sessions"
        for folder in root.iterdir() if root.is_dir() else []:
            try:
                if time.time() - folder.stat().st_mtime > 2 * SESSION_TTL_S:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    def wait(self, timeout: float | None = None) -> DemoEngine:
        self.ready.wait(timeout)
        return self.require()

    # ------------------------------------------------------------------ building
    def start(self) -> "Startup":
        threading.Thread(target=self.run, name="plume-demo-startup", daemon=True).start()
        return self

    def run(self) -> None:
        try:
            self._build()
        except Exception as e:  # shown in the page; the server keeps answering
            self.error = f"{type(e).__name__}: {e}"
            self.report(f"Start-up failed: {self.error}")
            log.exception("demo start-up failed")
        finally:
            self.ready.set()
        self._prefetch()

    def _prefetch(self) -> None:
        """The other modes' corpus embeddings, batch by batch, between user queries."""
        try:
            for mode in self.prefetch if self.engine and not self.error else []:

                def progress(done, total, mode=mode):
                    self.background = f"embedding the corpus for {mode} mode: {done}/{total}"

                self._timed(f"prefetch_{mode}_s", self.engine.embed_corpus, mode, None, progress)
                self.engine.warmup([mode])
                self.report(f"{mode} mode ready ({self.timings[f'prefetch_{mode}_s']} s)")
        except Exception as e:  # the mode is then embedded on its first search instead
            self.report(f"background embedding stopped: {type(e).__name__}: {e}")
        finally:
            self.background = ""
            self.background_done.set()

    def _timed(self, name, fn, *args, **kwargs):
        t = time.monotonic()
        out = fn(*args, **kwargs)
        self.timings[name] = round(time.monotonic() - t, 2)
        return out

    def _build(self) -> None:
        data = None
        if self.corpus is None:
            from plume_lite.data.synth import default_data

            self.report("Preparing the SynthMMEB tiny data (generated on the first start only)…")
            data = self._timed("data_s", default_data)
        checkpoint = self.checkpoint
        if checkpoint is None:
            checkpoint = self._timed("checkpoint_s", self._default_checkpoint, data)
        if self.corpus is None:
            items = task_corpus(data)
        elif isinstance(self.corpus, (str, Path)):
            self.report(f"Reading the corpus folder {self.corpus}…")
            items, self.skipped = load_corpus(self.corpus)
            for line in self.skipped:
                self.report(f"skipped an unreadable corpus file: {line}")
        else:
            items = list(self.corpus)
        stored, skipped = self.user.items()
        for line in skipped:
            self.report(f"skipped a stored addition: {line}")
        self.skipped += skipped
        items = items + stored
        self._clean_sessions()
        self.report(f"Loading the model from {checkpoint}…")
        self.engine = self._timed(
            "model_s",
            DemoEngine.from_checkpoint,
            checkpoint,
            items,
            self.cache_dir,
            timeout_s=self.timeout_s,
            batch_size=self.batch_size,
            max_steps=self.max_steps,
            device=self.device,
            dtype=self.dtype,
        )
        for mode in self.warm:

            def progress(done, total, mode=mode):
                self.report(f"Embedding the corpus ({mode} mode): {done}/{total} items…")

            self._timed(f"embed_{mode}_s", self.engine.embed_corpus, mode, None, progress)
        self._timed("warmup_s", self.engine.warmup, self.warm)
        for why in self.engine.rejected.values():
            self.report(f"skipped a corpus item the model refuses: {why}")
        self.timings["ready_s"] = round(time.monotonic() - self._t0, 2)
        self.report(
            f"Ready in {self.timings['ready_s']:.1f} s: {self.engine.corpus_size} corpus "
            f"items ({self.skipped_count()} skipped), checkpoint {checkpoint}. "
            f"Timings: {json.dumps(self.timings)}"
        )

    def _default_checkpoint(self, data):
        """default_checkpoint(), reporting training progress read from its step log."""
        from plume_lite.apps.defaults import default_checkpoint
        from plume_lite.runtime import cache_root

        self.report(
            "Preparing the default checkpoint (trained on the first start only, a few minutes on a CPU)…"
        )
        done = threading.Event()
        watcher = threading.Thread(
            target=self._watch_training, args=(cache_root() / "checkpoints", done), daemon=True
        )
        watcher.start()
        try:
            with using_threads(DEFAULT_THREADS):  # a tiny model: see plume_lite.runtime
                return default_checkpoint("latent", data=data)
        finally:
            done.set()

    def _watch_training(self, root: Path, done: threading.Event) -> None:
        start = time.time()
        while not done.wait(1.0):
            logs = [p for p in root.glob("*/log.jsonl") if p.stat().st_mtime >= start - 5]
            if not logs:
                continue
            log = max(logs, key=lambda p: p.stat().st_mtime)
            try:
                last = log.read_text().strip().splitlines()[-1]
                step = json.loads(last).get("step")
                total = json.loads((log.parent / "train_config.json").read_text()).get("max_steps")
            except (OSError, ValueError, IndexError, AttributeError):
                continue
            self.status = (
                f"Training the default checkpoint (first start only): step "
                f"{step}/{total}, {time.time() - start:.0f} s so far…"
            )
