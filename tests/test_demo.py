"""The Gradio demo, served on 127.0.0.1 and driven with gradio_client: image, video,
PDF (a one-page PDF too) and text queries, every bad file of the data issue, concurrency, the
upload limit, additions that belong to the visitor's session (refused when the model
refuses them, bounded per session), bad corpus items skipped at start-up, the
embedding cache across restarts, a cache folder outside the working and temporary
folders, no URL fetched for a request, the command line's checks, and both entry
points run as subprocesses: the Space's `python app.py` and `plume-lite demo`.

One small server per module: an untrained tiny checkpoint and a ~12-item corpus. The
Space test starts the app with no arguments, settings from the environment only, as a
Space does: the shipped checkpoint, the SynthMMEB corpus (generated into $PLUME_CACHE
on its first run, reused after) and the clickable examples."""

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from plume_lite.runtime import OFFLINE_ENV, apply_env

apply_env(offline=True, force=True)  # before gradio_client (and the hub client) load

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

UPLOAD_LIMIT = "2mb"


# ----------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shape_image(path, color, shape="circle"):
    img = Image.new("RGB", (64, 64), (40, 40, 40))
    d = ImageDraw.Draw(img)
    (d.ellipse if shape == "circle" else d.rectangle)([12, 12, 52, 52], fill=color)
    img.save(path)
    return str(path)


def tiny_checkpoint(folder: Path) -> str:
    """An untrained tiny PlumeModel: enough to exercise every path in seconds."""
    import torch

    from plume_lite import PlumeModel

    if not (folder / "plume_config.json").exists():
        torch.manual_seed(0)
        PlumeModel.from_backbone("tiny").save_pretrained(folder)
    return str(folder)


def small_corpus(root: Path, media_files: dict) -> list:
    items = []
    for color in ("red", "green", "blue", "yellow"):
        for shape in ("circle", "square"):
            items.append({"image": shape_image(root / f"{color}-{shape}.png", color, shape)})
    items += [
        {"video": media_files["video"]},
        {"pdf": media_files["pdf"], "page": 0},
        {"pdf": media_files["pdf"], "page": 1},
        {"text": "a red circle on a dark background"},
    ]
    return items


def start_demo(root: Path, media_files: dict, **launch_kwargs):
    """(demo, url, corpus items): a demo server on a free loopback port, ready."""
    from plume_lite.apps.demo.server import build_app, launch

    root.mkdir(parents=True, exist_ok=True)
    items = small_corpus(root, media_files)
    demo = build_app(tiny_checkpoint(root / "ckpt"), items, root / "cache", wait=True, log=False)
    _, url, _ = launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True, **launch_kwargs)
    return demo, url, items


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (the pixels are never there)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def bad_files(root: Path, media_files: dict) -> dict:
    """name -> (path, words the error message must contain)."""
    from pypdf import PdfWriter

    root.mkdir(parents=True, exist_ok=True)
    files = {}
    empty = root / "empty.png"
    empty.write_bytes(b"")
    files["zero bytes"] = (empty, "empty")
    good = Path(media_files["video"]).read_bytes()
    cut = root / "truncated.mp4"
    cut.write_bytes(good[: len(good) // 2])
    files["truncated mp4"] = (cut, "truncated")
    noise = root / "noise.png"
    noise.write_bytes(os.urandom(4096))
    files["random bytes .png"] = (noise, "not a recognised image")
    locked = root / "locked.pdf"
    writer = PdfWriter(clone_from=media_files["pdf"])
    writer.encrypt(user_password="secret", owner_password="owner")
    with open(locked, "wb") as f:
        writer.write(f)
    files["password PDF"] = (locked, "password")
    huge = root / "huge.png"
    huge.write_bytes(png_claiming(30000, 30000))
    files["30000x30000 PNG"] = (huge, "decompression bomb")
    text = root / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    files["text named .mp4"] = (text, "video")
    return files


def search(client, path, page=1, instruction="", mode="latent", steps=4, k=5, time_all=False):
    return client.predict(
        handle_file(str(path)), page, instruction, mode, steps, k, time_all, api_name="/search"
    )


def check_result(out, k=5, steps=4, routed=True):
    gallery, heatmap, latency, rationale, details = out
    assert 0 < len(gallery) <= k
    assert all(
        Path(g["image"]).is_file() and g["caption"].startswith(f"#{i + 1} ") for i, g in enumerate(gallery)
    )
    scores = [r["score"] for r in details["results"]]
    assert scores == sorted(scores, reverse=True)
    assert Image.open(heatmap).size[0] > 100  # the heatmap (or its stand-in) is a picture
    assert "query encode (ms)" in latency
    if routed:
        gates, chosen = details["routing"]["gates"], details["routing"]["chosen"]
        assert len(gates) == steps and len(chosen) == steps
        assert all(abs(sum(row) - 1) < 1e-4 for row in gates)
    return details


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory, media_files):
    root = tmp_path_factory.mktemp("demo")
    demo, url, items = start_demo(root, media_files, max_file_size=UPLOAD_LIMIT)
    yield {"demo": demo, "url": url, "root": root, "items": items, "media": media_files}
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server["url"], verbose=False)


# ----------------------------------------------------------------------------- queries


@pytest.mark.parametrize("kind", ["image", "video", "pdf"])
def test_query_returns_gallery_and_routing(client, server, kind):
    path = server["root"] / "red-circle.png" if kind == "image" else server["media"][kind]
    page = 2 if kind == "pdf" else 1
    instruction = "" if kind == "image" else "find the matching item"
    details = check_result(search(client, path, page=page, instruction=instruction))
    if kind == "image":  # the query is itself in the corpus: it must come first
        assert details["results"][0]["corpus_index"] == 0
        assert details["results"][0]["score"] > 0.999


def test_text_query_alone_and_as_a_question_about_an_upload(client, server):
    def search_text(text, path=None):
        out = client.predict(
            handle_file(str(path)) if path else None, 1, "", "latent", 4, 5, False, text, api_name="/search"
        )
        return check_result(out)

    top = search_text("a red circle on a dark background")["results"][0]
    assert (top["kind"], top["score"]) == ("text", pytest.approx(1.0, abs=1e-3))  # itself, in the corpus
    image = server["root"] / "red-circle.png"
    alone, asked = check_result(search(client, image)), search_text("which colour is it?", image)
    assert alone["results"][0]["score"] > 0.999  # the image alone is itself
    scores = [[r["score"] for r in d["results"]] for d in (alone, asked)]
    assert scores[0] != scores[1]  # with a question it is another query
    with pytest.raises(Exception, match="or type a text query"):
        search_text("   ")


def test_pdf_preview_and_page_picker(client, server):
    preview, _, info = client.predict(handle_file(server["media"]["pdf"]), api_name="/preview")
    assert "2 pages" in info and Image.open(preview).size[0] >= 64
    page2, _, _ = client.predict(handle_file(server["media"]["pdf"]), 2, api_name="/preview_page")
    assert Image.open(page2).tobytes() != Image.open(preview).tobytes()
    with pytest.raises(Exception, match="greater than maximum"):  # the picker's own bound
        search(client, server["media"]["pdf"], page=3)
    with pytest.raises(Exception, match="page 3 is out of range; the document has 2 pages"):
        search(Client(server["url"], verbose=False), server["media"]["pdf"], page=3)


def test_one_page_pdf_preview_and_search(client, server):
    """gradio refuses a slider whose minimum equals its maximum: a 1-page PDF hides it."""
    one = server["root"] / "one-page.pdf"
    Image.new("RGB", (64, 80), (30, 160, 90)).save(one, "PDF", resolution=72)
    preview, page, info = client.predict(handle_file(str(one)), api_name="/preview")
    assert info == "PDF, 1 page" and Image.open(preview).size[0] >= 64
    assert page["visible"] is False and page["minimum"] < page["maximum"]  # hidden, and valid
    again, _, _ = client.predict(handle_file(str(one)), 1, api_name="/preview_page")
    assert Image.open(again).size == Image.open(preview).size
    check_result(search(client, one, page=1))
    with pytest.raises(Exception, match="page 2 is out of range; the document has 1 page"):
        search(client, one, page=2)
    check_result(search(client, server["media"]["pdf"], page=2))  # a 2-page PDF after it


def test_modes_latency_and_rationale(client, server):
    image = server["root"] / "blue-square.png"
    direct = search(client, image, mode="direct", time_all=True)
    check_result(direct, routed=False)
    assert direct[4]["routing"] is None and direct[3] == ""
    assert set(direct[4]["latency_ms"]) == {"latent", "direct", "explicit"}
    explicit = search(client, image, mode="explicit")
    check_result(explicit, routed=False)
    assert explicit[3] and explicit[4]["generated_tokens"] > 0  # the written rationale
    check_result(search(client, image, mode="latent", steps=2), steps=2)
    no_steps = search(client, image, mode="latent", steps=0)
    assert check_result(no_steps, routed=False)["routing"] is None  # K = 0: nothing routed


# ----------------------------------------------------------------------------- robustness


def test_bad_files_give_a_message_and_the_app_keeps_serving(client, server):
    good = server["root"] / "green-circle.png"
    for name, (path, words) in bad_files(server["root"] / "bad", server["media"]).items():
        start = time.monotonic()
        with pytest.raises(Exception) as err:
            search(client, path)
        assert words in str(err.value), f"{name}: {err.value}"
        assert path.name in str(err.value), f"{name}: the message should name the file"
        assert time.monotonic() - start < 20, name
        check_result(search(client, good))  # and the next query still works


def test_unsupported_type_and_bad_settings(client, server):
    odd = server["root"] / "table.csv"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(Exception):  # noqa: B017  (gradio_client re-raises the app's error)
        search(client, odd)
    good = server["root"] / "green-circle.png"
    with pytest.raises(Exception, match="instruction"):
        search(client, good, instruction="x" * 600)
    check_result(search(client, good))


def test_upload_over_the_size_limit_is_refused(client, server):
    big = server["root"] / "big.png"
    big.write_bytes(os.urandom(3 * 1024 * 1024))  # over the 2 MB limit of this server
    with pytest.raises(Exception):  # noqa: B017  (refused by gradio before the app runs)
        search(client, big)
    check_result(search(client, server["root"] / "green-circle.png"))


def test_ten_concurrent_queries_all_complete(server):
    images = [
        server["root"] / f"{c}-{s}.png"
        for c in ("red", "green", "blue", "yellow")
        for s in ("circle", "square")
    ]
    results, errors = [None] * 10, []

    def one(i):
        try:
            results[i] = search(Client(server["url"], verbose=False), images[i % len(images)])
        except Exception as e:  # collected: a thread's exception would be lost
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i, out in enumerate(results):
        details = check_result(out)
        assert details["results"][0]["corpus_index"] == i % len(images)


def test_deadline_turns_a_stuck_request_into_an_error(server):
    from plume_lite.apps.demo.engine import Busy

    engine = server["demo"].plume_startup.engine
    with pytest.raises(Busy, match="did not finish"):
        engine.bounded(time.sleep, 2, timeout_s=0.2)


# ----------------------------------------------------------------------------- corpus


def add(client, files=(), text=""):
    return client.predict([handle_file(str(f)) for f in files], text, api_name="/add_to_corpus")


def test_additions_belong_to_the_session_and_the_cache_survives_restarts(server, tmp_path):
    from plume_lite.apps.demo.startup import Startup

    mine, other = Client(server["url"], verbose=False), Client(server["url"], verbose=False)
    new = shape_image(tmp_path / "purple-circle.png", "purple")
    msg = add(mine, [new], "a purple circle")
    assert "Added 2 items to your session" in msg and "2/64 items" in msg
    top = check_result(search(mine, new))["results"][0]
    assert top["score"] > 0.999 and top["source"] == "session"  # the added file is found first
    theirs = check_result(search(other, new))["results"]
    assert all(r["source"] == "corpus" for r in theirs)  # another visitor never sees it
    engine = server["demo"].plume_startup.engine
    n = len(engine.items)
    assert n == len(server["items"])  # the shared corpus did not grow
    # a restart on the same cache folder: the same corpus, nothing embedded again, no addition
    again = Startup(
        engine.checkpoint_path, server["items"], server["root"] / "cache", prefetch=("direct",), log=False
    )
    again.run()
    fresh = again.require()
    assert len(fresh.items) == n
    assert fresh.indexes[("latent", 8)].cache.n_encoded == 0
    assert fresh.ready_settings()[("direct", None)] == (n, n)  # the background prefetch


def test_a_refused_addition_is_never_stored_and_search_goes_on(server, tmp_path):
    """The items that made every later search fail: a special-token text (now escaped
    at encode: it is text) and an image of extreme aspect ratio (refused at once)."""
    c = Client(server["url"], verbose=False)
    wide = tmp_path / "wide.png"
    Image.new("RGB", (5000, 10), (200, 30, 30)).save(wide)
    with pytest.raises(Exception, match=r"wide.png: image is 5000x10, more than 200:1"):
        add(c, [wide])
    msg = add(
        c, [wide, shape_image(tmp_path / "ok.png", "orange")], "what is <|image_pad|><|image_pad|> this"
    )
    assert "Added 2 items" in msg  # the two good ones; the wide one is reported and left out
    with pytest.raises(Exception, match=r"wide.png: image is 5000x10"):  # as a query too
        search(c, wide)
    details = check_result(search(c, server["root"] / "red-circle.png", k=24), k=24)
    assert {"what is <|image_pad|><|image_pad|> this"} <= {r["text"] for r in details["results"]}
    assert not any("wide" in str(it) for it in server["demo"].plume_startup.engine.items)
    check_result(search(Client(server["url"], verbose=False), server["root"] / "red-circle.png"))


def test_additions_are_bounded_per_session_and_linear(server):
    from plume_lite.apps.demo.corpus import MAX_ADD_TEXT_CHARS, MAX_SESSION_ITEMS

    c = Client(server["url"], verbose=False)
    # 30k lines: over the text box's size; 20k short ones: over the session's item count
    for text in ("\n".join(f"line {i}" for i in range(30_000)), "\n".join(f"{i:x}" for i in range(20_000))):
        start = time.monotonic()
        with pytest.raises(Exception, match="at most"):
            add(c, text=text)
        assert time.monotonic() - start < 10
    with pytest.raises(Exception, match=f"at most {MAX_ADD_TEXT_CHARS:,}"):
        add(c, text="word " * 200_000)  # one line of a megabyte
    start = time.monotonic()
    msg = add(c, text="\n".join(f"caption number {i}" for i in range(MAX_SESSION_ITEMS - 1)))
    took = time.monotonic() - start
    assert f"{MAX_SESSION_ITEMS - 1}/{MAX_SESSION_ITEMS} items" in msg
    with pytest.raises(Exception, match=f"at most {MAX_SESSION_ITEMS} added items"):
        add(c, text="one more\ntwo more")
    assert "Added 1 item" in add(c, text="caption number 0\nthe last one")  # repeats are not counted
    print(f"\nadding {MAX_SESSION_ITEMS - 1} text lines to a session: {took:.1f} s")
    assert len(server["demo"].plume_startup.engine.items) == len(server["items"])


def test_session_limits_on_files_and_the_server_quota(tmp_path, monkeypatch):
    from plume_lite.apps.demo import corpus

    monkeypatch.setattr(corpus, "MAX_SESSION_BYTES", 3000)
    quota = corpus.DiskQuota(limit=7000)  # two of the pictures below, not three
    one, two = corpus.SessionCorpus(tmp_path / "one", quota), corpus.SessionCorpus(tmp_path / "two", quota)
    pictures = []
    for i in range(3):
        pictures.append(tmp_path / f"noise{i}.png")
        Image.frombytes("RGB", (30, 30), os.urandom(2700)).save(pictures[-1])  # ~2.7 kB each
    items, copy = one.file(pictures[0])
    assert one.add(items) == items and copy.is_file() and copy.name == "noise0.png"
    with pytest.raises(corpus.LimitError, match="a session holds at most 2.9 kB"):
        one.file(pictures[1])  # over this session's bytes
    two.add(two.file(pictures[1])[0])
    with pytest.raises(corpus.LimitError, match="space for added files is full"):
        corpus.SessionCorpus(tmp_path / "three", quota).file(pictures[2])  # over the server's
    one.close()
    assert not (tmp_path / "one").exists() and quota.used == two.bytes
    assert corpus.SessionCorpus(tmp_path / "four", quota).file(pictures[2])[0]


def test_bad_corpus_files_and_stored_additions_are_skipped_at_start_up(server, tmp_path):
    import json

    from plume_lite.apps.demo.startup import Startup

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shape_image(corpus / "good.png", "red")
    Image.new("RGB", (10, 5000)).save(corpus / "tall.png")  # readable; the model refuses it
    (corpus / "tokens.txt").write_text("<|image_pad|> and <|im_end|> in a caption\nplain words\n")
    cache = tmp_path / "cache"
    stored = cache / "user_corpus"  # the shared additions of an earlier version
    (stored / "files").mkdir(parents=True)
    Image.new("RGB", (6000, 10)).save(stored / "files" / "abc-wide.png")
    entries = [{"kind": "image", "file": "abc-wide.png"}, {"text": "<|image_pad|>"}, {"kind": 3}]
    (stored / "manifest.json").write_text(json.dumps({"entries": entries}))
    checkpoint = server["demo"].plume_startup.engine.checkpoint_path
    for _ in range(2):  # and the next start too
        s = Startup(checkpoint, corpus, cache, warm=("latent", "direct"), log=False)
        s.run()
        engine = s.require()
        assert engine.corpus_size == 4  # good.png, the two lines, the stored text
        assert sorted(r.split(":")[0] for r in engine.rejected.values()) == ["abc-wide.png", "tall.png"]
        assert s.skipped_count() == 3  # and the damaged entry
        q = {"image": str(corpus / "good.png")}
        hits = engine.search(q, "latent", 4, k=8).hits
        assert hits[0].score > 0.999 and len(hits) == 4


def test_cache_dir_outside_the_working_and_temporary_folders(server, tmp_path):
    """gradio serves files from the working and temporary folders only: the thumbnails
    folder of a cache elsewhere is passed to its allowed_paths."""
    import tempfile

    home = Path.home() / f".plume-demo-test-{os.getpid()}"
    for other in (Path.cwd(), Path(tempfile.gettempdir())):
        assert not home.resolve().is_relative_to(other.resolve())
    from plume_lite.apps.demo.server import build_app, launch

    items = [{"image": shape_image(tmp_path / "a.png", "red")}, {"text": "a red circle"}]
    checkpoint = server["demo"].plume_startup.engine.checkpoint_path
    demo = build_app(checkpoint, items, home / "cache", wait=True, log=False)
    try:
        _, url, _ = launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
        out = search(Client(url, verbose=False), tmp_path / "a.png", k=2)
        assert check_result(out, k=2)["results"][0]["score"] > 0.999
        assert any((home / "cache" / "thumbs").iterdir())
    finally:
        demo.close()
        import shutil

        shutil.rmtree(home, ignore_errors=True)


class CountingServer:
    """An HTTP server on 127.0.0.1 that counts the requests it gets (and serves a PNG)."""

    def __init__(self, png: bytes):
        import http.server

        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_no_url_is_fetched_for_a_request(client, server, monkeypatch):
    """gradio fetches the URL a file field carries, and GET /gradio_api/file=<url>, for
    hosts its check allows (public ones; for others it asks dns.google). The demo makes
    every host fail that check. Loopback only: the check is shown to be the only thing
    in the way by letting 127.0.0.1 through, which makes gradio fetch it."""
    import httpx
    import safehttpx

    import plume_lite.apps.demo.server as demo_server

    png = (server["root"] / "red-circle.png").read_bytes()
    target = CountingServer(png)
    try:
        url = f"{target.url}/picture.png"
        for api in ("/search", "/preview"):
            args = (1, "", "latent", 4, 5, False) if api == "/search" else ()
            with pytest.raises(Exception, match="the demo fetches no URL"):
                client.predict(handle_file(url), *args, api_name=api)
        with pytest.raises(Exception, match="the demo fetches no URL"):
            client.predict([handle_file(url)], "", api_name="/add_to_corpus")
        served = httpx.get(f"{server['url']}gradio_api/file={url}", timeout=30)
        assert served.status_code == 403 and target.hits == []
        check_result(search(client, server["root"] / "red-circle.png"))
        # what gradio does without the demo's refusal, for a host its check lets through

        async def as_if_public(host, *args):
            if host != "127.0.0.1":
                raise ValueError(f"{host}: not in this test")
            return host

        monkeypatch.setattr(safehttpx, "async_validate_url", as_if_public)
        served = httpx.get(f"{server['url']}gradio_api/file={url}", timeout=30)
        assert served.status_code == 200 and served.content == png and target.hits == ["/picture.png"]
        out = client.predict(handle_file(url), 1, "", "latent", 4, 5, False, api_name="/search")
        assert check_result(out)["results"][0]["score"] > 0.999 and len(target.hits) == 2
    finally:
        target.close()
        monkeypatch.undo()
        demo_server.refuse_downloads()


# ----------------------------------------------------------------------------- K limit


class StubModel:
    """What DemoEngine reads from a model when it is built: config, device, parameters."""

    def __init__(self, step_table_size):
        import torch

        from plume_lite.config import PlumeConfig

        self.config = PlumeConfig(latent_steps=2, step_table_size=step_table_size)
        self.device = torch.device("cpu")

    def eval(self):
        return self

    def parameters(self):
        return iter(())


def test_k_limit_comes_from_the_model_capped_by_the_demo(server, tmp_path):
    from plume_lite.apps.demo.engine import MAX_STEPS, DemoEngine

    engine = server["demo"].plume_startup.engine
    assert engine.max_steps == min(MAX_STEPS, engine.model.config.step_table_size)
    with pytest.raises(ValueError, match=f"between 0 and {engine.max_steps}"):
        engine.setting("latent", engine.max_steps + 1)
    small = DemoEngine(StubModel(step_table_size=4), [], tmp_path)
    assert small.max_steps == 4 and small.setting("latent", 4) == ("latent", 4)
    with pytest.raises(ValueError, match="between 0 and 4"):
        small.setting("latent", 5)
    # --max-k / PLUME_MAX_K: above the demo's default cap, and below the model's K
    assert DemoEngine(StubModel(step_table_size=32), [], tmp_path, max_steps=24).max_steps == 24
    low = DemoEngine(StubModel(step_table_size=32), [], tmp_path, max_steps=1)
    assert (low.max_steps, low.default_steps, low.setting("latent", None)) == (1, 1, ("latent", 1))


# ----------------------------------------------------------------------------- entry points


def _clean_env(**extra) -> dict:
    """os.environ without the offline settings (the demo must set them itself)."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV}
    return {**env, **extra}


def test_offline_environment_is_forced_by_build_app_not_by_imports(tmp_path):
    """In a clean interpreter: importing the demo (and building the CLI parser) imports
    no gradio and changes no environment; build_app forces the offline settings before
    gradio loads, even over a user's opposite values."""
    code = f"""
import json, os, sys
before = dict(os.environ)
import plume_lite.apps.demo, plume_lite.apps.demo.cli, plume_lite.apps.demo.server
import plume_lite.apps.demo.startup, plume_lite.apps.demo.engine, plume_lite.apps.demo.corpus
from plume_lite.apps.cli import build_parser
build_parser()
imported = "gradio" in sys.modules
changed = {{k: v for k, v in os.environ.items() if before.get(k) != v}}
from plume_lite.apps.demo.server import build_app
build_app({str(tmp_path / "no-checkpoint")!r}, corpus_items=[{{"text": "x"}}],
          cache_dir={str(tmp_path / "cache")!r}, log=False)
import gradio.analytics, huggingface_hub.constants
print(json.dumps([imported, changed, gradio.analytics.analytics_enabled(),
                  huggingface_hub.constants.HF_HUB_OFFLINE,
                  huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY]))
"""
    env = _clean_env(HF_HUB_OFFLINE="0", GRADIO_ANALYTICS_ENABLED="True")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, {}, False, True, True]


def test_command_line_numbers_are_checked(capsys):
    from plume_lite.apps import cli

    parser = cli.build_parser()
    for bad, words in [
        (["--max-file-size", "abc"], "expected a size such as 25mb"),
        (["--max-file-size", "0mb"], "expected a size such as 25mb"),
        (["--port", "abc"], "expected an integer"),
        (["--port", "70000"], "at most 65535"),
        (["--port", "0"], "must be >= 1"),
        (["--warm", "latnet"], "unknown mode 'latnet'"),
        (["--prefetch", "direct,sideways"], "unknown mode 'sideways'"),
    ]:
        with pytest.raises(SystemExit) as exit:
            parser.parse_args(["demo", *bad])
        assert exit.value.code == 2 and words in capsys.readouterr().err, bad
    args = parser.parse_args(["demo", "--max-file-size", "5mb", "--warm", "direct", "--prefetch", ""])
    assert (args.max_file_size, args.warm, args.prefetch) == ("5mb", ("direct",), ())


def test_entry_points_are_the_package():
    """`plume-lite demo` and app.py run plume_lite.apps.demo.cli: one argument
    definition, no file found by path, no sys.path edit."""
    from plume_lite.apps import cli
    from plume_lite.apps.demo import cli as demo_cli

    args = cli.build_parser().parse_args(
        ["demo", "--checkpoint", "ck", "--corpus", "c", "--host", "0.0.0.0", "--port", "7999"]
    )
    assert (args.checkpoint, args.corpus, args.host, args.port) == ("ck", "c", "0.0.0.0", 7999)
    assert args.func is demo_cli.run
    app = (ROOT / "demo_app" / "app.py").read_text()
    assert "from plume_lite.apps.demo.cli import main" in app
    for path in [ROOT / "demo_app" / "app.py", *sorted((ROOT / "plume_lite" / "apps" / "demo").glob("*.py"))]:
        text = path.read_text()
        assert "sys.path" not in text and "spec_from_file_location" not in text, path


@contextlib.contextmanager
def serving(cmd, cwd, env, port, ready_timeout):
    """Run a demo command and yield {"url", "status"} once its page says Ready; on
    exit stop it and add its output as "log"."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    run = {"url": f"http://127.0.0.1:{port}/", "status": "", "started": time.monotonic()}
    try:
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline and not any(w in run["status"] for w in ("Ready", "failed")):
            time.sleep(1)
            try:
                run["status"] = Client(run["url"], verbose=False).predict(api_name="/status")[0]
            except Exception:  # not listening yet
                if proc.poll() is not None:
                    raise AssertionError(f"the demo exited: {proc.stdout.read()}") from None
        assert "Ready" in run["status"], run["status"]
        yield run
    finally:
        proc.terminate()
        run["log"] = proc.communicate(timeout=30)[0]


def test_space_entry_point_python_app_py_answers_a_query(media_files):
    """`python app.py` in the Space folder, no arguments, no offline variables: host
    and port from the variables a Space sets, the checkpoint and the K limit from the
    demo's (the shipped checkpoint), the default corpus. A visitor's first page: the
    tiny model's note, the examples; a click on one (fill the inputs, then search, as
    the page chains them), a typed text, and an upload are answered."""
    from plume_lite.apps.defaults import shipped_checkpoint

    port = free_port()
    env = _clean_env(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        PLUME_CHECKPOINT=str(shipped_checkpoint("latent")),
        PLUME_MAX_K="12",
    )
    with serving([sys.executable, "app.py"], ROOT / "demo_app", env, port, ready_timeout=1200) as run:
        client = Client(run["url"], verbose=False)
        assert "(up to 12)" in run["status"], run["status"]
        props = {c["props"].get("elem_id"): c["props"] for c in client.config["components"]}
        assert "trained only on SynthMMEB" in props["model-note"]["value"]
        labels = props["examples"]["sample_labels"]
        clicked = {}
        for kind in ("image", "text"):  # the first example of each kind
            index = next(i for i, label in enumerate(labels) if label.startswith(kind))
            file, text, instruction = (u["value"] for u in client.predict(index, api_name="/load_example"))
            assert (file is None) == (kind == "text") and instruction
            out = client.predict(
                handle_file(file) if file else None,
                1,
                instruction,
                "latent",
                8,
                5,
                False,
                text,
                api_name="/search",
            )
            clicked[kind] = check_result(out, steps=8)
            if kind == "image":
                first_answer_s = time.monotonic() - run["started"]
        typed = client.predict(None, 1, "", "latent", 8, 5, False, "a red circle", api_name="/search")
        check_result(typed, steps=8)
        check_result(search(client, media_files["image"], steps=8), steps=8)
    ready = [line for line in run["log"].splitlines() if "Ready in" in line]
    print(f"\nSpace start, `python app.py` to the first answered example: {first_answer_s:.1f} s; {ready}")
    assert "Traceback" not in run["log"], run["log"]


def test_plume_lite_demo_serves_a_folder_corpus(server, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shape_image(corpus / "a.png", "red")
    shape_image(corpus / "b.png", "blue", "square")
    (corpus / "captions.txt").write_text("a red circle\na blue square\n")
    (corpus / "broken.png").write_bytes(b"not a png")  # skipped, reported in the log
    port = free_port()
    script = Path(sys.executable).parent / "plume-lite"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "plume_lite"]
    cmd = command + [
        "demo",
        "--checkpoint",
        server["demo"].plume_startup.engine.checkpoint_path,
        "--corpus",
        str(corpus),
        "--port",
        str(port),
        "--warm",
        "latent",
    ]
    env = dict(os.environ, PLUME_CACHE=str(tmp_path / "cache"))
    with serving(cmd, tmp_path, env, port, ready_timeout=120) as run:
        assert "Ready:** 4 corpus items" in run["status"], run["status"]
        out = search(Client(run["url"], verbose=False), corpus / "a.png", k=4)
        assert check_result(out, k=4)["results"][0]["score"] > 0.999
    assert "broken.png" in run["log"]
