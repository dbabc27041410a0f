"""Atomic file and folder writes: a crash never leaves a half-written result or checkpoint.

Also the small file helpers every loader shares: `read_json` (one-line errors that name
the file), `sha256_file`, `folder_lock` (one run per folder) and `clean_leftovers`
(what a killed atomic write leaves behind)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from plume_lite.errors import CheckpointError, PlumeError


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def replace_dir(tmp, path) -> None:
    """Move the finished folder `tmp` to `path`, replacing what is there with renames
    only (the old folder is moved aside first, then removed)."""
    tmp, path = Path(tmp), Path(path)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary sibling folder; on success it replaces `path` in one rename.

    On any error the temporary folder is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------ reading, hashing
def one_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (or its type), for a one-line error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if text.endswith(":") and len(lines) > 1:  # "Error(s) in loading state_dict:" + the cause
        text = f"{text} {lines[1]}"
    return text if len(text) <= 300 else text[:297] + "..."


def read_bytes(path, error=CheckpointError, allow_empty: bool = False) -> bytes:
    """The bytes of a file; missing, a directory, unreadable or empty: one `error` naming it."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path} is missing")
    if path.is_dir():
        raise error(f"{path} is a directory, expected a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or one_line(e)})") from None
    if not data.strip() and not allow_empty:
        raise error(f"{path} is empty")
    return data


def read_json(path, error=CheckpointError):
    """Parse a JSON file; every way it can be damaged is one `error` that names the file."""
    data = read_bytes(path, error)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path}: not valid JSON (not UTF-8 text)") from None
    except (ValueError, RecursionError) as e:
        raise error(f"{path}: not valid JSON ({one_line(e)})") from None


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ one writer per folder
class FolderLocked(PlumeError):
    """Another process holds the lock of a folder this process wants to write."""


@contextlib.contextmanager
def folder_lock(folder, name: str = ".lock"):
    """Hold an exclusive `fcntl.flock` on `folder/name` for the block (released on exit,
    and by the OS when the process dies); a second holder fails at once with FolderLocked
    naming the folder and the holder's pid. The lock file stays: removing it would race."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise FolderLocked(
                f"{folder} is in use by another run (pid {holder}, lock {folder / name}); "
                "wait for it to finish or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------ leftovers of killed writes
_TMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # atomic_write_* / atomic_dir / discard
_OLD = re.compile(r"^\.(?P<name>.+)\.old$")  # atomic_dir's previous version


def discard(path) -> None:
    """Remove a folder so that a kill midway leaves only a hidden leftover, never a
    half-deleted folder under its real name (`clean_leftovers` removes the leftover)."""
    path = Path(path)
    hidden = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    os.replace(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def clean_leftovers(folder, owned) -> list[str]:
    """Remove what killed atomic writes in `folder` left behind, for the entries whose
    name satisfies `owned(name)` (nothing else is touched): temporary files and folders
    are deleted; a previous version (`.NAME.old`) whose replacement never arrived is
    put back as NAME, otherwise deleted. Returns the names handled."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    done = []
    for entry in sorted(folder.iterdir()):
        tmp, old = _TMP.match(entry.name), _OLD.match(entry.name)
        match = tmp or old
        if not match or not owned(match["name"]):
            continue
        target = folder / match["name"]
        if old and not target.exists():
            os.replace(entry, target)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        done.append(entry.name)
    return done
