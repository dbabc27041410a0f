"""Assembling and serving the demo: the page, the start-up job, the queue, and the
limits that keep one heavy or hostile request from taking the server down.

    from plume_lite.apps.demo.server import build_app, launch
    demo = build_app("ckpt/", corpus_items=[{"text": "a red circle"}], cache_dir="tmp/")
    launch(demo, port=7860)

gradio is imported by build_app, after it has turned every outbound lookup off, so
importing this module costs nothing and changes nothing.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from plume_lite.errors import PlumeError
from plume_lite.runtime import apply_env

if TYPE_CHECKING:
    import gradio as gr

MAX_FILE_SIZE = "25mb"  # uploads above this are refused by gradio before any decoding
QUEUE_SIZE = 64  # waiting requests beyond this are told to come back later
CONCURRENCY = 2  # events served at once (model calls still run one at a time)
QUERY_TIMEOUT_S = 60.0  # a search that takes longer ends in an error message
CSS = """
#status {min-height: 1.5em}
#results .caption-label {font-size: 0.8em}
"""


def refuse_downloads() -> None:
    """Make the gradio server fetch no URL. gradio downloads the http(s) URL that a
    request puts in a file field (`{"path": "https://..."}`, or gradio_client's
    handle_file(url)), and GET /gradio_api/file=<url> streams any public URL back: an
    open proxy. Both fetch through safehttpx, which lets hf.co and huggingface.co
    through unchecked, checks that other hosts resolve to a public address, and asks
    dns.google about those that do not. Here every host fails that check, allow-listed
    or not, so such a request ends in an error and nothing leaves the machine.
    Process-wide: it concerns every gradio app of this process."""
    import safehttpx

    async def refuse(hostname, *args, **kwargs):
        raise ValueError(
            f"{hostname}: the demo fetches no URL; upload the file itself (outbound requests are off)"
        )

    safehttpx.async_validate_url = refuse
    safehttpx.matches_domain_whitelist = lambda hostname, domain_whitelist: False


def build_app(
    checkpoint=None,
    corpus_items=None,
    cache_dir=None,
    *,
    corpus_dir=None,
    warm=("latent",),
    prefetch=(),
    timeout_s: float = QUERY_TIMEOUT_S,
    wait: bool = False,
    log: bool = True,
    max_steps: int | None = None,
    examples: bool | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> gr.Blocks:
    """The demo as a gr.Blocks, its start-up running in the background.

    checkpoint    PlumeModel folder; None = the default checkpoint (trained on first use)
    corpus_items  list of item dicts; or corpus_dir, a data folder or a folder of files;
                  neither = the SynthMMEB test corpus
    cache_dir     embeddings, thumbnails and user-added files (default: cache_root()/demo)
    warm          modes whose corpus embeddings are ready before the page says so
    prefetch      modes embedded afterwards in the background (others: on first use)
    max_steps     the K limit (default engine.MAX_STEPS; the checkpoint's step table caps it)
    device        where the model runs: "auto"/None = CUDA when present, "cpu", "cuda:N"
    dtype         the weights' dtype: "auto"/None = bfloat16 on CUDA, as saved on the CPU
    examples      clickable SynthMMEB examples on the page; None = with the default corpus
                  only (their files are made in cache_dir/examples before the page is built)
    wait          block until ready (raises if start-up failed)
    The start-up object is `demo.plume_startup` (`.wait()`, `.engine`, `.timings`)."""
    # Forced, and before gradio is imported (it reads these at import and at launch):
    # the demo promises no outbound request, whatever the caller's environment says
    # (and refuse_downloads stops gradio fetching URLs a request names).
    apply_env(offline=True, force=True)
    if importlib.util.find_spec("gradio") is None:
        raise PlumeError("gradio is not installed: pip install 'plume_lite[demo]'")
    from plume_lite.apps.demo.engine import MAX_STEPS
    from plume_lite.apps.demo.examples import build_examples
    from plume_lite.apps.demo.startup import Startup
    from plume_lite.apps.demo.ui import build_blocks

    refuse_downloads()

    corpus = corpus_items if corpus_items is not None else corpus_dir
    startup = Startup(
        checkpoint,
        corpus,
        cache_dir,
        warm=warm,
        prefetch=prefetch,
        timeout_s=timeout_s,
        log=log,
        max_steps=max_steps,
        device=device,
        dtype=dtype,
    )
    if examples is None:
        examples = corpus is None
    shown = build_examples(startup.cache_dir / "examples") if examples else []
    demo = build_blocks(startup, shown, max_steps or MAX_STEPS)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
    startup.start()
    if wait:
        startup.wait()
    return demo


def launch(
    demo: gr.Blocks,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    max_file_size=MAX_FILE_SIZE,
    block: bool = True,
    **kwargs,
):
    """Serve `demo` (from build_app). With block=False it returns at once (tests), else
    serves until interrupted. Returns gradio's (app, local_url, share_url).

    The thumbnails and renders folders of the demo's cache are added to gradio's
    `allowed_paths`: it serves files from the working and temporary folders only, and
    a --cache-dir elsewhere would otherwise fail every search. Nothing else of the
    cache (embeddings, visitors' uploads) is served."""
    import gradio as gr

    startup = getattr(demo, "plume_startup", None)
    if startup is not None:
        thumbs = (startup.cache_dir / "thumbs").resolve()
        kwargs["allowed_paths"] = [*kwargs.get("allowed_paths", []), str(thumbs), str(startup.renders.root)]
    return demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=max_file_size,
        show_error=True,
        share=False,
        prevent_thread_lock=not block,
        footer_links=["api"],
        ssr_mode=False,
        theme=gr.themes.Soft(),
        css=CSS,
        **kwargs,
    )
