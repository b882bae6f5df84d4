"""``higen web`` in a real browser: type a prompt, generate, see the video play; see a bad input's error.

Needs Debian's ``chromium`` and Playwright's Python package (``.ci/run`` installs both); skipped without
them. Playwright's own browser downloads are not used: the system Chromium is launched by path.
"""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from support import save_tiny_model

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("needs chromium (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``higen web`` on a free localhost port with the tiny model: (url, output folder)."""
    folder = tmp_path_factory.mktemp("web")
    model, outputs, port = save_tiny_model(folder / "tiny"), folder / "outputs", _free_port()
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "higen", "web", "--model", str(model), "--output-dir", str(outputs),
                             "--port", str(port), "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("higen web did not start:\n" + (folder / "server.log").read_text())
                time.sleep(0.5)
        yield url, outputs
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server[0])
        yield page
        browser.close()


def test_generate_a_video_and_see_it_play(server, page):
    page.get_by_label("Prompt", exact=True).fill("a red circle moves right")
    page.get_by_role("button", name="Generate").click()
    # The <video> element has loaded the clip: its metadata says it lasts (4 frames at 8 fps = 0.5 s).
    page.wait_for_function("() => { const v = document.querySelector('video');"
                           " return v !== null && v.readyState >= 1 && v.duration > 0; }", timeout=120_000)
    duration = page.evaluate("() => document.querySelector('video').duration")
    assert duration == pytest.approx(0.5, abs=0.15)
    assert page.evaluate("async () => { const v = document.querySelector('video'); v.muted = true; await v.play();"
                         " await new Promise(r => setTimeout(r, 300)); return v.currentTime; }") > 0
    assert len(list(server[1].glob("*.mp4"))) == 1


def test_a_bad_input_shows_its_error(page):
    page.get_by_label("Prompt", exact=True).fill("   ")
    page.get_by_role("button", name="Generate").click()
    sync_api.expect(page.get_by_text("the prompt is empty").first).to_be_visible(timeout=60_000)
