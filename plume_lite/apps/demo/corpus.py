"""What can be asked and what can be searched: a query item built from one upload,
the corpus items read from a data folder or a folder of files, and the files users
add, kept on disk so they survive a restart.

Every upload is decoded here, through plume_lite.media, before the model sees it:
a bad file ends in one MediaError that names the file, never a decoder traceback.
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
from plume_lite.errors import PlumeError
from plume_lite.media import MediaError
from plume_lite.evaluation.index import item_digest
from plume_lite.io import atomic_write_text

from plume_lite.apps.demo import render

IMAGE_EXTS = sorted(media.IMAGE_EXTS)
VIDEO_EXTS = [".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"]
PDF_EXTS = [".pdf"]
TEXT_EXTS = [".txt"]                  # corpus folders only: one candidate per line
UPLOAD_EXTS = IMAGE_EXTS + VIDEO_EXTS + PDF_EXTS
MAX_INSTRUCTION_CHARS = 500
MAX_PDF_PAGES_ADDED = 16              # pages taken from one PDF added to the corpus
MAX_TEXT_CHARS = 1000


@dataclass
class Query:
    item: dict                # what the model embeds (decoded pixels, instruction)
    preview: Image.Image      # what the page shows
    kind: str                 # image | video | pdf
    pages: int = 0            # PDF page count


def kind_of(path) -> str:
    ext = Path(path).suffix.lower()
    for kind, exts in (("image", IMAGE_EXTS), ("video", VIDEO_EXTS), ("pdf", PDF_EXTS)):
        if ext in exts:
            return kind
    raise MediaError(f"{Path(path).name}: unsupported file type {ext or '(no extension)'!r}; "
                     f"upload an image ({', '.join(IMAGE_EXTS)}), a video "
                     f"({', '.join(VIDEO_EXTS)}) or a PDF")


def _short(err: MediaError, path) -> MediaError:
    """The same message with the upload's temporary folder cut off the file name."""
    return MediaError(str(err).replace(str(path), Path(path).name))


def clean_instruction(text) -> str:
    text = " ".join(str(text or "").split())
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise MediaError(f"the instruction is {len(text)} characters long; keep it under "
                         f"{MAX_INSTRUCTION_CHARS}")
    return text


def load_query(path, page: int = 1, instruction: str = "") -> Query:
    """Decode one uploaded file into a query item. `page` is 1-based (PDF only)."""
    if not path:
        raise MediaError("no file: upload an image, a video or a PDF first")
    kind = kind_of(path)
    instruction = clean_instruction(instruction)
    try:
        if kind == "image":
            img = media.load_image(path)
            query = Query({"image": img}, render.enlarge(render.shrink(img)), kind)
        elif kind == "video":
            frames = media.load_video(path, num_frames=8)
            sheet = render.contact_sheet([render.shrink(f, 256) for f in frames])
            query = Query({"video": frames}, render.enlarge(sheet, 384), kind)
        else:
            n = media.pdf_num_pages(path)
            page = int(page or 1)
            if not 1 <= page <= n:
                raise MediaError(f"{path}: page {page} is out of range; the document has "
                                 f"{n} page{'s' if n != 1 else ''}")
            img = media.load_pdf_page(path, page=page - 1)
            query = Query({"image": img}, render.enlarge(render.shrink(img), 320), kind, n)
    except MediaError as e:
        raise _short(e, path) from None
    if instruction:
        query.item["instruction"] = instruction
    return query


# ----------------------------------------------------------------------------- corpora

def dedupe(items) -> list[dict]:
    seen, out = set(), []
    for item in items:
        key = item_digest(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def task_corpus(data_dir) -> list[dict]:
    """The test candidates of every task of an MMEB/SynthMMEB folder, de-duplicated."""
    from plume_lite.data.mmeb import load_eval_tasks
    tasks = load_eval_tasks(data_dir)
    tasks = getattr(tasks, "tasks", tasks)
    tasks = tasks.values() if isinstance(tasks, dict) else tasks
    return dedupe(c for task in tasks for c in task.candidates)


def file_items(path: Path, pdf_pages: int = MAX_PDF_PAGES_ADDED) -> list[dict]:
    """The corpus items one file stands for (checked by decoding them)."""
    ext = path.suffix.lower()
    if ext in TEXT_EXTS:
        lines = [" ".join(s.split()) for s in path.read_text(errors="replace").splitlines()]
        return [{"text": s[:MAX_TEXT_CHARS]} for s in lines if s]
    kind = kind_of(path)
    if kind == "image":
        media.load_image(path)
        return [{"image": str(path)}]
    if kind == "video":
        media.load_video(path, num_frames=8)
        return [{"video": str(path)}]
    n = min(media.pdf_num_pages(path), pdf_pages)
    for p in range(n):                # render once: a broken page fails now, not at search
        media.load_pdf_page(path, page=p)
    return [{"pdf": str(path), "page": p} for p in range(n)]


def folder_corpus(root) -> tuple[list[dict], list[str]]:
    """Every readable image, video, PDF page and text line under `root`; and the
    one-line reasons the unreadable files were skipped."""
    items, skipped = [], []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        if path.suffix.lower() not in UPLOAD_EXTS + TEXT_EXTS:
            continue
        try:
            items.extend(file_items(path.resolve()))
        except MediaError as e:
            skipped.append(str(e))
    return dedupe(items), skipped


def load_corpus(path) -> tuple[list[dict], list[str]]:
    """A data folder with tasks (MMEB/SynthMMEB layout) or a plain folder of files."""
    path = Path(path)
    if not path.is_dir():
        raise MediaError(f"{path}: corpus folder not found")
    if (path / "tasks.json").exists():
        return task_corpus(path), []
    try:                  # a real MMEB/BEIR folder without a task list
        items = task_corpus(path)
        if items:
            return items, []
    except PlumeError:
        pass
    return folder_corpus(path)


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
                self.entries = []         # a damaged list loses the additions, not the app

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
            kind_of(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            items = file_items(path)
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
            key = next(k for k in ("image", "video", "pdf") if k in item)
            entry = {"kind": key, "file": dest.name, **({"page": item["page"]} if key == "pdf" else {})}
            if entry not in self.entries:
                self.entries.append(entry)
                new.append({key: str(dest), **({"page": item["page"]} if key == "pdf" else {})})
        self._save()
        return new

    def add_texts(self, lines) -> list[dict]:
        new = []
        for line in lines:
            text = " ".join(str(line).split())[:MAX_TEXT_CHARS]
            if text and {"text": text} not in self.entries:
                self.entries.append({"text": text})
                new.append({"text": text})
        self._save()
        return new

    def _save(self):
        atomic_write_text(self.manifest, json.dumps({"entries": self.entries}, indent=1))
