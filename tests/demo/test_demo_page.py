"""``cliplens demo`` in a real headless Chromium (Playwright driving Debian's ``chromium``): the page loads on
127.0.0.1, an uploaded image and a typed text give the figure of maps with its notes, no console errors, no
request leaves localhost. Prints the time to the first map on the toy backbone (README, "Interactive demo")."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from cliplens.demo.figures import DEFAULT_EXPLAINERS, example_scenes

#: .ci/run sets this (and installs the demo extra): there the browser and Gradio must be present
REQUIRED = os.environ.get("CLIPLENS_BROWSER_TESTS") == "required"
CHROMIUM = os.environ.get("CLIPLENS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
#: where the screenshot and timings are copied when set (as tests/benchmarks/test_html_report.py does)
ARTEFACTS = os.environ.get("CLIPLENS_SCREENSHOT_DIR")


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (CLIPLENS_BROWSER_TESTS=required; .ci/run installs chromium, playwright and gradio)")
    pytest.skip(f"{reason}; set CLIPLENS_BROWSER_TESTS=required to make this a failure")


def test_the_demo_page_in_a_real_browser(tmp_path):
    import importlib.util

    for module, what in (("gradio", "Gradio (pip install 'cliplens[demo]')"), ("playwright", "Python playwright")):
        if importlib.util.find_spec(module) is None:
            _unavailable(f"{what} is not installed")
    if not Path(CHROMIUM).is_file():
        _unavailable(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    from cliplens.demo.ui import launch

    photo, texts = example_scenes(tmp_path / "upload", count=1)[0]
    text = texts.split("\n")[0]
    started = time.perf_counter()
    app, url = launch(port=None, block=False)
    served = time.perf_counter() - started
    errors: list[str] = []
    outside: list[str] = []
    try:
        assert urlparse(url).hostname == "127.0.0.1"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r):
                if urlparse(r.request.url).hostname in ("127.0.0.1", "localhost") or r.request.url.startswith(
                    ("data:", "blob:")
                ):
                    return r.continue_()
                outside.append(r.request.url)
                return r.abort()

            page.route("**/*", route)
            page.goto(url)
            page.wait_for_selector("#explain", timeout=60_000)
            loaded = time.perf_counter() - started
            page.locator("#image input[type=file]").set_input_files(str(photo))
            page.wait_for_selector("#image img", timeout=30_000)
            page.locator("#texts textarea").fill(text)
            clicked = time.perf_counter()
            page.click("#explain")
            page.wait_for_selector("#maps img", timeout=120_000)
            first_map = time.perf_counter() - clicked
            notes = page.locator("#notes").inner_text()
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            box = page.locator("#maps img").bounding_box()
            browser.close()
    finally:
        app.close()
    assert f"{len(DEFAULT_EXPLAINERS)} explainers × 1 text on toy in " in notes, notes
    assert box and box["width"] > 200 and box["height"] > 100
    assert not errors, errors
    assert not outside, f"the page asked for {outside}"
    timings = {"served_s": served, "page_loaded_s": loaded, "click_to_first_map_s": first_map}
    print(f"demo on toy ({len(DEFAULT_EXPLAINERS)} explainers, 1 text): " + json.dumps(timings))
    if ARTEFACTS:
        target = Path(ARTEFACTS)
        target.mkdir(parents=True, exist_ok=True)
        (target / "demo.png").write_bytes((tmp_path / "demo.png").read_bytes())
        (target / "demo-timings.json").write_text(json.dumps(timings, indent=2))


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_space_app_serves_the_page(tmp_path):
    """docs/space/app.py as a Space runs it (``python app.py``, host and port from GRADIO_SERVER_*)."""
    import importlib.util
    import subprocess
    import sys
    import urllib.request

    if importlib.util.find_spec("gradio") is None:
        _unavailable("Gradio (pip install 'cliplens[demo]') is not installed")
    root = Path(__file__).resolve().parents[2]
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(root), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    server = subprocess.Popen(
        [sys.executable, str(root / "docs" / "space" / "app.py")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 120
        page = None
        while page is None and time.time() < deadline and server.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None, server.stdout.read() if server.poll() is not None else "no answer in 120 s"
        assert "<title>cliplens demo</title>" in page or "cliplens demo" in page
    finally:
        server.kill()
        server.wait(timeout=30)
