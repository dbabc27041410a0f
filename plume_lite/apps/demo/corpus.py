"""What can be asked and what can be searched: a query item built from one upload,
the corpus items read from a data folder or a folder of files, and the files users
add, kept on disk so they survive a restart.

Every upload is decoded here, through plume_lite.media (files into items:
plume_lite.files), before the model sees it: a bad file ends in one MediaError that
names the file, never a decoder traceback.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from plume_lite import media
from plume_lite.apps import viz
from plume_lite.apps.demo import render
from plume_lite.errors import PlumeError
from plume_lite.files import VISUAL_KINDS, extensions, item_kind, items_from_path, require_kind, text_items
from plume_lite.io import atomic_write_text
from plume_lite.media import MediaError

UPLOAD_EXTS = extensions(VISUAL_KINDS)  # queries and additions; .txt only in corpus folders
MAX_INSTRUCTION_CHARS = 500


@dataclass
class Query:
    item: dict  # what the model embeds (decoded pixels, instruction)
    preview: Image.Image  # what the page shows
    kind: str  # image | video | pdf
    pages: int = 0  # PDF page count


def _short(err: MediaError, path) -> MediaError:
    """The same message with the upload's temporary folder cut off the file name."""
    return MediaError(str(err).replace(str(path), Path(path).name))


def clean_instruction(text) -> str:
    text = " ".join(str(text or "").split())
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise MediaError(
            f"the instruction is {len(text)} characters long; keep it under {MAX_INSTRUCTION_CHARS}"
        )
    return text


def load_query(path, page: int = 1, instruction: str = "") -> Query:
    """Decode one uploaded file into a query item. `page` is 1-based (PDF only)."""
    if not path:
        raise MediaError("no file: upload an image, a video or a PDF first")
    kind = require_kind(path, VISUAL_KINDS)
    instruction = clean_instruction(instruction)
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


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-80:] or "file"


class UserCorpus:
    """Files and texts users added, copied under `root` and listed in manifest.json.

    Copies keep the upload's bytes and are never rewritten, so their embeddings (keyed
    by path, size and mtime) are found in the cache again after a restart."""

    def __init__(self, root):
        self.root = Path(root)
        self.manifest = self.root / "manifest.json"
        self.entries: list[dict] = []
        if self.manifest.exists():
            try:
                self.entries = json.loads(self.manifest.read_text())["entries"]
            except (ValueError, KeyError, TypeError):
                self.entries = []  # a damaged list loses the additions, not the app

    def items(self) -> list[dict]:
        out = []
        for e in self.entries:
            if "text" in e:
                out.append({"text": e["text"]})
            elif (self.root / "files" / e["file"]).exists():
                item = {e["kind"]: str(self.root / "files" / e["file"])}
                if e["kind"] == "pdf":
                    item["page"] = e["page"]
                out.append(item)
        return out

    def add_file(self, path) -> list[dict]:
        """Validate and copy one upload; returns the new corpus items."""
        path = Path(path)
        try:
            require_kind(path, VISUAL_KINDS)
            items = items_from_path(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        except MediaError as e:
            raise _short(e, path) from None
        dest = self.root / "files" / f"{digest}-{_safe_name(path.name)}"
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name("." + dest.name + ".tmp")
            shutil.copyfile(path, tmp)
            tmp.replace(dest)
        new = []
        for item in items:
            kind = item_kind(item)
            page = {"page": item["page"]} if kind == "pdf" else {}
            entry = {"kind": kind, "file": dest.name, **page}
            if entry not in self.entries:
                self.entries.append(entry)
                new.append({kind: str(dest), **page})
        self._save()
        return new

    def add_texts(self, lines) -> list[dict]:
        new = []
        for item in text_items(lines):
            if item not in self.entries:
                self.entries.append(item)
                new.append(dict(item))
        self._save()
        return new

    def _save(self):
        atomic_write_text(self.manifest, json.dumps({"entries": self.entries}, indent=1))
