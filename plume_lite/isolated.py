"""Run an untrusted decoder in a child process with hard limits on memory and time.

pdfium has no operation budget: a 4 KB PDF of nested form XObjects can drive it to
gigabytes and SIGABRT, and a slow page cannot be interrupted from another thread. So PDF
pages are opened and rendered in worker processes (`python -m plume_lite.isolated`),
each with an address-space limit (RLIMIT_AS). The parent waits at most `timeout_s` for an
answer and kills the worker on a time-out; a worker that dies (out of its memory limit,
or a crash inside the library) is replaced. Either way the caller gets one MediaError
line, and every other request keeps working.

Protocol: length-prefixed pickles over the worker's stdin/stdout. Both ends are this
package's own code in processes it started; nothing outside them writes to the pipes.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time

WORKERS = 2  # renders that may run at once
MEMORY_LIMIT = 1536 * 2**20  # address space of one worker (Python + pdfium + page)
TIMEOUT_S = 20.0  # one request, waiting for a free worker included
_HEADER = struct.Struct("!Q")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes from fd, None at end of file; TimeoutError past the deadline."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _receive(fd: int, deadline: float | None = None):
    header = _read_exact(fd, _HEADER.size, deadline)
    if header is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(header)[0], deadline)
    return None if body is None else pickle.loads(body)


class _Worker:
    def __init__(self, memory_limit: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plume_lite.isolated", str(memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )

    def ask(self, request, deadline: float):
        _write_all(self.proc.stdin.fileno(), _encode(request))
        return _receive(self.proc.stdout.fileno(), deadline)

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass


def _encode(obj) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class WorkerPool:
    """A few limited worker processes; `call(name, **kwargs)` runs one request."""

    def __init__(self, workers: int = WORKERS, memory_limit: int = MEMORY_LIMIT):
        self.memory_limit = memory_limit
        self._idle: queue.Queue = queue.Queue()
        for _ in range(workers):
            self._idle.put(None)  # a slot; its process starts on first use
        self._lock = threading.Lock()
        self._all: set = set()

    def call(self, name: str, timeout_s: float = TIMEOUT_S, **kwargs):
        """(True, result) or (False, message). TimeoutError / ChildProcessError when the
        worker ran out of time or died; it is replaced for the next request."""
        deadline = time.monotonic() + timeout_s
        try:
            worker = self._idle.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError from None
        try:
            if worker is None or worker.proc.poll() is not None:
                worker = self._start()
            answer = worker.ask((name, kwargs), deadline)
        except TimeoutError:
            self._retire(worker)
            worker = None
            raise
        except (BrokenPipeError, OSError):
            self._retire(worker)
            worker = None
            raise ChildProcessError("its process died") from None
        finally:
            self._idle.put(worker)
        if answer is None:  # end of file: the worker died mid-request
            self._retire(worker)
            raise ChildProcessError(f"over its {self.memory_limit / 2**30:.1f} GiB memory limit, or crashed")
        return answer

    def _start(self) -> _Worker:
        worker = _Worker(self.memory_limit)
        with self._lock:
            self._all.add(worker)
        return worker

    def _retire(self, worker) -> None:
        if worker is None:
            return
        worker.kill()
        with self._lock:
            self._all.discard(worker)

    def close(self) -> None:
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.kill()


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def pool() -> WorkerPool:
    """The process-wide pool (started lazily, closed at exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool()
            atexit.register(_POOL.close)
        return _POOL


def _serve(memory_limit: int) -> None:
    """Worker main loop: answer requests until stdin closes (the parent went away)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    from plume_lite import media

    handlers = {"pdf_page": media._render_pdf_page_here, "pdf_num_pages": media._pdf_num_pages_here}
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    while True:
        request = _receive(fd_in)
        if request is None:
            return
        name, kwargs = request
        try:
            answer = (True, handlers[name](**kwargs))
        except media.MediaError as e:
            answer = (False, str(e))
        except MemoryError:
            answer = (False, "ran out of memory while decoding (over the decoder's memory limit)")
        _write_all(fd_out, _encode(answer))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
