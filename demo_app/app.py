"""PLUME-lite Gradio demo: search a corpus by image, video or PDF page, see the ranked
results beside the per-step expert routing of the query.

    python demo_app/app.py [--checkpoint DIR] [--corpus DIR] [--host H] [--port P]
    plume-lite demo ...                  (the same, from the package's command line)

This is also the Hugging Face Space entry point (see README.md). The pieces live in
plume_lite.apps.demo/: corpus (uploads and corpus items), engine (search), heatmap and render
(pictures), startup (background preparation), ui (the page), server (queue, limits).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Offline before anything imports gradio (also done by plume_lite.apps.demo's __init__).
os.environ.update({"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                   "HF_HUB_DISABLE_TELEMETRY": "1"})
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
try:
    import plume_lite  # noqa: F401
except ModuleNotFoundError:   # a source checkout run without installing the package
    sys.path.insert(0, str(HERE.parent))

from plume_lite.apps.demo.server import build_app, launch  # noqa: E402
from plume_lite.apps.demo.cli import DESCRIPTION, add_arguments  # noqa: E402  (one CLI definition)

__all__ = ["build_app", "launch", "add_arguments", "run", "main"]


def run(args) -> int:
    modes = lambda text: tuple(m.strip() for m in text.split(",") if m.strip())  # noqa: E731
    demo = build_app(args.checkpoint, corpus_dir=args.corpus, cache_dir=args.cache_dir,
                     warm=modes(args.warm), prefetch=modes(args.prefetch))
    launch(demo, host=args.host, port=args.port, max_file_size=args.max_file_size)
    return 0


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="app.py", description=DESCRIPTION))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
