"""What can be asked and what can be searched: a query item built from one upload
and/or a typed text, the corpus items read from a data folder or a folder of files, and what a visitor
adds (SessionCorpus: that visitor's session only, within fixed limits).

Every upload is decoded here, through plume_lite.media (files into items:
plume_lite.files), before the model sees it: a bad file ends in one MediaError that
names the file, never a decoder traceback.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from plume_lite import media
from plume_lite.apps import viz
from plume_lite.apps.demo import render
from plume_lite.errors import PlumeError
from plume_lite.files import VISUAL_KINDS, extensions, items_from_path, require_kind, text_items
from plume_lite.io import atomic_write_bytes
from plume_lite.items import item_digest
from plume_lite.media import MediaError

UPLOAD_EXTS = extensions(VISUAL_KINDS)  # queries and additions; .txt only in corpus folders
MAX_INSTRUCTION_CHARS = 500
MAX_QUERY_TEXT_CHARS = 1000  # a typed query (alone, or a question about the upload)


@dataclass
class Query:
    item: dict  # what the model embeds (decoded pixels, instruction)
    preview: Image.Image | None  # what the page shows (None for a text query)
    kind: str  # image | video | pdf | text
    pages: int = 0  # PDF page count


def _short(err: MediaError, path) -> MediaError:
    """The same message with the upload's temporary folder cut off the file name."""
    return MediaError(str(err).replace(str(path), Path(path).name))


def clean_instruction(text, what: str = "the instruction", limit: int = MAX_INSTRUCTION_CHARS) -> str:
    text = " ".join(str(text or "").split())
    if len(text) > limit:
        raise MediaError(f"{what} is {len(text)} characters long; keep it under {limit}")
    return text


def load_query(path, page: int = 1, instruction: str = "", text: str = "") -> Query:
    """Decode one uploaded file into a query item, with `text` beside it (a question
    about it, as SynthMMEB's QA queries have); or, without a file, a text query.
    `page` is 1-based (PDF only)."""
    text = clean_instruction(text, "the text query", MAX_QUERY_TEXT_CHARS)
    instruction = clean_instruction(instruction)
    if not path and text:
        query = Query({"text": text}, None, "text")
        if instruction:
            query.item["instruction"] = instruction
        return query
    if not path:
        raise MediaError("no query: upload an image, a video or a PDF, or type a text query")
    kind = require_kind(path, VISUAL_KINDS)
    try:
        if kind == "image":
            img = media.load_image(path)
            query = Query({"image": img}, render.enlarge(render.shrink(img)), kind)
        elif kind == "video":
            frames = media.load_video(path, num_frames=8)
            sheet = viz.contact_sheet([render.shrink(f, 256) for f in frames], columns=4)
            query = Query({"video": frames}, render.enlarge(sheet, 384), kind)
        else:
            n = media.pdf_num_pages(path)
            page = int(page or 1)
            if not 1 <= page <= n:
                raise MediaError(
                    f"{path}: page {page} is out of range; the document has {n} page{'s' if n != 1 else ''}"
                )
            img = media.load_pdf_page(path, page=page - 1)
            query = Query({"image": img}, render.enlarge(render.shrink(img), 320), kind, n)
    except MediaError as e:
        raise _short(e, path) from None
    if text:
        query.item["text"] = text
    if instruction:
        query.item["instruction"] = instruction
    return query


# ----------------------------------------------------------------------------- corpora
# (repeated items are dropped once, where the engine adds them to its corpus)


def task_corpus(data_dir) -> list[dict]:
    """The test candidates of every task of an MMEB/SynthMMEB folder."""
    from plume_lite.data.mmeb import load_eval_tasks

    tasks = load_eval_tasks(data_dir)
    tasks = getattr(tasks, "tasks", tasks)
    tasks = tasks.values() if isinstance(tasks, dict) else tasks
    return [c for task in tasks for c in task.candidates]


def load_corpus(path) -> tuple[list[dict], list[str]]:
    """The items of a data folder with tasks (MMEB/SynthMMEB layout), or of every
    readable image, video, PDF page and text line of a plain folder; and the one-line
    reasons unreadable files were skipped."""
    path = Path(path)
    if not path.is_dir():
        raise MediaError(f"{path}: corpus folder not found")
    if (path / "tasks.json").exists():
        return task_corpus(path), []
    try:  # a real MMEB/BEIR folder without a task list
        items = task_corpus(path)
        if items:
            return items, []
    except PlumeError:
        pass
    skipped: list[str] = []
    return items_from_path(path, skipped=skipped), skipped


# ----------------------------------------------------------------------------- user files

MAX_SESSION_ITEMS = 64  # items one visitor's session may add
MAX_SESSION_TEXT_CHARS = 32_000  # characters of added text per session (lines are cut at 1000)
MAX_SESSION_BYTES = 64 * 2**20  # bytes of added files per session
MAX_TOTAL_SESSION_BYTES = 2 * 2**30  # added files of all open sessions together
MAX_ADD_TEXT_CHARS = 100_000  # the text box of one "add" click, read at all
SESSION_TTL_S = 3 * 3600  # a session's additions are dropped this long after the last one


class LimitError(PlumeError):
    """An addition beyond a session's (or the server's) limits; nothing was added."""


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-80:] or "file"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} kB"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class DiskQuota:
    """Bytes of added files held by all open sessions together (thread-safe)."""

    def __init__(self, limit: int = MAX_TOTAL_SESSION_BYTES):
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            if self.used + n > self.limit:
                raise LimitError(
                    "the server's space for added files is full right now; try again later, "
                    "or search without adding files"
                )
            self.used += n

    def give(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)


class SessionCorpus:
    """What one visitor added to the corpus: searched, beside the shared corpus, for
    that visitor's session only (the page keeps it in a gr.State), and dropped with the
    session (`close`). Nothing a visitor adds reaches another visitor or a later start.

    Bounded per session: MAX_SESSION_ITEMS items, MAX_SESSION_TEXT_CHARS characters of
    text, MAX_SESSION_BYTES of files (and, for all sessions together, the server's
    DiskQuota). Uploads are copied into the session's own folder `root`; the items'
    embeddings live in memory, in `caches` (one EmbeddingCache per setting, filled by
    the engine), never in the shared embedding cache."""

    def __init__(self, root, quota: DiskQuota | None = None):
        self.root = Path(root)
        self.quota = quota or DiskQuota()
        self.items: list[dict] = []
        self.keys: set[str] = set()
        self.chars = 0
        self.files: dict[Path, int] = {}  # copies -> bytes
        self.caches: dict = {}  # setting -> EmbeddingCache (in memory)

    @property
    def bytes(self) -> int:
        return sum(self.files.values())

    def usage(self) -> str:
        return (
            f"{len(self.items)}/{MAX_SESSION_ITEMS} items, {self.chars:,}/{MAX_SESSION_TEXT_CHARS:,} "
            f"characters, {_size(self.bytes)} of {_size(MAX_SESSION_BYTES)} of files"
        )

    def check(self, items: int = 0, chars: int = 0, nbytes: int = 0) -> None:
        """LimitError if adding this much would go past a limit of the session."""
        if len(self.items) + items > MAX_SESSION_ITEMS:
            raise LimitError(
                f"this adds {_plural(items, 'item')}, and a session holds at most "
                f"{MAX_SESSION_ITEMS} added items ({len(self.items)} so far); add fewer"
            )
        if self.chars + chars > MAX_SESSION_TEXT_CHARS:
            raise LimitError(
                f"this adds {_plural(chars, 'character')} of text, and a session holds at most "
                f"{MAX_SESSION_TEXT_CHARS:,} ({self.chars:,} so far); add less text"
            )
        if self.bytes + nbytes > MAX_SESSION_BYTES:
            raise LimitError(
                f"this adds {_size(nbytes)} of files, and a session holds at most "
                f"{_size(MAX_SESSION_BYTES)} ({_size(self.bytes)} so far)"
            )

    def texts(self, text: str) -> list[dict]:
        """The new text items of a text box, one per non-empty line (cut at 1000
        characters), repeats left out; not added yet. One pass over the text."""
        text = text or ""
        if len(text) > MAX_ADD_TEXT_CHARS:
            raise LimitError(
                f"the text is {len(text):,} characters long; add at most {MAX_ADD_TEXT_CHARS:,} at once"
            )
        new, seen = [], set()
        for item in text_items(text.splitlines()):
            key = item_digest(item)
            if key not in seen and key not in self.keys:
                seen.add(key)
                new.append(item)
        self.check(items=len(new), chars=sum(len(it["text"]) for it in new))
        return new

    def file(self, path) -> tuple[list[dict], Path]:
        """Check one upload against the limits, copy it into the session's folder and
        decode it there: its new items (not added yet) and the copy."""
        path = Path(path)
        require_kind(path, VISUAL_KINDS)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise MediaError(f"{path.name}: cannot read the upload ({e.strerror or e})") from None
        self.check(nbytes=len(data))
        # one folder per content: the copy keeps the upload's name, for messages
        dest = self.root / hashlib.sha256(data).hexdigest()[:16] / _safe_name(path.name)
        try:
            if dest not in self.files:
                self.quota.take(len(data))
                self.files[dest] = len(data)
                dest.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(dest, data)
            items = items_from_path(dest)
        except MediaError as e:
            self.drop_unused([dest])
            raise MediaError(str(e).replace(str(dest), path.name)) from None
        except BaseException:
            self.drop_unused([dest])
            raise
        return [it for it in items if item_digest(it) not in self.keys], dest

    def add(self, items) -> list[dict]:
        """Add items (already embedded by the engine); returns those that were new."""
        new = []
        for item in items:
            key = item_digest(item)
            if key not in self.keys:
                self.keys.add(key)
                self.chars += len(item.get("text", ""))
                self.items.append(item)
                new.append(item)
        return new

    def drop_unused(self, copies) -> None:
        """Delete the copies that no added item refers to (refused or failed uploads)."""
        used = {str(it[k]) for it in self.items for k in VISUAL_KINDS if k in it}
        for dest in copies:
            if str(dest) not in used and dest in self.files:
                self.quota.give(self.files.pop(dest))
                shutil.rmtree(dest.parent, ignore_errors=True)

    def close(self) -> None:
        """The session ended: its files, items and embeddings go."""
        self.quota.give(self.bytes)
        self.files.clear()
        self.items, self.keys, self.caches, self.chars = [], set(), {}, 0
        shutil.rmtree(self.root, ignore_errors=True)


class UserCorpus:
    """Additions stored by earlier versions of the demo, when they were shared by every
    visitor: `root`/manifest.json and its files. Read at start-up only (nothing writes
    there any more); an entry that cannot be read, or that the model refuses, is
    skipped with a warning (DemoEngine.rejected) instead of stopping the start."""

    def __init__(self, root):
        self.root = Path(root)
        self.manifest = self.root / "manifest.json"
        self.entries: list = []
        if self.manifest.exists():
            try:
                entries = json.loads(self.manifest.read_text())["entries"]
                self.entries = entries if isinstance(entries, list) else []
            except (OSError, ValueError, KeyError, TypeError):
                self.entries = []  # a damaged list loses the additions, not the app

    def items(self) -> tuple[list[dict], list[str]]:
        """The stored items, and one line per entry skipped."""
        out, skipped = [], []
        for e in self.entries:
            try:
                if "text" in e:
                    out.extend(text_items([e["text"]]))
                    continue
                file = self.root / "files" / Path(str(e["file"])).name
                if not file.is_file():
                    skipped.append(f"{file.name}: stored addition not found")
                    continue
                item = {e["kind"]: str(file)}
                if e["kind"] == "pdf":
                    item["page"] = int(e["page"])
                if e["kind"] not in VISUAL_KINDS:
                    raise ValueError(e["kind"])
                out.append(item)
            except (KeyError, TypeError, ValueError, AttributeError):
                skipped.append(f"stored addition {str(e)[:80]!r}: damaged entry")
        return out, skipped
