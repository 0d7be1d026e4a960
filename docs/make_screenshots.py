"""Screenshots of the Live training page mid-run, for the README.

    python docs/make_screenshots.py            # writes docs/live-page.png, docs/live-presenter.png,
                                               # docs/live-boundary.png

Starts the real app on a free port against a temporary run store, drives Debian's chromium with
Playwright, starts the "Adam fails at depth 32" preset and captures the page while it trains.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from agd_viz.views import live_form as live  # noqa: E402
from agd_viz.store import Store  # noqa: E402
from server import launch_chromium, running_app, wait_idle  # noqa: E402

DOCS = ROOT / "docs"


def preset_url(base: str, name: str, **extra) -> str:
    return f"{base}/?{urlencode({**live.query_from_state(live.PRESETS[name].state()), **extra})}"


def wait_progress(db: Path, fraction: float, timeout_s: float = 300.0) -> None:
    """Until every run of the store is at least `fraction` of the way (or ended)."""
    store = Store(db)
    end = time.monotonic() + timeout_s
    try:
        while time.monotonic() < end:
            runs = store.list_runs()
            if runs and all(r["status"] not in ("queued", "running") or
                            (r["step"] or 0) >= fraction * (r["steps"] or 1) for r in runs):
                return
            time.sleep(0.5)
    finally:
        store.close()
    raise RuntimeError("the runs did not get far enough in time")


def settle(page, charts: int = 7) -> None:
    wait_idle(page, 180_000)
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}")
    page.wait_for_timeout(1200)  # let plotly finish drawing the last refresh
    wait_idle(page, 180_000)


def whole_page(page, path: Path) -> None:
    """Streamlit scrolls inside its main container, so a full-page screenshot needs a viewport as
    tall as that container's content."""
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1500, "height": int(height) + 40})
    settle(page)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1500, "height": 1000})


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        with running_app(db, Path(tmp) / "streamlit.log", env={"AGD_VIZ_MAX_WORKERS": "2"}) as base, \
                sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1500, "height": 1000}, device_scale_factor=1)
            page.set_default_timeout(120_000)

            # More steps than the preset's 400, so the pictures are taken while it trains.
            page.goto(preset_url(base, "Adam fails at depth 32", steps=1500))
            wait_idle(page)
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Comparison 1").wait_for()
            wait_progress(db, 0.3)
            whole_page(page, DOCS / "live-page.png")

            page.set_viewport_size({"width": 1600, "height": 1200})
            page.goto(f"{base}/?group=1&present=1")
            page.get_by_text("Comparison 1").wait_for()
            wait_progress(db, 0.5)
            settle(page)
            page.screenshot(path=str(DOCS / "live-presenter.png"))
            page.set_viewport_size({"width": 1500, "height": 1000})

            page.goto(preset_url(base, "Spirals: decision boundary", steps=20000))
            wait_idle(page)
            stop = page.get_by_role("button", name="Stop")
            if stop.is_enabled():  # the depth-32 comparison is still going
                stop.click()
                wait_idle(page)
            wait_progress(db, 1.0)
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Comparison 2").wait_for()
            wait_progress(db, 0.05)
            settle(page, charts=9)
            boundary = page.get_by_text("Decision boundary", exact=True)
            boundary.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(DOCS / "live-boundary.png"), full_page=False)
            browser.close()
    for name in ("live-page.png", "live-presenter.png", "live-boundary.png"):
        print(DOCS / name)


if __name__ == "__main__":
    main()
