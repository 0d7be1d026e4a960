"""AppTest of the Depth × width sweep page under the app's navigation: the run count and time
estimate before starting, the grid-size limit, a real sweep through the background queue filling
its heatmaps, cell curves, and reopening stored sweeps (picker, ?sweep=ID)."""

import base64
import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from agd_viz import cli
from agd_viz.store import Store
from apptest_util import app_store, clean, figures, open_page, wait_final

# Real worker processes and servers, seconds each: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/sweep.py"


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "runs.db"
    monkeypatch.delenv("AGD_VIZ_MAX_GRID", raising=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with app_store(path, monkeypatch):
        yield path
    for s, h in saved.items():  # the in-process CLI installs its own handlers
        signal.signal(s, h)


def cli_sweep(db, *args):
    """A real, tiny sweep through the CLI, in this process (torch is already imported here)."""
    code = cli.main(["sweep", "--dataset", "digits", "--steps", "10", "--batch-size", "32",
                     "--device", "cpu", "--quiet", "--json", "--db", str(db), *args])
    assert code == 0


def sweep_page(query=None) -> AppTest:
    return open_page(PAGE, query)


def texts(elements):
    """Shown text: markdown escapes (added so names and errors stay literal) taken off."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def values(z):
    """A heatmap's z as numbers (plotly ships arrays as base64 typed arrays)."""
    if isinstance(z, dict):
        arr = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"]))
        return arr.reshape([int(s) for s in str(z["shape"]).split(",")]) if "shape" in z else arr
    return np.array(z, dtype=np.float64)


def filled_cells(fig) -> list[int]:
    """Finite cells of each heatmap panel."""
    return [int(np.isfinite(values(t["z"]).astype(np.float64)).sum())
            for t in fig["data"] if t["type"] == "heatmap"]


# -------------------------------------------------------------------------------------------------


def test_run_count_and_estimate_before_starting(db):
    at = clean(sweep_page())
    assert texts(at.title) == ["Depth × width sweep"]
    summary = " ".join(texts(at.markdown))
    assert "30 runs (5 depths × 3 widths × 2 optimisers)" in summary and "about **" in summary
    assert any("FLOPs per step ∝ batch" in c for c in texts(at.caption))
    assert "No sweeps yet" in at.info[0].value
    assert not at.button(key="sw_start").disabled

    at.text_input(key="sw_depths").input("2, 4").run()
    at.text_input(key="sw_lr_adam").input("1e-4, 1e-3, 1e-2").run()
    summary = " ".join(texts(clean(at).markdown))
    assert "24 runs (2 depths × 3 widths × 4 optimisers)" in summary

    # more steps, a longer estimate
    def seconds():
        text = next(m for m in texts(at.markdown) if "about **" in m).split("about **")[1].split("**")[0]
        parts = text.split()
        return sum(int(n) * {"s": 1, "min": 60, "h": 3600}[u] for n, u in zip(parts[::2], parts[1::2]))

    short = seconds()
    at.number_input(key="sw_steps").set_value(3000).run()
    assert seconds() > 2 * short


def test_grids_over_the_limit_and_bad_lists_are_refused(db, monkeypatch):
    monkeypatch.setenv("AGD_VIZ_MAX_GRID", "12")
    at = clean(sweep_page())
    errors = " ".join(texts(at.error))
    assert "30 runs" in errors and "the limit is 12 runs" in errors and "AGD_VIZ_MAX_GRID" in errors
    assert at.button(key="sw_start").disabled

    at.text_input(key="sw_depths").input("2, 32").run()
    assert not at.error and not at.button(key="sw_start").disabled  # 2 × 3 × 2 = 12

    at.text_input(key="sw_depths").input("2, deep").run()
    assert "'deep' is not a whole number" in " ".join(texts(at.error))
    assert at.button(key="sw_start").disabled
    at.text_input(key="sw_depths").input("2").run()
    at.checkbox(key="sw_use_agd").uncheck()
    at.checkbox(key="sw_use_adam").uncheck().run()
    assert "Choose at least one optimiser" in " ".join(texts(at.error))


def test_a_sweep_runs_in_the_background_and_fills_its_heatmaps(db):
    at = sweep_page()
    at.text_input(key="sw_depths").input("1, 3").run()
    at.text_input(key="sw_widths").input("8").run()
    at.text_input(key="sw_lr_adam").input("1e-2").run()
    at.number_input(key="sw_steps").set_value(20)
    at.number_input(key="sw_batch").set_value(32).run()
    assert "4 runs (2 depths × 1 width × 2 optimisers)" in " ".join(texts(at.markdown))
    clean(at.button(key="sw_start").click().run())

    store = Store(db)
    groups = store.list_groups(kind="sweep")
    assert len(groups) == 1 and groups[0]["n_runs"] == 4  # one group for the whole grid
    assert groups[0]["spec"]["depths"] == [1, 3]
    assert at.query_params["sweep"] == str(groups[0]["id"])
    assert at.button(key="sw_stop").disabled is False
    assert at.button(key="sw_start").disabled  # one sweep at a time on the page
    store.close()

    runs = wait_final(db, 150.0)
    assert {r["status"] for r in runs} == {"finished"}
    clean(at.run())
    assert "4 of 4 runs done" in " ".join(p.proto.text for p in at.get("progress"))
    figs = figures(at)
    # train loss, train acc, test acc, best Adam rate vs AGD (2 panels each), AGD's η (1 panel)
    assert [filled_cells(f) for f in figs[:5]] == [[2, 2]] * 4 + [[2]]
    assert all("%" in t["text"][0][0] for t in figs[1]["data"] if t["type"] == "heatmap")
    assert all(t["zmin"] == 0 and t["zmax"] == 1 for t in figs[1]["data"] if t["type"] == "heatmap")
    assert any("rate's in" in c and "of 2 cells" in c for c in texts(at.caption))

    # the cell picker opens a cell's curves: one line per optimiser
    assert at.selectbox(key="sw_cell").value == (3, 8)
    at.selectbox(key="sw_cell").set_value((1, 8)).run()
    curves = figures(clean(at))[5:]
    assert len(curves) == 2
    assert {t["name"] for t in curves[0]["data"]} == {f"#{r['id']} {r['label']} · 1×8"
                                                      for r in runs if r["spec"]["depth"] == 1}
    # the outline follows the picked cell in every panel (row 0 is depth 1)
    assert [s["y0"] for s in figs[0]["layout"]["shapes"]] == [0.5, 0.5]
    assert [s["y0"] for s in figures(at)[0]["layout"]["shapes"]] == [-0.5, -0.5]


def test_stored_sweeps_open_from_the_link_or_the_picker_and_a_new_session_starts_clean(db):
    """Issue 14: a new session is not put on another attendee's latest sweep (nor a command
    line's); a link or the picker opens one to watch it."""
    cli_sweep(db, "--depths", "1", "--widths", "4,8", "--optimizer", "agd", "--name", "first")
    cli_sweep(db, "--depths", "1,2", "--widths", "8", "--optimizer", "agd", "--optimizer", "sgd:lr=0.1")
    at = clean(sweep_page())
    assert at.selectbox(key="sw_pick").value is None and "sweep" not in at.query_params
    assert at.selectbox(key="sw_pick").options == ["Sweep 2", "Sweep 1"] and figures(at) == []

    at = clean(sweep_page({"sweep": "2"}))
    assert at.selectbox(key="sw_pick").value == 2
    assert at.query_params["sweep"] == "2"
    assert at.text_input(key="sw_depths").value == "1, 2"  # the form shows the sweep shown
    assert [filled_cells(f) for f in figures(at)[:3]] == [[2, 2]] * 3  # AGD and SGD, 2 depths
    assert at.button(key="sw_stop").disabled  # not this session's sweep: watched, never stopped

    at = clean(sweep_page({"sweep": "1"}))
    assert at.selectbox(key="sw_pick").value == 1
    assert at.selectbox(key="sw_pick").options == ["Sweep 2 · 4 runs", "Sweep 1 · first · 2 runs"]
    # The form follows the sweep the link opens: its grid, steps and optimisers.
    assert (at.text_input(key="sw_depths").value, at.text_input(key="sw_widths").value) == ("1", "4, 8")
    assert at.number_input(key="sw_steps").value == 10 and at.number_input(key="sw_batch").value == 32
    assert at.checkbox(key="sw_use_agd").value and not at.checkbox(key="sw_use_adam").value
    assert [filled_cells(f) for f in figures(at)[:3]] == [[2]] * 3  # one depth × two widths
    assert "best lr" not in json.dumps(figures(at)[0])  # no baseline in sweep 1

    at.selectbox(key="sw_pick").set_value(2).run()  # and the sweep picked
    assert at.text_input(key="sw_depths").value == "1, 2" and at.checkbox(key="sw_use_sgd").value
    assert at.text_input(key="sw_lr_sgd").value == "0.1"

    for bad in ("77", "²", "①", "9" * 5000, "9223372036854775808"):
        at = clean(sweep_page({"sweep": bad}))
        assert "is not in the run store" in " ".join(texts(at.warning)), bad
        assert at.selectbox(key="sw_pick").value is None
