"""Process-wide policies, each defined once: where the cache lives, which network
lookups are turned off, and how many CPU threads torch uses.

Nothing here runs at import. The CLI, the demo and the tests call these functions;
importing any plume_lite module leaves `os.environ` and torch's settings as they were.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# Telemetry and analytics: never wanted, whatever the data source.
QUIET_ENV = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}
# No hub lookup at all: for the demo (it promises no outbound request) and the tests.
OFFLINE_ENV = {**QUIET_ENV, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

DEFAULT_THREADS = 1  # the tiny model's kernels gain nothing from more; spinning threads
# slowed training up to 10x on a busy 2-core machine (measured)


def cache_root() -> Path:
    """The cache folder: $PLUME_CACHE if set; else `.cache/` of the source checkout this
    package runs from (an editable install); else ~/.cache/plume_lite. It never depends
    on the working directory, so notebooks, the demo and the CLI share it."""
    if os.environ.get("PLUME_CACHE"):
        return Path(os.environ["PLUME_CACHE"]).expanduser()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").exists() and os.access(checkout, os.W_OK):
        return checkout / ".cache"
    return Path.home() / ".cache" / "plume_lite"


def apply_env(offline: bool = False, force: bool = False) -> None:
    """Turn telemetry off and, with `offline`, every hub lookup too.

    Must run before gradio, transformers or datasets is imported to take full effect.
    `force` overrides values the user set (the demo's no-outbound-request promise);
    otherwise the user's own settings win."""
    for key, value in (OFFLINE_ENV if offline else QUIET_ENV).items():
        if force:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)


def resolve_device(name: str | None = "auto") -> str:
    """A torch device name: "auto" (or None) is CUDA when present, else the CPU."""
    if name in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_dtype(name: str | None, device: str):
    """A torch dtype to load weights in, or None (as saved). "auto": bfloat16 on CUDA
    (the authors' evaluation dtype, RELEASED_CHECKPOINTS.md D18), as saved elsewhere."""
    import torch

    if name in (None, "auto"):
        return torch.bfloat16 if torch.device(device).type == "cuda" else None
    if name not in DTYPES:
        from plume_lite.errors import ConfigError

        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def thread_count() -> int:
    """Intra-op threads to use: $PLUME_THREADS, else DEFAULT_THREADS."""
    raw = os.environ.get("PLUME_THREADS", "")
    try:
        return max(1, int(raw)) if raw.strip() else DEFAULT_THREADS
    except ValueError:
        from plume_lite.errors import ConfigError

        raise ConfigError(f"PLUME_THREADS must be a positive integer, got {raw!r}") from None


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads for the whole process (n, else thread_count())."""
    import torch

    n = n or thread_count()
    torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def using_threads(n: int | None):
    """Use `n` intra-op threads inside the block, then restore the process setting
    (a no-op for n = None or 0)."""
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(previous)
