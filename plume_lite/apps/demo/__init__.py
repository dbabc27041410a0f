"""The plume_lite Gradio demo, behind the [demo] extra: search a corpus by image, video,
PDF page or text and watch the per-step expert routing.

    plume-lite demo [--checkpoint DIR] [--corpus DIR]     # or: python demo_app/app.py
    PLUME_CHECKPOINT=DIR PLUME_MAX_K=12 python app.py     # a Space: settings by environment
    from plume_lite.apps.demo.server import build_app, launch

`cli` (arguments, `run`, the Space's `main`), `environment` (PLUME_CHECKPOINT,
PLUME_CORPUS, PLUME_MAX_K), `server` (build_app, launch: queue and limits), `startup`
(background preparation), `engine` (model, corpus indexes, search, deadlines), `corpus`
(queries, uploads and corpus items), `examples` (the page's clickable examples),
`render` (pictures), `ui` (the page).
Importing any of them but `ui` leaves gradio unimported and the environment as it was:
build_app turns outbound lookups off, then imports gradio.
"""
