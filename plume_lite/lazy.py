"""Lazy package exports: a name resolves to the module that defines it on first use, so
importing a package stays cheap (`plume_lite.train.config` without torch, the CLI's
`--help` without transformers)."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """A module-level `__getattr__` for `package`.

    Args:
        package: the package's `__name__`.
        exports: exported name -> module that defines it, absolute ("plume_lite.media")
            or relative to the package (".synth").

    Example:
        >>> __getattr__ = lazy_exports(__name__, {"train": ".loop"})
    """

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
