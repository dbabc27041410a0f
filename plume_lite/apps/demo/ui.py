"""The page: clickable examples, a query upload with preview and page picker beside a
text query box, search settings, the ranked
gallery, the routing heatmap, per-mode latency, the explicit rationale, and a panel to
add files and texts to the corpus of the visitor's own session (a gr.State holding a
corpus.SessionCorpus: nobody else sees them, within fixed limits). Handlers turn every
user-fixable problem into gr.Error, so the message shows in the page and the server
keeps serving.

This module imports gradio: reach it through server.build_app, which turns the
outbound lookups off first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from plume_lite.apps.demo.corpus import SESSION_TTL_S, UPLOAD_EXTS, LimitError, load_query
from plume_lite.apps.demo.engine import MAX_RESULTS, MAX_STEPS, Busy, describe, run_bounded
from plume_lite.apps.demo.render import caption, message_image, thumbnail
from plume_lite.apps.demo.startup import NotReady, Startup
from plume_lite.apps.viz import routing_image
from plume_lite.config import MODES, PlumeConfig
from plume_lite.errors import PlumeError
from plume_lite.files import item_kind
from plume_lite.media import MediaError

log = logging.getLogger(__name__)
MAX_PAGE = 1000  # static bound of the page slider; the real count is checked
MAX_ADD_FILES = 32  # files per "add to corpus" click
DECODE_TIMEOUT_S = 30.0  # reading one upload (media caps bound it; this is the backstop)
DESCRIPTION = """# PLUME-lite: multimodal search with latent reasoning steps
Click an example, or upload an **image**, a **video** or a **PDF** (pick the page) and/or type
a **text**, optionally add an instruction, and search the corpus. `latent` runs K continuous
reasoning steps through a mixture of experts (the routing is drawn below), `direct` reads
one forward pass, `explicit` writes a rationale first."""
# shown when the checkpoint is of the tiny backbone (the default one)
TINY_NOTE = (
    "**What this tiny model knows:** it was trained only on SynthMMEB's flat coloured shapes, "
    "bar charts, motion clips and simple pages, so it recognises those and nothing else: a "
    "photo of a cat still gets results with high scores, because scores only rank the corpus "
    "(they do not say how good a match is)."
)


def _fail(e: Exception, name: str | None = None):
    """A gr.Error the page shows as a message; the server carries on. `name`: the
    upload the model refused, named in the message."""
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, MediaError):
        return gr.Error(str(e), title="This file cannot be used")
    if isinstance(e, LimitError):
        return gr.Error(str(e), title="Over the limit")
    if isinstance(e, (Busy, NotReady)):
        return gr.Error(str(e), title="Please wait")
    if isinstance(e, PlumeError):  # the model refuses the input (InputError)
        reason = str(e).removeprefix("item 0: ")
        return gr.Error(f"{name}: {reason}" if name else reason, title="This input cannot be used")
    if isinstance(e, ValueError):
        return gr.Error(str(e), title="Invalid setting")
    log.exception("unexpected error in the demo")
    return gr.Error(f"internal error ({type(e).__name__}: {e})", title="Something went wrong")


class Handlers:
    def __init__(self, startup: Startup):
        self.startup = startup

    def status(self):
        s = self.startup
        if s.error:
            text = f"**Start-up failed:** {s.error}"
        elif s.ready.is_set():
            e = s.engine
            text = (
                f"**Ready:** {e.corpus_size} corpus items · K = {e.default_steps} latent steps "
                f"(up to {e.max_steps}), {e.num_experts} routed experts"
            )
            if s.skipped_count():
                text += f" · {s.skipped_count()} unreadable or refused corpus items skipped (see the log)"
        else:
            text = f"**Starting:** {s.status}"
        if s.background:
            text += f" · in the background: {s.background}"
        done = s.ready.is_set() and s.background_done.is_set()
        steps = gr.Slider()
        if s.ready.is_set() and s.engine:  # the model's own K and range
            steps = gr.Slider(maximum=s.engine.max_steps, value=s.engine.default_steps)
        return text, gr.Timer(active=not done), steps

    def preview(self, path, page, reset=False):
        """The rendered query (image, video frames, or the chosen PDF page)."""
        if not path:
            return None, gr.Slider(visible=False), ""
        try:
            q = run_bounded(load_query, path, page if page else 1, timeout_s=DECODE_TIMEOUT_S)
        except Exception as e:
            raise _fail(e) from None
        if q.kind == "pdf":
            slider = gr.Slider(  # gradio wants minimum < maximum: a 1-page PDF hides it
                minimum=1,
                maximum=max(q.pages, 2),
                visible=q.pages > 1,
                label=f"PDF page (1–{q.pages})",
                **({"value": 1} if reset else {}),
            )
            return (
                self.startup.renders.save(q.preview),
                slider,
                f"PDF, {q.pages} page{'s' if q.pages != 1 else ''}",
            )
        if q.kind == "video":
            return (
                self.startup.renders.save(q.preview),
                gr.Slider(visible=False),
                "video: the 8 sampled frames",
            )
        w, h = q.item["image"].size
        return self.startup.renders.save(q.preview), gr.Slider(visible=False), f"image, {w}×{h} pixels"

    def on_upload(self, path):
        return self.preview(path, 1, reset=True)

    def search(
        self,
        path,
        page,
        instruction,
        mode,
        steps,
        k,
        time_all,
        text=None,  # None: the API's callers may leave it out
        session=None,
        progress=gr.Progress(),  # noqa: B008  (gradio's idiom)
    ):
        """Search with the upload (and the text beside it), or with the text alone."""
        try:
            engine = self.startup.require()
            query = run_bounded(
                load_query, path, page or 1, instruction, text or "", timeout_s=DECODE_TIMEOUT_S
            )
            progress(0.1, desc=f"Embedding the corpus in {mode} mode (once per setting)…")
            engine.bounded(
                engine.embed_corpus,
                mode,
                steps,
                lambda d, t: progress((d, t), desc="Embedding the corpus", unit="items"),
                timeout_s=max(engine.timeout_s, 600),
            )
            progress(0.9, desc="Searching…")
            result = engine.search(query.item, mode, steps, k, bool(time_all), session)
            if result.skipped:
                gr.Warning(
                    f"Left out of this search (your additions, refused in {mode} mode): "
                    + " · ".join(result.skipped)
                )
            return _outputs(result, engine, self.startup.renders)
        except Exception as e:
            raise _fail(e, Path(path).name if path else None) from None

    def add(self, files, texts, session=None):
        """Add files and text lines to the visitor's session: each new item is embedded
        first, and what the model refuses is reported and left out. Returns the message
        and the session (a gr.State)."""
        try:
            engine = self.startup.require()
            files = [f for f in (files or []) if f]
            if not files and not (texts or "").strip():
                raise gr.Error("choose files or type text lines to add", title="Nothing to add")
            if len(files) > MAX_ADD_FILES:
                raise gr.Error(f"add at most {MAX_ADD_FILES} files at once", title="Too many files")
            session = session or self.startup.new_session()
            new = session.texts(texts or "")  # LimitError before any other work
            session.check(items=len(new) + len(files))
            problems, copies = [], []
            try:
                for path in files:
                    try:
                        items, copy = run_bounded(session.file, path, timeout_s=DECODE_TIMEOUT_S)
                    except (MediaError, Busy) as e:
                        problems.append(str(e))
                        continue
                    copies.append(copy)
                    new += items
                session.check(items=len(new))  # PDFs count a page each
                good, refused = engine.bounded(engine.vet, new, session.caches, timeout_s=600)
                problems += [f"{describe(item)}: {why}" for item, why in refused]
                added = session.add(good)
            finally:
                session.drop_unused(copies)
        except Exception as e:
            raise _fail(e) from None
        if problems and not added:
            raise gr.Error(" · ".join(problems), title="Nothing was added")
        if problems:
            gr.Warning("Skipped: " + " · ".join(problems))
        message = (
            f"Added {len(added)} item{'s' if len(added) != 1 else ''} to your session: you search "
            f"them with the {engine.corpus_size} shared corpus items, nobody else sees them, and they "
            f"go when the session ends. Your session holds {session.usage()}."
        )
        return message, session


def _outputs(result, engine, renders):
    """gallery, heatmap, latency table, rationale and JSON details of one search; the
    pictures as files (see render.RenderFolder)."""
    # shared items: a thumbnail file drawn once; a visitor's own: drawn for this reply
    gallery = [
        (
            engine.thumbnail_path(h.item) if h.source == "corpus" else renders.save(thumbnail(h.item)),
            _caption(h),
        )
        for h in result.hits
    ]
    trace = result.trace
    if "gates" in trace:
        picture = routing_image(
            trace["gates"], trace["chosen"], "Routing trace: router probability per latent step"
        )
        routing = {"gates": trace["gates"].tolist(), "chosen": trace["chosen"].tolist()}
    else:
        picture, routing = message_image(_no_routing(result.mode, result.steps, engine)), None
    rationale = trace.get("text", "") if result.mode == "explicit" else ""
    details = {
        "mode": result.mode,
        "steps": result.steps,
        "results": [
            {
                "rank": h.rank,
                "score": round(h.score, 4),
                "source": h.source,
                "corpus_index": h.index if h.source == "corpus" else None,
                "added_index": h.index if h.source == "session" else None,
                "kind": item_kind(h.item),
                "text": h.item.get("text", ""),
            }
            for h in result.hits
        ],
        "latency_ms": {m: {k: round(v, 2) for k, v in d.items()} for m, d in result.latency.items()},
        "routing": routing,
        "rationale": rationale or None,
        "generated_tokens": trace.get("generated_tokens"),
    }
    return gallery, renders.save(picture), _latency_table(result), rationale, details


def _caption(hit):
    text = caption(hit.rank, hit.score, hit.item)
    return f"{text} · added by you" if hit.source == "session" else text


def _close_session(session) -> None:
    """gradio calls this when a session's state goes (tab closed, or idle too long)."""
    if session is not None:
        session.close()


def _no_routing(mode, steps, engine) -> str:
    if mode == "direct":
        return "direct mode: one forward pass,\nno latent steps, so no routing"
    if mode == "explicit":
        return "explicit mode writes a rationale\n(shown below) instead of latent steps"
    if steps == 0:
        return "K = 0: no latent steps, so no routing"
    return f"this checkpoint's adapter has no router\n(adapter = {engine.model.config.adapter})"


def _latency_table(result) -> str:
    rows = ["| mode | query encode (ms) | search (ms) |", "|---|---:|---:|"]
    for m in MODES:
        if m in result.latency:
            d = result.latency[m]
            search = f"{d['search_ms']:.1f}" if "search_ms" in d else "—"
            name = f"**{m}** (this search)" if m == result.mode else m
            rows.append(f"| {name} | {d['encode_ms']:.1f} | {search} |")
        else:
            rows.append(f"| {m} | not timed | — |")
    return "\n".join(rows)


def _keep_examples(examples: gr.Examples, component) -> None:
    """The example files gradio copied into its cache are kept there: the page's
    delete_cache would otherwise remove them after two hours, and the clicks with them."""
    for sample in examples.non_none_processed_examples.values():
        for value in sample:
            if isinstance(value, dict) and value.get("path"):
                component.keep_in_cache.add(value["path"])


def build_blocks(startup: Startup, examples=(), max_steps: int = MAX_STEPS) -> gr.Blocks:
    """The page. examples: examples.Example rows to click (none: no examples table);
    max_steps: the K slider's static bound (the loaded model's own limit is set on load)."""
    h = Handlers(startup)
    with gr.Blocks(title="PLUME-lite demo", delete_cache=(3600, 7200)) as demo:
        gr.Markdown(DESCRIPTION)
        if startup.tiny_model():
            gr.Markdown(TINY_NOTE, elem_id="model-note")
        session = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=_close_session)
        status = gr.Markdown("**Starting…**", label="status", elem_id="status")
        timer = gr.Timer(1.0)
        # the inputs an example fills, drawn below the examples (rendered in place there)
        query = gr.File(
            label="Query: an image, a video or a PDF",
            file_types=UPLOAD_EXTS,
            type="filepath",
            elem_id="query-file",
            scale=1,
            min_width=160,
            render=False,
        )
        text_query = gr.Textbox(
            label="…and/or a text query",
            lines=3,
            max_lines=6,
            placeholder="e.g. a red circle; or a question about the upload",
            elem_id="query-text",
            scale=1,
            min_width=160,
            render=False,
        )
        instruction = gr.Textbox(
            label="Instruction (optional)",
            max_lines=3,
            placeholder="e.g. Find the picture that matches this one",
            render=False,
        )
        shown = None
        if examples:
            shown = gr.Examples(
                examples=[e.row() for e in examples],
                inputs=[query, text_query, instruction],
                example_labels=[e.label for e in examples],
                label="Examples from SynthMMEB, the data the model was trained on: click one to search",
                cache_examples=False,  # a Space would run them all at start-up
                examples_per_page=len(examples),
                elem_id="examples",
            )
            _keep_examples(shown, query)
        with gr.Row():
            with gr.Column(scale=1, min_width=380):
                with gr.Row(equal_height=True):
                    query.render()
                    text_query.render()
                page = gr.Slider(
                    1, MAX_PAGE, value=1, step=1, label="PDF page", visible=False, elem_id="page"
                )
                preview = gr.Image(
                    label="Query preview", type="pil", interactive=False, height=260, elem_id="preview"
                )
                info = gr.Markdown("", label="query info")
                instruction.render()
                mode = gr.Radio(list(MODES), value="latent", label="Mode")
                steps = gr.Slider(
                    0,
                    max_steps,
                    value=min(PlumeConfig.latent_steps, max_steps),
                    step=1,
                    label="Latent steps K (latent mode)",
                )
                k = gr.Slider(1, MAX_RESULTS, value=8, step=1, label="Results to show")
                time_all = gr.Checkbox(True, label="Also time this query in the other two modes")
                go = gr.Button("Search", variant="primary", elem_id="search")
            with gr.Column(scale=2):
                gallery = gr.Gallery(
                    label="Top results (rank · cosine score · kind)",
                    columns=4,
                    height=420,
                    object_fit="contain",
                    elem_id="results",
                )
                with gr.Row():
                    heat = gr.Image(
                        label="Routing trace (steps × experts)",
                        show_label=False,
                        type="pil",
                        format="png",
                        interactive=False,
                        height=420,
                        elem_id="heatmap",
                        scale=3,
                    )
                    with gr.Column(scale=2):
                        latency = gr.Markdown("", label="Latency", elem_id="latency")
                        rationale = gr.Textbox(
                            label="Explicit-mode rationale",
                            lines=4,
                            interactive=False,
                            elem_id="rationale",
                            placeholder="explicit mode writes its reasoning here",
                        )
                with gr.Accordion("Result details (JSON)", open=False):
                    details = gr.JSON(label="details")
        with gr.Accordion("Add your own files to the corpus (for your session only)", open=False):
            add_files = gr.File(
                label="Images, videos or PDFs", file_count="multiple", file_types=UPLOAD_EXTS, type="filepath"
            )
            add_text = gr.Textbox(label="Text candidates, one per line", lines=3)
            add_go = gr.Button("Add to corpus")
            add_info = gr.Markdown("", label="added")

        timer.tick(
            h.status,
            outputs=[status, timer, steps],
            api_name="status_tick",
            api_visibility="private",
            queue=False,
            show_progress="hidden",
        )
        demo.load(h.status, outputs=[status, timer, steps], api_name="status", queue=False)
        query.upload(h.on_upload, inputs=query, outputs=[preview, page, info], api_name="preview")
        query.clear(
            lambda: (None, gr.Slider(visible=False), ""),
            outputs=[preview, page, info],
            api_visibility="private",
        )
        page.release(h.preview, inputs=[query, page], outputs=[preview, page, info], api_name="preview_page")
        search_inputs = [query, page, instruction, mode, steps, k, time_all, text_query, session]
        search_outputs = [gallery, heat, latency, rationale, details]
        gr.on(
            [go.click, text_query.submit],
            h.search,
            inputs=search_inputs,
            outputs=search_outputs,
            api_name="search",
            concurrency_limit=2,
            concurrency_id="model",
        )
        if shown is not None:  # a click fills the inputs, shows the preview, then searches
            shown.load_input_event.then(
                h.on_upload, inputs=query, outputs=[preview, page, info], api_visibility="private"
            ).then(
                h.search,
                inputs=search_inputs,
                outputs=search_outputs,
                api_visibility="private",
                concurrency_limit=2,
                concurrency_id="model",
            )
        add_go.click(
            h.add,
            inputs=[add_files, add_text, session],
            outputs=[add_info, session],
            api_name="add_to_corpus",
            concurrency_limit=1,
        )
    demo.plume_startup = startup
    return demo
