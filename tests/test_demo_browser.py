"""The demo in a real browser: Debian's Chromium, driven by Playwright's Python package
(no browser download). Upload an image, click Search, see the gallery and the heatmap;
a screenshot is saved in the test's output folder (tmp_path)."""

import os
import shutil
from pathlib import Path

import pytest
from test_demo import start_demo

CHROMIUM = "/usr/bin/chromium"
# Keep Chromium quiet offline: no background services, every host but loopback unresolvable.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); "
    f"Playwright is never allowed to download a browser",
)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def test_upload_search_shows_gallery_and_heatmap(browser, tmp_path, media_files):
    demo, url, _ = start_demo(tmp_path / "app", media_files)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        page.get_by_text("Ready:").wait_for(timeout=60_000)

        query = tmp_path / "app" / "red-circle.png"
        page.locator("#query-file input[type=file]").set_input_files(str(query))
        page.locator("#preview img").wait_for(timeout=30_000)
        page.locator("#search").click()

        gallery = page.locator("#results img")
        gallery.first.wait_for(timeout=60_000)
        heatmap = page.locator("#heatmap img")
        heatmap.wait_for(timeout=30_000)
        page.get_by_text("query encode (ms)").wait_for(timeout=30_000)
        assert gallery.count() >= 5
        assert page.get_by_text("#1 · 1.000 · image").count() >= 1  # the query itself ranks first
        box = heatmap.bounding_box()
        assert box["width"] > 150 and box["height"] > 100

        shot = tmp_path / "demo_search.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        # a bad upload: the message shows in the page
        noise = tmp_path / "noise.png"
        noise.write_bytes(os.urandom(2048))
        page.locator("#query-file button[aria-label='Clear']").click()
        page.locator("#query-file input[type=file]").set_input_files(str(noise))
        page.get_by_text("not a recognised image").first.wait_for(timeout=30_000)
        page.wait_for_timeout(500)  # let the message finish sliding in
        page.screenshot(path=str(tmp_path / "demo_bad_file.png"))

        out = os.environ.get("PLUME_SCREENSHOT_DIR")  # optional copy for humans/CI artefacts
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            for name in (shot.name, "demo_bad_file.png"):
                shutil.copy(tmp_path / name, Path(out) / name)
        assert not errors, errors
    finally:
        demo.close()


@pytest.mark.slow
def test_clicking_an_example_answers_it(browser, tmp_path):
    """The default page (shipped checkpoint, default corpus) as a Space visitor sees it:
    clicking the video example fills the inputs and shows ranked results and routing."""
    from test_demo import free_port

    from plume_lite.apps.demo.server import build_app, launch

    demo = build_app(log=False, wait=True)
    _, url, _ = launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        page.get_by_text("Ready:").wait_for(timeout=120_000)
        page.screenshot(path=str(tmp_path / "demo_first_page.png"), full_page=True)
        page.locator("#examples").get_by_text("video: a motion clip").click()
        gallery = page.locator("#results img")
        gallery.first.wait_for(timeout=120_000)
        page.get_by_text("query encode (ms)").wait_for(timeout=60_000)
        assert gallery.count() >= 5
        assert page.locator("#heatmap img").count() == 1
        page.screenshot(path=str(tmp_path / "demo_example_search.png"), full_page=True)
        assert not errors, errors
    finally:
        demo.close()
