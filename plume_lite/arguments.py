"""argparse value types shared by the subcommands, so a bad number on the command line
ends in argparse's one-line usage error (`--repeats 0`, `--batch-size abc`) instead of a
traceback or a silently empty result."""

from __future__ import annotations

import argparse


def int_at_least(low: int):
    """An argparse `type` accepting integers >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def int_list(low: int = 1):
    """An argparse `type` for a comma-separated list of integers >= low ("1,16")."""
    one = int_at_least(low)

    def parse(text: str) -> list[int]:
        values = [one(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {text!r}")
        return values

    parse.__name__ = "list of integers"
    return parse


def name_list(text: str) -> list[str]:
    """A non-empty comma-separated list of names ("a,b"); ',' alone is refused."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return names


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def file_size(text: str) -> str:
    """A size such as '25mb' or '512kb' (gradio's format), checked and returned as given."""
    raw = text.strip().lower()
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number) :] or "b"
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not value > 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 25mb or 512kb, got {text!r}")
    return text.strip()
