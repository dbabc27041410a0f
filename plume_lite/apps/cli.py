"""`plume-lite` command line. Each subcommand lives beside the code it drives:
a module listed here exposes `add_cli(subparsers)` that registers its parser and
sets `func`. Errors the user can fix (PlumeError) end in one line, not a traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from plume_lite.errors import PlumeError
from plume_lite.runtime import apply_env, configure_threads

# module -> registers one or more subcommands
COMMAND_MODULES = [
    "plume_lite.released_cli",  # convert
    "plume_lite.data.cli",  # synth, data show
    "plume_lite.train.cli",  # train
    "plume_lite.train.pretrain_cli",  # pretrain
    "plume_lite.evaluation.cli",  # eval
    "plume_lite.evaluation.paired_cli",  # paired
    "plume_lite.experiments.cli",  # reproduce, bench
    "plume_lite.apps.demo.cli",  # demo
]


def build_parser() -> argparse.ArgumentParser:
    from plume_lite import __version__

    parser = argparse.ArgumentParser(prog="plume-lite", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"plume-lite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that part of the package is not built yet
                continue
            raise
        module.add_cli(sub)
    return parser


def configure_logging() -> None:
    """The library logs progress through `logging`; the CLI shows plume_lite's INFO
    lines on stderr, bare, like a progress bar would be (once, whoever calls main)."""
    logger = logging.getLogger("plume_lite")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    apply_env()  # no telemetry; the hub stays reachable for hub ids
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        configure_threads()
        return int(args.func(args) or 0)
    except PlumeError as e:
        print(f"plume-lite {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"plume-lite {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
