"""The sweep page in a real browser: a 2 × 2 sweep runs to the end in the background, its
heatmaps fill in cell by cell, and clicking a cell opens that cell's curves; with either of
app_widgets.chart's renderers."""

import re
import time

import pytest

from server import count_runs, wait_idle

pytestmark = pytest.mark.browser

# Finite cells of every heatmap panel of each chart, from plotly's own (decoded) data; charts of
# a run being replaced (Streamlit marks them stale during a rerun) are left out.
FILLED_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(div => !div.closest("[data-stale='true']")).map(div =>
  (div._fullData || []).filter(t => t.type === 'heatmap').map(t => {
    let n = 0;
    for (const row of (t.z || [])) for (const v of row) if (v !== null && Number.isFinite(Number(v))) n++;
    return n;
  }))
"""

# Page coordinates of the centre of cell (depth, width) in the first panel of chart `i`.
CELL_JS = """
([i, depth, width]) => {
  const div = document.querySelectorAll('.js-plotly-plot')[i];
  const xa = div._fullLayout.xaxis, ya = div._fullLayout.yaxis, r = div.getBoundingClientRect();
  return [r.left + xa._offset + xa.l2p(xa.d2l(String(width))),
          r.top + ya._offset + ya.l2p(ya.d2l(String(depth)))];
}
"""


def fill(page, label, value):
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def test_a_small_sweep_fills_four_heatmap_cells_and_a_click_opens_a_cell(renderer_page):
    import app_widgets

    page = renderer_page
    page.goto(page.base_url)
    wait_idle(page)
    page.get_by_role("link", name="Depth × width sweep").click()
    page.get_by_role("heading", name="Depth × width sweep").wait_for()
    wait_idle(page)
    assert page.get_by_text("No sweeps yet").is_visible()

    fill(page, "Depths", "1, 2")
    fill(page, "Widths", "8, 16")
    fill(page, "Steps", 30)
    page.get_by_text("Adam", exact=True).click()  # AGD alone
    wait_idle(page)
    page.get_by_text("4 runs (2 depths × 2 widths × 1 optimiser)").wait_for()
    assert page.get_by_text("with 2 workers at a time").is_visible()

    page.get_by_role("button", name="Start sweep").click()
    page.get_by_text(re.compile(r"of 4 runs done")).first.wait_for()
    wait_idle(page)
    assert "sweep=1" in page.url

    end = time.monotonic() + 150
    while True:
        filled = page.evaluate(FILLED_JS)
        # train loss, train accuracy, test accuracy, AGD's η: four cells each
        if filled[:4] == [[4], [4], [4], [4]] and page.get_by_text("4 of 4 runs done").count():
            break
        assert time.monotonic() < end, f"heatmaps did not fill in time: {filled}"
        page.wait_for_timeout(500)
    wait_idle(page)
    # Once every run has ended the page reruns one last time and stops polling; wait for that, or
    # the rerun can replace the chart between locating it and clicking it.
    end = time.monotonic() + 30
    while count_runs(page, 1.5) > 0:
        assert time.monotonic() < end, "the sweep page kept polling after every run ended"
    wait_idle(page)

    # clicking a cell of the train-accuracy heatmap opens that cell's curves
    page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    x, y = page.evaluate(CELL_JS, [1, 1, 16])
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    page.wait_for_timeout(500)
    wait_idle(page)
    cell = page.get_by_role("combobox", name="Cell")  # the cell picker follows the click
    end = time.monotonic() + 30
    while cell.input_value() != "depth 1 × width 16":
        assert time.monotonic() < end, cell.input_value()
        page.wait_for_timeout(250)
    wait_idle(page)
    assert "#3 agd · 1×16" in page.locator(".js-plotly-plot").nth(4).inner_text()  # its curves
    # One Plotly.js for the page: the app's bundle, or (no static serving) Streamlit's.
    ours = page.scripts.count(app_widgets.PLOTLY_BUNDLE.name)
    streamlits = len([s for s in page.scripts if s.startswith("PlotlyChart")])
    assert (ours, streamlits) == ((1, 0) if page.renderer == "app" else (0, 1)), page.scripts
