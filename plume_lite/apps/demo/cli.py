"""The demo's command line, defined once for both ways to start it: `plume-lite demo`
and the Hugging Face Space's demo_app/app.py (`main`). Search by image, video or PDF
page, with the routing trace of each query.

    plume-lite demo                                   # default checkpoint and corpus
    plume-lite demo --checkpoint runs/latent/model --corpus my_files/ --port 7861
    python demo_app/app.py --port 7861                # the same arguments
    PLUME_CHECKPOINT=owner/name python demo_app/app.py  # settings from the environment

--checkpoint, --corpus and --max-k can come from PLUME_CHECKPOINT, PLUME_CORPUS and
PLUME_MAX_K instead (see `environment`; a flag wins over its variable).

Nothing heavy is imported here (gradio, torch), so `plume-lite --help` stays fast;
`run` starts the demo through server.build_app, which turns outbound lookups off
before gradio is imported.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from plume_lite.apps.demo.environment import apply_environment
from plume_lite.apps.demo.server import MAX_FILE_SIZE
from plume_lite.arguments import file_size, int_at_least
from plume_lite.config import MODES
from plume_lite.errors import PlumeError
from plume_lite.runtime import DTYPES

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Gradio demo: search a corpus by image, video or PDF page, with the ranked "
    "results, the routing trace of the query and its latency in each mode."
)


def port(text: str) -> int:
    """An argparse `type`: a TCP port, 1 to 65535."""
    value = int_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def mode_list(text: str) -> tuple[str, ...]:
    """The modes of a comma-separated list: "latent, direct" -> ("latent", "direct");
    "" -> (); an unknown mode is an argparse error."""
    modes = tuple(m.strip() for m in str(text).split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown mode {unknown[0]!r}; choose among {', '.join(MODES)}")
    return modes


def add_arguments(parser):
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="PlumeModel folder or hub id (default: $PLUME_CHECKPOINT, else the shipped "
        "tiny latent checkpoint)",
    )
    parser.add_argument(
        "--corpus",
        default=None,
        help="data folder with tasks.json, or any folder of images, videos, "
        "PDFs and .txt files (default: $PLUME_CORPUS, else the SynthMMEB tiny test corpus)",
    )
    parser.add_argument(
        "--max-k",
        type=int_at_least(1),
        default=None,
        help="the K slider's limit, latent steps (default: $PLUME_MAX_K, else 16 or the "
        "checkpoint's step table if smaller)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="where the model runs: auto (CUDA when present), cpu, cuda, cuda:N "
        "(default: $PLUME_DEVICE, else auto)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="the weights' dtype (default auto: bfloat16 on CUDA, as saved on the CPU)",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on (0.0.0.0 serves the network)",
    )
    parser.add_argument(  # a string default goes through `type` too: a bad variable is a usage error
        "--port", type=port, default=os.environ.get("GRADIO_SERVER_PORT", "7860"), help="TCP port (1-65535)"
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="corpus embeddings, thumbnails and added files (default: <plume cache>/demo)",
    )
    parser.add_argument(
        "--max-file-size", type=file_size, default=MAX_FILE_SIZE, help="upload size limit, e.g. 25mb"
    )
    parser.add_argument(
        "--warm",
        type=mode_list,
        default="latent",
        help="modes whose corpus embeddings are computed before the page is ready",
    )
    parser.add_argument(
        "--prefetch",
        type=mode_list,
        default="direct,explicit",
        help="modes embedded in the background once the page is ready (any other mode: on its first search)",
    )
    return parser


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="start the Gradio demo (search with routing traces)", description=DESCRIPTION
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Build the demo from parsed arguments and serve it until interrupted."""
    from plume_lite.apps.demo.server import build_app, launch

    if not logging.getLogger().handlers:  # start-up progress goes to stderr
        logging.basicConfig(level=logging.INFO, format="[plume demo] %(message)s")
    apply_environment(args)  # ConfigError naming the variable: before anything starts
    demo = build_app(
        fetch_checkpoint(args.checkpoint),
        corpus_dir=args.corpus,
        cache_dir=args.cache_dir,
        warm=args.warm,
        prefetch=args.prefetch,
        max_steps=args.max_k,
        device=args.device,
        dtype=args.dtype,
    )
    launch(demo, host=args.host, port=args.port, max_file_size=args.max_file_size)
    return 0


def fetch_checkpoint(checkpoint):
    """A local folder for a hub id, fetched now: build_app then turns every outbound
    request off, for the rest of the process (a folder is returned as it is)."""
    if checkpoint is None or Path(checkpoint).exists():
        return checkpoint
    from plume_lite.released import resolve_checkpoint

    log.info("fetching the checkpoint %s from the hub (once; the hub cache keeps it)…", checkpoint)
    return resolve_checkpoint(checkpoint)


def main(argv=None) -> int:
    """The Space's entry point: `python app.py [arguments of plume-lite demo]`; a
    setting that cannot be used ends in one line, not a traceback."""
    parser = add_arguments(argparse.ArgumentParser(prog="app.py", description=DESCRIPTION))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except PlumeError as e:
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
