"""AppTest of pages/how_agd_works.py: it renders, every control works, a stored AGD run is marked,
and the page never imports torch."""

import os
import subprocess
import sys
from pathlib import Path

import base64

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from agd_viz.views import explain as ex
from apptest_util import figures

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


def _array(v):
    """A figure array as Plotly's JSON sends it: a list, or base64 with its dtype."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def _figures(at) -> dict:
    return {spec["layout"]["title"]["text"]: spec for spec in figures(at)}


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
    assert len(headers) == 6 and headers[0].startswith("1 ·") and headers[5].startswith("6 ·")

    table = at.table[0].value
    assert list(table["Optimiser"]) == ["Adam", "SGD + momentum", "SGD + muP", "AGD"]
    agd = table.set_index("Optimiser").loc["AGD"]
    claims = ["Hyperparameter-free", "Width scaling", "Depth scaling", "Automatic schedule"]
    assert list(agd[claims]) == ["✓"] * 4
    assert list(table.set_index("Optimiser").loc["Adam", claims]) == ["✗"] * 4
    assert any("Table 1 of the paper" in c.value for c in at.caption)

    latex = " ".join(x.value for x in at.latex)
    # Lemma 4 as the paper states it: an absolute bound with the product of norms and ‖x‖, and
    # √d_L (e^η − 1) only under Prescription 1; never a bound on ‖Δf‖/‖f‖.
    assert (r"\|\Delta f(x)\|_2 \;\le\; \Big[\prod_{k=1}^{L}\|W_k\|_*\Big]\,\|x\|_2\,\Big[\prod_{k=1}^{L}"
            r"\Big(1 + \frac{\|\Delta W_k\|_*}{\|W_k\|_*}\Big) - 1\Big]") in latex
    assert r"\sqrt{d_L}\,\big(e^{\eta} - 1\big)\quad\text{(the second under Prescription 1)}" in latex
    assert r"\frac{\|\Delta f(x)\|_2}{\|f(x)\|_2}" not in latex
    assert "Assumption 1" in latex  # the dropped term is assumed away, not free
    assert r"\log\frac{1+\sqrt{1+4G}}{2}" in latex
    words = " ".join(m.value for m in at.markdown)
    for claim in ("Assumption 1 (Sec. 2.2) *assumes*", "(Lemma 1)", "Corollary 2", "Prescription 1",
                  "rises slowly", "drops sharply", "dip at first", "Lemma 8", "does **not** hold"):
        assert claim in words, claim
    assert "falls on its own" not in words and "line 3" not in words

    figs = _figures(at)
    for title in ("AGD's step size η(G)", "Singular values σᵢ", "η shared across layers",
                  "Lemma 4's factor ∏(1 + ‖ΔW_k‖*/‖W_k‖*) − 1 through the layers",
                  "Lemma 4's factor ∏(1 + ‖ΔW_k‖*/‖W_k‖*) − 1 against depth",
                  "Stable rank of each optimiser's first update"):
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
    titles = _figures(at)
    assert not [t for t in titles if "against depth" in t]  # the compare toggle is off
    # The Frobenius measure is never titled as the paper's bound.
    assert "∏(1 + ‖ΔW_k‖_F/‖W_k‖_F) − 1 through the layers (Frobenius: not the paper's bound)" in titles
    assert not [t for t in titles if "Lemma 4" in t]
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
titles = [json.loads(c.proto.json)["spec"] for c in at.get("bidi_component")]
titles = [json.loads(t)["layout"]["title"]["text"] for t in titles]
assert "Lemma 4's factor ∏(1 + ‖ΔW_k‖*/‖W_k‖*) − 1 against depth" in titles, titles
print("torch" in sys.modules)
"""
    env = {**os.environ, "AGD_VIZ_DB": str(tmp_path / "runs.db")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_stored_agd_run_shows_how_its_eta_moved(page, tmp_path):
    from agd_viz.store import Store

    with Store(tmp_path / "runs.db") as store:
        run = store.create_run({"dataset": "digits", "depth": 8, "width": 64, "batch_size": 128, "steps": 40,
                                "seed": 0}, "agd", name="figure run")
        store.append_metrics(run, [{"step": k, "G": 0.5, "eta": 0.1 + 0.01 * k, "train_acc": k / 40 if k % 10 == 0 else None}
                                   for k in range(41)], progress={"step": 40})
    at = page.run()
    _assert_clean(at, "with a curve")
    data = _figures(at)[f"η in run {run}"]["data"]
    assert len(_array(data[0]["x"])) == 41 and data[1]["name"] == "train accuracy" and len(_array(data[1]["x"])) == 5
    assert any("figure run" in c.value and "depth 8 × width 64" in c.value for c in at.caption)
