"""Screenshots of every page at 1280×720 (a projector), and the landing page's picture.

    python docs/make_screenshots.py

Starts the real app on a free port against a temporary run store, drives Debian's chromium with
Playwright, and uses the app as a presenter would: the landing's "Adam fails at depth 32" button,
the spirals preset, a small sweep. Writes, in docs/:

    landing.png               the landing page's picture: loss and accuracy of the headline comparison
    live-landing-1280.png     the Live page before any run (what the app does, one click to the headline)
    live-1280.png             the Live page with the headline comparison
    live-presenter-1280.png   its presenter view
    live-replay-1280.png      the spirals comparison replayed, decision boundaries full screen
    sweep-1280.png            the Sweep page, and sweep-heatmap.png its train-accuracy heatmaps
    runs-1280.png             the Runs page
    how-agd-works-1280.png    the How AGD works page
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

from agd_viz.store import Store  # noqa: E402
from agd_viz.views import live_form as live  # noqa: E402
from server import launch_chromium, running_app, wait_idle  # noqa: E402

DOCS = ROOT / "docs"
VIEWPORT = {"width": 1280, "height": 720}
CHARTS_DRAWN = """(n) => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(d => d.querySelector('.main-svg') && (d.data || []).length).length >= n"""


def preset_url(base: str, name: str, **extra) -> str:
    return f"{base}/?{urlencode({**live.link_fields(live.PRESETS[name].state()), **extra})}"


def wait_done(db: Path, timeout_s: float = 900.0) -> None:
    """Until every run of the store has ended."""
    store = Store(db)
    end = time.monotonic() + timeout_s
    try:
        while time.monotonic() < end:
            runs = store.list_runs()
            if runs and all(r["status"] not in ("queued", "running") for r in runs):
                return
            time.sleep(0.5)
    finally:
        store.close()
    raise RuntimeError("the runs did not finish in time")


def settle(page, charts: int = 1) -> None:
    wait_idle(page, 180_000)
    page.wait_for_function(CHARTS_DRAWN, arg=charts, timeout=180_000)
    page.wait_for_timeout(800)  # plotly's last transition
    wait_idle(page, 180_000)


def shot(page, name: str) -> None:
    page.screenshot(path=str(DOCS / name))
    print(DOCS / name)


def open_page(page, link: str, heading: str) -> None:
    """A page through the app's menu (a fresh server's first request straight to another page's
    URL shows Streamlit's raw page list)."""
    page.get_by_role("link", name=link).click()
    page.get_by_role("heading", name=heading).wait_for()
    wait_idle(page, 180_000)


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        with running_app(db, Path(tmp) / "streamlit.log", env={"AGD_VIZ_MAX_WORKERS": "2"}) as base, \
                sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.set_default_timeout(180_000)

            # The headline comparison, one click from the landing.
            page.goto(base)
            wait_idle(page)
            page.get_by_role("button", name="Run “Adam fails at depth 32”").click()
            page.get_by_text("Comparison 1").wait_for()
            wait_done(db)
            page.goto(f"{base}/?group=1&present=1")
            settle(page, 4)
            charts = page.locator(".js-plotly-plot").first.locator(
                "xpath=ancestor::div[@data-testid='stHorizontalBlock'][1]")
            charts.screenshot(path=str(DOCS / "landing.png"))
            print(DOCS / "landing.png")
            shot(page, "live-presenter-1280.png")
            page.goto(f"{base}/?group=1")
            settle(page, 4)
            shot(page, "live-1280.png")

            # The landing as a new visitor sees it (a new session starts on no comparison).
            fresh = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            fresh.goto(base)
            wait_idle(fresh)
            fresh.locator("[data-testid='stImage'] img").wait_for()
            fresh.wait_for_timeout(500)
            fresh.screenshot(path=str(DOCS / "live-landing-1280.png"))
            print(DOCS / "live-landing-1280.png")
            fresh.close()

            # Spirals: the decision boundaries, replayed.
            page.goto(preset_url(base, "Spirals: decision boundary"))
            wait_idle(page)
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Comparison 2").wait_for()
            wait_done(db)
            page.goto(f"{base}/?group=2&present=1&focus=boundary")
            settle(page, 2)
            page.get_by_role("button", name="Replay", exact=True).click()
            slider = page.get_by_role("slider", name="Replay step")
            slider.wait_for()
            wait_idle(page)
            slider.focus()
            page.keyboard.press("Home")
            wait_idle(page)
            for _ in range(2):
                page.keyboard.press("PageUp")
                wait_idle(page)
            settle(page, 2)
            shot(page, "live-replay-1280.png")

            # A small sweep from the Sweep page.
            page.goto(base)
            wait_idle(page)
            open_page(page, "Depth × width sweep", "Depth × width sweep")
            for label, value in (("Depths", "2, 4, 8, 16, 32"), ("Widths", "32, 64, 128"), ("Steps", "200")):
                box = page.get_by_label(label, exact=True)
                box.fill(value)
                box.press("Enter")
                wait_idle(page)
            page.get_by_role("button", name="Start sweep").click()
            wait_idle(page)
            wait_done(db, 1800)
            page.wait_for_timeout(3000)  # the page's last poll sees the sweep end
            settle(page, 3)
            shot(page, "sweep-1280.png")
            heatmap = page.locator(".js-plotly-plot").nth(1)  # final train accuracy, per optimiser
            heatmap.scroll_into_view_if_needed()
            page.wait_for_timeout(800)
            heatmap.screenshot(path=str(DOCS / "sweep-heatmap.png"))
            print(DOCS / "sweep-heatmap.png")

            open_page(page, "Runs", "Runs")
            page.wait_for_timeout(800)
            shot(page, "runs-1280.png")
            open_page(page, "How AGD works", "How AGD works")
            settle(page, 1)
            shot(page, "how-agd-works-1280.png")
            browser.close()


if __name__ == "__main__":
    main()
