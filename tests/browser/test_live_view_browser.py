"""The Live page's view in a real browser at 1280×720 (issue 15): the presenter view holds a chart
with data on the first screen in large type, no control is cut off in the normal view, an invalid
field disables Start, replay moves every chart, and a reloaded URL restores the form, the chart
options and the opened comparison.

One app server and one run store for the module: two finished comparisons trained by the command
line before the browser opens (digits, and spirals for its decision boundaries)."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server import PLOT_POINTS_JS, chromium_available, count_runs, launch_chromium, running_app, wait_idle

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
W, H = 1280, 720
SPIRAL_STEPS = 200

# Each chart's box on the screen, and the sizes of its type as plotly drew them.
GEOMETRY_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(div => {
  const r = div.getBoundingClientRect(), L = div._fullLayout || {};
  return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, traces: (div.data || []).length,
          tick: L.xaxis?.tickfont?.size, ytick: L.yaxis?.tickfont?.size, legend: L.legend?.font?.size,
          title: (div.layout?.title?.text || "").replace(/<[^>]+>/g, "") || null, ytype: L.yaxis?.type};
})
"""
# Labels of the main area's buttons and toggles that the browser cuts off (an ellipsis).
CUT_LABELS_JS = """
() => Array.from(document.querySelectorAll(
    "[data-testid='stMain'] [data-testid='stButton'] p, [data-testid='stMain'] [data-testid='stCheckbox'] p"))
  .filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.textContent)
"""


def cli_train(db, *args):
    out = subprocess.run([sys.executable, "-m", "agd_viz", "train", "--db", str(db), "--device", "cpu", "--quiet",
                          *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    if not chromium_available():
        pytest.skip("chromium is not installed (/usr/bin/chromium)")
    tmp = tmp_path_factory.mktemp("live_view")
    db = tmp / "runs.db"
    cli_train(db, "--dataset", "digits", "--depth", "3", "--width", "16", "--optimizer", "agd",
              "--optimizer", "adam:lr=1e-3", "--steps", "60", "--batch-size", "64")  # group 1
    cli_train(db, "--dataset", "spirals", "--depth", "3", "--width", "16", "--optimizer", "agd",
              "--optimizer", "adam:lr=1e-2", "--steps", str(SPIRAL_STEPS))  # group 2
    with running_app(db, tmp / "streamlit.log", env={"AGD_VIZ_MAX_WORKERS": "1", "AGD_VIZ_PREWARM": "0"}) as url:
        yield url


@pytest.fixture
def page(base_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": W, "height": H})
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        pg.base_url = base_url
        yield pg
        context.close()
        browser.close()


def open_page(page, query: str, charts: int):
    page.goto(f"{page.base_url}/?{query}")
    wait_idle(page)
    page.wait_for_function(f"""() => {{ const p = document.querySelectorAll('.js-plotly-plot');
        return p.length >= {charts} && Array.from(p).every(d => d.querySelector('.main-svg')); }}""")
    wait_idle(page)


def until(page, check, timeout_s=60.0, what="the page"):
    end = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, f"{what} did not settle in {timeout_s:g} s"
        page.wait_for_timeout(250)


def test_the_presenter_view_fits_a_1280x720_projector(page):
    open_page(page, "group=1&present=1", charts=4)
    loss, acc = page.evaluate(GEOMETRY_JS)[:2]
    points = page.evaluate(PLOT_POINTS_JS)
    for chart, drawn in ((loss, points[0]), (acc, points[1])):  # with data, wholly on the first screen
        assert drawn["points"] > 0 and drawn["maxX"] == 60
        assert 0 <= chart["top"] and chart["bottom"] <= H and 0 <= chart["left"] and chart["right"] <= W, chart
        assert chart["tick"] >= 18 and chart["ytick"] >= 18 and chart["legend"] >= 18, chart
    line = page.get_by_text(re.compile(r"^Digits \(8×8\) · depth 3 × width 16"))
    assert float(line.evaluate("e => getComputedStyle(e).fontSize").rstrip("px")) >= 18  # readable config line
    assert page.get_by_text(re.compile(r"^finished · step 60 / 60")).count() == 2  # a status line per run
    assert page.evaluate(CUT_LABELS_JS) == []
    # With the replay's slider as well, the charts still end above the fold.
    page.get_by_role("button", name="Replay", exact=True).click()
    page.get_by_role("slider", name="Replay step").wait_for()
    wait_idle(page)
    until(page, lambda: all(c["bottom"] <= H for c in page.evaluate(GEOMETRY_JS)[:2]), what="replay layout")

    # The normal view at 1280 px: every control's label whole.
    page.goto(f"{page.base_url}/?group=1")
    page.get_by_text("Comparison 1").wait_for()
    wait_idle(page)
    assert page.evaluate(CUT_LABELS_JS) == []
    for name in ("Start training", "Stop", "Copy link"):
        box = page.get_by_role("button", name=name).first if name != "Copy link" else \
            page.frame_locator("iframe").get_by_role("button", name="Copy link")
        b = box.bounding_box()
        assert b and b["x"] + b["width"] <= W, (name, b)


def test_an_invalid_field_disables_start(page):
    page.goto(page.base_url)
    wait_idle(page)
    start = page.get_by_role("button", name="Start training")
    assert start.is_enabled()
    depth = page.get_by_role("spinbutton", name="Depth (weight matrices)")
    depth.fill("0")
    depth.press("Tab")
    wait_idle(page)
    until(page, start.is_disabled, what="Start")
    # The form, and the note under the box, are drawn after the page's top (its Start) in each rerun.
    until(page, page.get_by_text("Depth (weight matrices) must be between 1 and 64").is_visible, what="the note")
    assert depth.input_value() == "0"  # what the box shows is what the page checked
    depth.fill("5")
    depth.press("Tab")
    wait_idle(page)
    until(page, start.is_enabled, what="Start")


def test_replay_moves_every_chart_and_the_decision_boundaries(page):
    open_page(page, "group=2&layers=1", charts=10)  # 4 lines, 2 boundaries, 4 per-layer charts
    full = page.evaluate(PLOT_POINTS_JS)
    assert all(c["points"] > 0 for c in full)
    assert [c["title"] for c in page.evaluate(GEOMETRY_JS) if c["title"]] == [
        f"agd · step {SPIRAL_STEPS}", f"adam lr=0.01 · step {SPIRAL_STEPS}"]
    page.get_by_role("button", name="Replay", exact=True).click()
    slider = page.get_by_role("slider", name="Replay step")
    slider.wait_for()
    wait_idle(page)
    slider.focus()
    page.keyboard.press("Home")
    wait_idle(page)

    def paged_up():  # a tenth of the run; a key pressed while a rerun redraws the slider can be lost
        if int(slider.input_value()) == 0:
            slider.focus()
            page.keyboard.press("PageUp")
            wait_idle(page)
        return int(slider.input_value())

    step = until(page, paged_up, what="the slider to move on")
    assert 0 < step < SPIRAL_STEPS / 2

    def moved():
        now = page.evaluate(PLOT_POINTS_JS)
        lines = [c for c in now if c["maxX"] is not None and c["maxX"] > 10]  # boundaries: x in the plane
        return len(now) == 10 and all(c["maxX"] <= step for c in lines[:4] + lines[-4:]) and now

    # The status chips name the replay's step once the page has drawn it (charts cut at an earlier
    # step would pass `moved` too).
    until(page, lambda: page.get_by_text(f"step {step}", exact=True).count() >= 2, what="the status chips")
    until(page, moved, what="the replayed charts")
    titles = [c["title"] for c in page.evaluate(GEOMETRY_JS) if c["title"]]
    assert len(titles) == 2 and all(int(t.rsplit(" ", 1)[1]) <= step for t in titles), titles

    # Play moves the slider on by itself; Pause stops it, and the page stops rerunning.
    page.get_by_role("button", name="Play", exact=True).click()
    until(page, lambda: int(slider.input_value()) > step, what="Play")

    def paused():  # the button is redrawn every tick while playing: a click can land on the old one
        if not page.get_by_role("button", name="Play", exact=True).count():
            page.get_by_role("button", name="Pause", exact=True).click()
            wait_idle(page)
        return page.get_by_role("button", name="Play", exact=True).count() > 0

    until(page, paused, what="Pause")
    assert int(slider.input_value()) < SPIRAL_STEPS  # stopped by Pause, not by reaching the end
    # A tick already on its way when Pause was pressed may still land; after that, none comes
    # (playing, a tick comes every replay.TICK_S).
    page.wait_for_timeout(1500)
    wait_idle(page)
    assert count_runs(page, 3.0) == 0


def test_a_reloaded_url_restores_form_chart_options_and_comparison(page):
    open_page(page, "group=1", charts=4)
    # A link to a comparison opens with its form folded (benchmarks/cold_draw.py); opened, it holds
    # the comparison's settings.
    assert not page.get_by_role("spinbutton", name="Width").count()
    page.get_by_role("button", name="Edit the settings").click()
    wait_idle(page)
    until(page, lambda: page.get_by_role("spinbutton", name="Width").count()
          and page.get_by_role("spinbutton", name="Width").input_value() == "16",
          what="the form to follow ?group=1")  # the sidebar is drawn after the charts
    width = page.get_by_role("spinbutton", name="Width")
    width.fill("32")
    width.press("Tab")
    wait_idle(page)
    page.get_by_role("button", name="Chart options").click()
    options = page.get_by_role("dialog", name="Chart options")
    options.wait_for()
    page.wait_for_timeout(400)  # the popover slides in: a click meant for the toggle could land on the slider
    options.get_by_text("Log-scale loss").click()
    wait_idle(page)
    until(page, lambda: "logy=1" in page.url and "width=32" in page.url, what="the link")
    assert re.search(r"\?group=1&width=32&logy=1$", page.url), page.url  # short: what differs, nothing else

    page.reload()
    page.get_by_text("Comparison 1").wait_for()
    wait_idle(page)
    until(page, lambda: page.evaluate(GEOMETRY_JS)[:1] and page.evaluate(GEOMETRY_JS)[0]["ytype"] == "log",
          what="the log axis")
    boxes = {"Width": "32", "Depth (weight matrices)": "3", "Steps": "60"}  # the link's, then the comparison's
    # The sidebar comes after the charts (and a box mounts at 0 for a moment before its value).
    until(page, lambda: all(page.get_by_role("spinbutton", name=n).input_value() == v for n, v in boxes.items()),
          what="the form")


def test_a_finished_comparison_sends_only_what_it_draws(page):
    """The cold page of a finished comparison holds the four charts it shows, drawn with the app's
    own Plotly.js bundle (1.5 MB, loaded once), not Streamlit's full one (4.7 MB); the four
    per-layer charts come when their expander opens (benchmarks/cold_draw.py times both)."""
    import app_widgets

    scripts, elsewhere = [], []
    page.on("request", lambda r: scripts.append(r.url.rsplit("/", 1)[-1]) if r.resource_type == "script" else None)
    page.on("request", lambda r: None if r.url.startswith((page.base_url, "data:", "blob:")) else elsewhere.append(r.url))
    open_page(page, "group=1", charts=4)
    assert not elsewhere  # nothing but this server: the app works in a room without internet
    assert len(page.evaluate(PLOT_POINTS_JS)) == 4
    assert scripts.count(app_widgets.PLOTLY_BUNDLE.name) == 1
    assert not [s for s in scripts if s.startswith("PlotlyChart")], scripts  # st.plotly_chart's element
    bundle = set(page.evaluate("Object.keys(Plotly.PlotSchema.get().traces)"))
    assert app_widgets.BUNDLE_TRACES <= bundle, app_widgets.BUNDLE_TRACES - bundle
    assert page.evaluate("Array.from(document.querySelectorAll('.agd-viz-chart')).map(d => d.dataset.key)") == [
        "lv_chart_loss", "lv_chart_acc", "lv_chart_step_size", "lv_chart_rel_update"]
    buttons = set(page.evaluate("Array.from(document.querySelectorAll('.modebar-btn')).map(b => b.dataset.title)"))
    assert "Download plot as a PNG" in buttons and "Zoom" in buttons
    assert not buttons & {"Share chart...", "Box Select", "Lasso Select"}, buttons  # nothing leaves the machine
    page.get_by_text("Layer by layer: weight norms and stable ranks").click()
    until(page, lambda: len(page.evaluate(PLOT_POINTS_JS)) == 8 and all(
        c["points"] > 0 for c in page.evaluate(PLOT_POINTS_JS)), what="the per-layer charts")
    until(page, lambda: "layers=1" in page.url, what="the link")
