"""AppTest of the Live page's view (issue 15): chart options and the opened comparison in the link,
the form following the comparison, replay, one chart full screen, Start refusing what the boxes
do not show, and the landing's headline button."""

import json

import pytest

from agd_viz import charts
from agd_viz.store import Store
from agd_viz.views import live_view as view
from apptest_util import app_store, charts_of, clean, figures, open_page, option, wait_final
from test_page_live import seed_group, status_lines

pytestmark = pytest.mark.slow

PAGE = "pages/live.py"


@pytest.fixture
def db(tmp_path, monkeypatch):
    with app_store(tmp_path / "runs.db", monkeypatch, max_workers=1) as path:
        yield path


def max_x(fig) -> float:
    """The largest x of a figure's traces (plain lists or plotly's typed arrays)."""
    import base64

    import numpy as np

    top = -1.0
    for t in fig["data"]:
        x = t.get("x")
        if isinstance(x, dict):
            x = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
        if x is not None and len(x):
            top = max(top, float(np.nanmax(np.asarray(x, dtype=float))))
    return top


def test_without_static_serving_the_same_charts_are_drawn_by_streamlits_plotly(db):
    """The app's renderer needs static/ served (.streamlit/config.toml); a server started without
    that file (from another folder) still draws every chart, the same figures through
    st.plotly_chart with its theme off."""
    gid, _ = seed_group(db)
    own = charts_of(clean(open_page(PAGE, {"group": str(gid)})))
    with option("server.enableStaticServing", False):
        fallback = charts_of(clean(open_page(PAGE, {"group": str(gid)})))
    assert [c.renderer for c in own] == ["app"] * 4 and [c.renderer for c in fallback] == ["plotly_chart"] * 4
    assert [c.key for c in fallback] == [c.key for c in own] == [f"lv_chart_{n}" for n in view.figures_shown()]
    assert [c.figure for c in fallback] == [c.figure for c in own]
    assert all(c.theme == "" for c in fallback)
    assert [c.config for c in fallback] == [c.config for c in own]  # the same mode bar, no "Share chart"
    assert all("sendChartToCloud" in c.config["modeBarButtonsToRemove"] for c in own)


def test_the_chart_library_is_fetched_under_the_servers_base_path(db):
    """Behind a proxy at /demo (server.baseUrlPath) static files are served under /demo too."""
    import app_widgets

    gid, _ = seed_group(db)
    with option("server.baseUrlPath", "demo"):
        at = clean(open_page(PAGE, {"group": str(gid)}))
    sources = {json.loads(el.proto.json)["src"] for el in at.get("bidi_component")}
    assert sources == {f"/demo/app/static/{app_widgets.PLOTLY_BUNDLE.name}"}


def test_chart_options_and_the_comparison_come_back_from_the_link(db):
    gid, _ = seed_group(db)
    at = clean(open_page(PAGE, {"group": str(gid), "logy": "1", "smooth": "0.2", "x": "time"}))
    assert at.toggle(key="lv_logy").value and at.slider(key="lv_smooth").value == 0.2
    assert at.radio(key="lv_x").value == "time"
    loss = figures(at)[0]
    assert loss["layout"]["yaxis"]["type"] == "log" and loss["layout"]["xaxis"]["title"]["text"] == "wall time (s)"
    # Each chart carries its look and is drawn by the app's own renderer (Plotly.js's cartesian
    # bundle, not st.plotly_chart's full one and its theme pass: benchmarks/cold_draw.py).
    assert [c.renderer for c in charts_of(at)] == ["app"] * 4
    style = loss["layout"]["template"]["layout"]
    assert style["font"]["family"] == charts.chart_style("#000")["font"]["family"]
    assert style["title"]["font"]["color"] == "#1f2430"  # the app theme's text colour (.streamlit/config.toml)
    # The form follows the comparison; the link stays short.
    assert at.number_input(key="lv_depth").value == 3 and at.number_input(key="lv_steps").value == 30
    assert dict(at.query_params) == {"group": str(gid), "logy": "1", "smooth": "0.2", "x": "time"}
    at.toggle(key="lv_logy").set_value(False)
    at.number_input(key="lv_width").set_value(64).run()
    assert dict(at.query_params) == {"group": str(gid), "width": "64", "smooth": "0.2", "x": "time"}
    # A bad option is explained and left at its default.
    at = clean(open_page(PAGE, {"group": str(gid), "smooth": "5"}))
    assert "smooth='5' was not used" in " ".join(w.value for w in at.warning)
    assert at.slider(key="lv_smooth").value == 0.6


def test_replay_draws_every_chart_and_the_numbers_at_its_step(db):
    gid, _ = seed_group(db, steps=30)
    at = clean(open_page(PAGE, {"group": str(gid), "layers": "1"}))
    full = figures(at)
    assert len(full) == len(charts.LIVE_FIGURES) == 8 and all(max_x(f) == 30 for f in full)
    at.button(key="lv_replay_switch").click().run()
    at.slider(key="lv_replay_step").set_value(12).run()
    clean(at)
    cut = figures(at)
    assert len(cut) == 8
    for fig in cut:  # every chart ends at the replay's step, on the whole run's axis
        assert max_x(fig) <= 12, fig["layout"].get("title")
        assert fig["layout"]["xaxis"]["range"] == [0, 30]
    assert all("step 12" in line for line in status_lines(at))
    at.slider(key="lv_replay_step").set_value(30).run()
    assert all(max_x(f) == 30 for f in figures(at))


def test_one_chart_full_screen(db):
    gid, _ = seed_group(db)
    at = clean(open_page(PAGE, {"group": str(gid), "focus": "acc", "present": "1"}))
    (fig,) = figures(at)
    assert "accuracy" in json.dumps(fig["layout"]["yaxis"]["title"])
    assert fig["layout"]["height"] == view.chart_height(True, 2, focus=True) >= 400  # what the screen leaves
    at.selectbox(key="lv_focus").set_value("").run()
    assert len(figures(at)) == 4 and "focus" not in at.query_params


def test_start_trains_what_the_boxes_show_or_nothing(db):
    at = clean(open_page(PAGE))
    at.number_input(key="lv_depth").set_value(0)
    at.button(key="lv_start").click().run()  # the click arrives with the box's new value
    assert "Could not start: fix the settings marked in red first" in " ".join(e.value for e in at.error)
    assert "Depth (weight matrices) must be between 1 and 64" in " ".join(e.value for e in at.sidebar.error)
    assert at.button(key="lv_start").disabled
    store = Store(db)
    assert store.list_runs() == []
    store.close()


def test_the_landing_starts_the_headline_comparison_in_one_click(db):
    at = clean(open_page(PAGE))
    at.button(key="lv_headline").click().run()
    clean(at)
    store = Store(db)
    runs = sorted(store.list_runs(), key=lambda r: r["id"])
    assert [r["optimizer"] for r in runs] == ["agd", "adam:lr=0.001"]
    assert (runs[0]["spec"]["depth"], runs[0]["spec"]["width"]) == (32, 128)
    assert at.number_input(key="lv_depth").value == 32  # the form shows what trains
    assert dict(at.query_params) == {"group": str(runs[0]["group_id"])}
    at.button(key="lv_stop").click().run()
    assert {r["status"] for r in wait_final(db)} <= {"cancelled", "finished"}
    store.close()
