"""The plume_lite Gradio demo, behind the [demo] extra: search a corpus by image, video
or PDF page and watch the per-step expert routing.

    plume-lite demo [--checkpoint DIR] [--corpus DIR]     # or: python demo_app/app.py
    from plume_lite.apps.demo.server import build_app, launch

`cli` (arguments, `run`, the Space's `main`), `server` (build_app, launch: queue and
limits), `startup` (background preparation), `engine` (model, corpus indexes, search,
deadlines), `corpus` (uploads and corpus items), `render` (pictures), `ui` (the page).
Importing any of them but `ui` leaves gradio unimported and the environment as it was:
build_app turns outbound lookups off, then imports gradio.
"""
