"""`plume-lite demo`: the Gradio demo of demo_app/ (search by image, video or PDF page,
with the routing trace of each query).

    plume-lite demo                                   # default checkpoint and corpus
    plume-lite demo --checkpoint runs/latent/model --corpus my_files/ --port 7861

The app lives in demo_app/ of the source checkout (it is also a Hugging Face Space), so
this command finds it beside the package rather than importing it as part of plume_lite.
The arguments are defined here, without importing gradio, so `plume-lite --help` stays fast.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from plume_lite.errors import PlumeError

DESCRIPTION = ("Gradio demo: search a corpus by image, video or PDF page, with the ranked "
               "results, the routing trace of the query and its latency in each mode.")


def add_arguments(parser):
    parser.add_argument("--checkpoint", default=None,
                        help="PlumeModel folder (default: the tiny latent checkpoint, trained "
                             "on the first start and reused after)")
    parser.add_argument("--corpus", default=None,
                        help="data folder with tasks.json, or any folder of images, videos, "
                             "PDFs and .txt files (default: the SynthMMEB tiny test corpus)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 serves the network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--cache-dir", default=None,
                        help="corpus embeddings, thumbnails and added files "
                             "(default: <plume cache>/demo)")
    parser.add_argument("--max-file-size", default="25mb", help="upload size limit, e.g. 25mb")
    parser.add_argument("--warm", default="latent",
                        help="modes whose corpus embeddings are computed before the page is ready")
    parser.add_argument("--prefetch", default="direct,explicit",
                        help="modes embedded in the background once the page is ready "
                             "(any other mode: on its first search)")
    return parser


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("demo", help="start the Gradio demo (search with routing traces)",
                              description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)


def find_app() -> Path:
    """demo_app/app.py of the checkout this package runs from ($PLUME_DEMO_APP wins)."""
    override = os.environ.get("PLUME_DEMO_APP")
    path = Path(override) if override else Path(__file__).resolve().parents[1] / "demo_app" / "app.py"
    if not path.is_file():
        raise PlumeError(f"demo app not found at {path}; run from a source checkout, or set "
                         f"PLUME_DEMO_APP to demo_app/app.py")
    return path


def load_app():
    """Import demo_app/app.py as a module (it puts its own folder on sys.path)."""
    if importlib.util.find_spec("gradio") is None:
        raise PlumeError("gradio is not installed: pip install 'plume_lite[demo]'")
    path = find_app()
    name = "plume_demo_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(args) -> int:
    return load_app().run(args)
