"""``cliplens report`` writes a self-contained index.html; checked in a real headless Chromium (Playwright
driving Debian's ``chromium``): no console errors, no network, the leaderboard sorts, switching class
changes the image, the threshold slider changes the binarised mask; a screenshot is written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cliplens.cli.main import main

#: .ci/run sets this: there the browser must be present and the test may not skip
REQUIRED = os.environ.get("CLIPLENS_BROWSER_TESTS") == "required"
CHROMIUM = os.environ.get("CLIPLENS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (CLIPLENS_BROWSER_TESTS=required; .ci/run installs chromium and playwright)")
    pytest.skip(f"{reason}; set CLIPLENS_BROWSER_TESTS=required to make this a failure")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    assert (
        main(
            [
                "bench",
                "-e",
                "raw_similarity",
                "clip_surgery",
                "lexical",
                "--limit",
                "6",
                "-o",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["report", str(run)]) == 0
    return run


def test_index_is_self_contained(report):
    text = (report / "index.html").read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<link" not in text and ' src="http' not in text
    assert "data:image/png;base64," in text


def test_the_page_in_a_real_browser(report, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Python playwright is not installed")
    if not Path(CHROMIUM).is_file():
        _unavailable(f"no Chromium at {CHROMIUM}")
    results = [json.loads(p.read_text()) for p in sorted(report.glob("*.json"))]
    by_miou = [r["explainer"]["name"] for r in sorted(results, key=lambda r: -r["scores"]["miou"])]
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        def route(r):
            if r.request.url.startswith(("file:", "data:")):
                return r.continue_()
            requests.append(r.request.url)
            return r.abort()

        page.route("**/*", route)
        page.goto((report / "index.html").as_uri())
        page.wait_for_selector("#browser-0[data-rendered]")
        rows = lambda: page.locator("#leaderboard-0 tbody tr td:first-child .name").all_inner_texts()  # noqa: E731
        assert rows() == by_miou  # sorted by the first metric, best first
        marks = dict(zip(rows(), page.locator("#leaderboard-0 tbody tr td:first-child").all_inner_texts(), strict=True))
        assert marks["clip_surgery"].startswith("clip_surgery†")  # its own protocol, as in leaderboard.md
        assert marks["raw_similarity"] == "raw_similarity"
        notes = page.locator("#notes-0 li").all_inner_texts()
        assert any(n.startswith("† scored under another protocol") for n in notes), notes
        assert any(n.startswith("6 images scored") for n in notes) and any("Harness overhead" in n for n in notes)
        flat = [r for r in results if (r.get("constant_maps") or {}).get("count")]
        for r in flat:  # constant maps: marked and explained
            name = r["explainer"]["name"]
            assert "∅" in marks[name] and any(n.startswith(f"∅ {name}:") for n in notes), (marks, notes)
        page.click("#leaderboard-0 th[data-key=explainer]")
        assert rows() == sorted(by_miou)
        page.click("#leaderboard-0 th[data-key=explainer]")
        assert rows() == sorted(by_miou, reverse=True)
        page.click("#leaderboard-0 th[data-key=miou]")
        assert rows() == by_miou
        assert page.locator("#per-class-metric-0 option").count() >= 1
        assert page.locator(".per-class tr").count() > 2

        def shot() -> list[str]:
            return page.evaluate("() => [...document.querySelectorAll('#browser-0 canvas')].map(c => c.toDataURL())")

        before = shot()
        assert page.locator("#class-0 option").count() >= 2
        rendered = page.get_attribute("#browser-0", "data-rendered")
        page.select_option("#class-0", index=1)
        page.wait_for_function(
            "(old) => document.querySelector('#browser-0').dataset.rendered !== old", arg=rendered
        )  # a function, not a string: the page's CSP forbids eval
        after = shot()
        assert after[1] != before[1]  # the ground truth of the other class
        rendered = page.get_attribute("#browser-0", "data-rendered")
        page.eval_on_selector("#threshold-0", "e => { e.value = '0.9'; e.dispatchEvent(new Event('input')); }")
        page.wait_for_function(
            "(old) => document.querySelector('#browser-0').dataset.rendered !== old", arg=rendered
        )  # a function, not a string: the page's CSP forbids eval
        thresholded = shot()
        assert thresholded[0] == after[0] and thresholded[3] != after[3]  # image same, binarised mask changed
        target = tmp_path / "index.png"
        page.screenshot(path=str(target), full_page=True)
        browser.close()
    assert not errors, errors
    assert not requests, f"the page asked the network for {requests}"
    assert target.stat().st_size > 10_000
    if os.environ.get("CLIPLENS_SCREENSHOT_DIR"):
        shutil.copy(target, Path(os.environ["CLIPLENS_SCREENSHOT_DIR"]) / "index.png")
