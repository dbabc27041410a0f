"""The demo's settings from the environment. A Hugging Face Space runs `python app.py`
with no arguments, so what an operator would pass as flags can be set as variables
(the Space's "Variables" settings) instead:

    PLUME_CHECKPOINT   a PlumeModel folder, or a hub id ("owner/name"; fetched once,
                       before the server starts and turns outbound requests off)
    PLUME_CORPUS       a folder: a data folder with tasks.json, or any folder of files
    PLUME_MAX_K        the K slider's limit (latent steps), an integer >= 1
    PLUME_DEVICE       where the model runs: auto (CUDA when present, the default), cpu,
                       cuda or cuda:N
    PLUME_PROFILE      gpu-2b: with no checkpoint given, the authors' released PLUME
                       weights (as the notebooks' gpu-2b profile); tiny (default): the
                       shipped tiny checkpoint

A flag given on the command line wins over its variable. A bad value is one
ConfigError that names the variable (or the flag), checked before anything starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from plume_lite.arguments import int_at_least
from plume_lite.errors import ConfigError

# argument name -> (variable, flag)
VARIABLES = {
    "checkpoint": ("PLUME_CHECKPOINT", "--checkpoint"),
    "corpus": ("PLUME_CORPUS", "--corpus"),
    "max_k": ("PLUME_MAX_K", "--max-k"),
    "device": ("PLUME_DEVICE", "--device"),
}


def checkpoint_value(text: str) -> str:
    """A checkpoint folder that exists, or a hub id; anything else is refused."""
    from plume_lite.released import looks_like_hub_id  # (imports torch: not for --help)

    text = str(text).strip()
    if Path(text).expanduser().exists():
        return str(Path(text).expanduser())
    if looks_like_hub_id(text):
        return text
    raise ValueError("no such folder, and not a hub id (owner/name)")


def corpus_value(text: str) -> str:
    path = Path(str(text).strip()).expanduser()
    if not path.is_dir():
        raise ValueError("no such folder")
    return str(path)


def max_k_value(text) -> int:
    try:
        return int_at_least(1)(str(text).strip())
    except argparse.ArgumentTypeError as e:
        raise ValueError(str(e)) from None


def device_value(text) -> str:
    """auto, cpu, cuda or cuda:N; a CUDA device must exist (auto: CUDA when present)."""
    import re

    text = str(text).strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise ValueError("not a device: use auto, cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        import torch

        index = int(text.split(":")[1]) if ":" in text else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError("no such CUDA device on this machine")
    return text


CHECKS = {
    "checkpoint": checkpoint_value,
    "corpus": corpus_value,
    "max_k": max_k_value,
    "device": device_value,
}


def apply_environment(args, environ=None) -> argparse.Namespace:
    """Fill the settings of `args` left unset on the command line from the environment,
    and check every one of them (flag or variable). Returns `args`."""
    environ = os.environ if environ is None else environ
    for name, (variable, flag) in VARIABLES.items():
        value, source = getattr(args, name, None), flag
        if value is None and environ.get(variable, "").strip():
            value, source = environ[variable], variable
        if value is None:
            continue
        try:
            setattr(args, name, CHECKS[name](value))
        except ValueError as e:
            raise ConfigError(f"{source}={str(value)!r}: {e}") from None
    profile = environ.get("PLUME_PROFILE", "").strip() or "tiny"
    if profile not in ("tiny", "gpu-2b"):
        raise ConfigError(f"PLUME_PROFILE={profile!r}: expected tiny or gpu-2b")
    if profile == "gpu-2b" and getattr(args, "checkpoint", None) is None:
        from plume_lite.apps.defaults import RELEASED_PLUME

        args.checkpoint = RELEASED_PLUME  # the notebooks' gpu-2b latent model: the authors' weights
    return args
