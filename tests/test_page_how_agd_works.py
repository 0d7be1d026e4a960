"""AppTest of pages/how_agd_works.py: it renders, every control works, a stored AGD run is marked,
and the page never imports torch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from agd_viz.views import explain as ex

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "how_agd_works.py")

# Real option values of the choice widgets (their labels may be formatted for display).
OPTIONS = {
    "how_kind": ex.MATRIX_KINDS,
    "how_demo_data": ex.DEMO_DATA,
    "how_demo_norm": ex.DEMO_NORMS,
}


@pytest.fixture
def page(tmp_path, monkeypatch):
    """The page against an empty run store location (no file), with fresh caches."""
    monkeypatch.setenv("AGD_VIZ_DB", str(tmp_path / "runs.db"))
    st.cache_data.clear()
    at = AppTest.from_file(PAGE, default_timeout=60)
    yield at
    st.cache_data.clear()


def _figures(at) -> dict:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def _shown(at) -> tuple:
    """What the reader sees change: figures, metric values, tables."""
    return (
        _figures(at),
        [(m.label, m.value) for m in at.metric],
        [df.value.to_json() for df in at.dataframe],
    )


def _assert_clean(at, context=""):
    assert not at.exception, f"{context}: {[e.value for e in at.exception]}"
    assert not at.error, f"{context}: {[e.value for e in at.error]}"
    assert not at.warning, f"{context}: {[w.value for w in at.warning]}"


def test_page_renders_every_section(page, tmp_path):
    at = page.run()
    _assert_clean(at, "first run")
    assert at.title[0].value == "How AGD works"
    headers = [h.value for h in at.header]
    assert len(headers) == 5 and headers[0].startswith("1 ·") and headers[4].startswith("5 ·")

    table = at.table[0].value
    assert list(table["Optimiser"]) == ["Adam", "SGD + momentum", "SGD + muP", "AGD"]
    agd = table.set_index("Optimiser").loc["AGD"]
    claims = ["Hyperparameter-free", "Width scaling", "Depth scaling", "Automatic schedule"]
    assert list(agd[claims]) == ["✓"] * 4
    assert list(table.set_index("Optimiser").loc["Adam", claims]) == ["✗"] * 4
    assert any("Table 1 of the paper" in c.value for c in at.caption)

    latex = " ".join(x.value for x in at.latex)
    assert r"\Big(1 + \frac{\|\Delta W_k\|_*}{\|W_k\|_*}\Big) - 1" in latex  # deep relative trust
    assert r"\log\frac{1+\sqrt{1+4G}}{2}" in latex

    figs = _figures(at)
    for title in ("AGD's step size η(G)", "Singular values σᵢ", "η shared across layers",
                  "Output-change bound ∏(1 + rel_j) − 1", "Whole-network bound against depth"):
        assert title in figs, sorted(figs)
    split = at.dataframe[0].value
    assert len(split) == at.slider(key="how_split_depth").value
    assert any("No AGD run in the run store yet" in c.value for c in at.caption)
    # The run store was only looked for, not created.
    assert not (tmp_path / "runs.db").exists()


def _other_value(widget):
    """A value different from the widget's current one."""
    kind = type(widget).__name__
    if kind == "Toggle" or kind == "Checkbox":
        return not widget.value
    if kind == "Slider":
        return widget.max if widget.value != widget.max else widget.min
    if kind in ("Selectbox", "Radio"):
        values = OPTIONS.get(widget.key, widget.options)
        return next(v for v in values if v != widget.value)
    if kind == "SelectSlider":
        values = [type(widget.value)(o) for o in widget.options]
        return values[-1] if widget.value != values[-1] else values[0]
    raise AssertionError(f"no rule to move a {kind} ({widget.key})")


def test_every_control_moves_without_error(page):
    at = page.run()
    # The rank and noise sliders only act on 'low-rank+noise': enable them before moving them.
    at.selectbox(key="how_kind").set_value("low-rank+noise").run()
    _assert_clean(at, "kind")
    widgets = [*at.slider, *at.select_slider, *at.selectbox, *at.radio, *at.toggle, *at.checkbox,
               *at.number_input, *at.text_input, *at.multiselect, *at.button]
    keys = [w.key for w in widgets]
    assert len(keys) >= 15 and all(k and k.startswith("how_") for k in keys)
    for key in keys:
        before = _shown(at)
        new = _other_value(at.get_by_key(key))
        at.get_by_key(key).set_value(new).run()
        _assert_clean(at, f"after moving {key} to {new!r}")
        assert at.get_by_key(key).value == new, key
        assert _shown(at) != before, f"moving {key} changed no figure, number or table"
    assert "Whole-network bound against depth" not in _figures(at)  # the compare toggle is off
    assert at.slider(key="how_demo_depth").value == 32
    assert len(at.dataframe[0].value) == 32


def test_latest_agd_run_is_marked_on_the_eta_curve(page, tmp_path):
    from agd_viz.store import Store

    with Store(tmp_path / "runs.db") as store:
        run = store.create_run({"dataset": "digits", "depth": 8}, "agd", name="workshop run")
        records = [{"step": k, "G": 0.5 + k, "eta": ex.eta_of_G(0.5 + k)} for k in range(3)]
        store.append_metrics(run, records)
    at = page.run()
    _assert_clean(at, "with a store")
    caption = next(c.value for c in at.caption if "latest AGD run" in c.value)
    assert "workshop run" in caption and "G = 2.5" in caption and "step 2" in caption
    eta_fig = _figures(at)["AGD's step size η(G)"]
    stars = [t for t in eta_fig["data"] if t.get("marker", {}).get("symbol") == "star"]
    assert len(stars) == 1 and stars[0]["x"] == [2.5]



def test_the_page_never_imports_torch(tmp_path):
    """The whole page, depth demo and depth comparison included, in a fresh process: torch stays
    out of the server."""
    code = f"""
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({PAGE!r}, default_timeout=60).run()
assert not at.exception, [e.value for e in at.exception]
titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
assert "Whole-network bound against depth" in titles, titles
print("torch" in sys.modules)
"""
    env = {**os.environ, "AGD_VIZ_DB": str(tmp_path / "runs.db")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
