"""``cliplens report`` writes a self-contained index.html; checked in a real headless Chromium (Playwright
driving Debian's ``chromium``): no console errors, no network, the leaderboard sorts, switching class
changes the image, the threshold slider changes the binarised mask; markers, notes, the common protocol, the
legend and map/binarised pairs are there; nothing scrolls sideways at 1280 or 390 px (screenshots of both)."""

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
        # the sample browser: a legend of the binarised colours, each map beside its binarised version
        legend = page.inner_text("#legend-0")
        assert all(word in legend for word in ("hit", "false positive", "missed"))
        pairs = page.locator("#browser-0 .pair")
        assert pairs.count() == len(results)
        for k in range(pairs.count()):
            tops = pairs.nth(k).locator("canvas").evaluate_all("cs => cs.map(c => c.getBoundingClientRect().top)")
            assert len(tops) == 2 and tops[0] == tops[1]  # side by side, never wrapped apart
        # the protocol: what all runs share once, each run's differences, the full card behind a disclosure
        assert page.locator("details").count() == len(results)
        assert page.locator("details").first.inner_text().strip() == "full protocol card"  # closed: the summary only
        assert page.locator("details[open]").count() == 0
        differs = page.locator(".run-protocol").all_inner_texts()
        assert any(t.startswith("clip_surgery†: differs in") for t in differs), differs
        targets = []
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (
                f"the page scrolls sideways by {overflow} px at {width} px"
            )  # wide tables scroll inside
            target = tmp_path / f"index-{width}.png"
            page.screenshot(path=str(target), full_page=True)
            targets.append(target)
        browser.close()
    assert not errors, errors
    assert not requests, f"the page asked the network for {requests}"
    for target in targets:
        assert target.stat().st_size > 10_000
        if os.environ.get("CLIPLENS_SCREENSHOT_DIR"):
            shutil.copy(target, Path(os.environ["CLIPLENS_SCREENSHOT_DIR"]) / target.name)


def test_bar_charts_order_explainers_by_score():
    from cliplens.benchmarks.report.figures import _by_score

    def result(name, value):
        return {"explainer": {"name": name}, "scores": {"miou": value}, "status": "ok"}

    results = [result("a", 0.2), result("b", 0.9), result("c", None), result("d", 0.5)]
    assert _by_score(results, "miou", True) == ["b", "d", "a", "c"]
    assert _by_score(results, "miou", False) == ["a", "d", "b", "c"]
