"""The demo's ``index.html`` in a real headless browser: no script errors, no failed loads, no broken images.

The browser is found by :func:`medgen.demo.browser.find_browser` (``scripts/get_browser.sh`` fetches one into
``.cache/browser/``); without one these tests skip, saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medgen.demo.browser import Browser, find_browser, render_check
from tests.demo_run import quick_run


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The session's quick demo run (:func:`tests.demo_run.quick_run`)."""
    return quick_run(tmp_path_factory)


@pytest.fixture(scope="module")
def browser() -> Browser:
    found = find_browser()
    if found is None:
        pytest.skip("no headless Chromium found: run `bash scripts/get_browser.sh` (or set MEDGEN_BROWSER)")
    return found


def test_render_check_catches_errors_and_broken_images(browser: Browser, tmp_path: Path) -> None:
    """The probe itself: a page with a throwing script, a missing image and a good one."""
    from PIL import Image

    Image.new("L", (4, 4), 128).save(tmp_path / "ok.png")
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><head><title>t</title></head><body><img src='ok.png'>"
                    "<img src='missing.png'><script>undefinedFunction();</script></body></html>")  # fmt: skip
    result = render_check(page, browser)
    assert result.found, result.log
    assert result.images == 2 and result.broken == ["missing.png"]
    assert any("missing.png" in e for e in result.errors) and any("undefinedFunction" in e for e in result.errors)
    assert not (tmp_path / ".page.render-check.html").exists()


@pytest.mark.slow
def test_demo_page_renders_without_errors_or_missing_images(browser: Browser, quick_demo: dict[str, Any]) -> None:
    result = render_check(Path(quick_demo["out"]) / "index.html", browser)
    assert result.found, result.log
    assert result.errors == [] and result.broken == []
    assert result.images >= 10
