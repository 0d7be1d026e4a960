"""AppTest of the Runs page under the app's navigation: the table with its filters and sort, the
?run= deep link putting runs on a dashboard of several metrics, final values against a setting,
the exports and re-run command, the page's state in its link, deleting with a confirmation (a
running run is stopped first), names shown as text only."""

import csv
import io
import json
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from agd_viz import cli, jobs
from agd_viz.store import Store
from agd_viz.spec import RunSpec
from agd_viz.views import runs as rv
from apptest_util import app_store, charts_of, clean, open_page

# Real worker processes and servers, seconds each: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/runs.py"
NAME = "*bold* <b>x</b>"


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A store holding real tiny runs: a comparison (agd, adam) with per-layer metrics, named
    with markdown and HTML, and a 2-cell AGD sweep without."""
    path = tmp_path / "runs.db"
    st.cache_resource.clear()
    monkeypatch.setenv("AGD_VIZ_DB", str(path))
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    common = ["--dataset", "digits", "--steps", "15", "--batch-size", "32", "--device", "cpu",
              "--quiet", "--json", "--db", str(path)]
    assert cli.main(["train", "--depth", "3", "--width", "16", "--optimizer", "agd", "--optimizer",
                     "adam:lr=1e-2", "--metrics", "full", "--name", NAME, *common]) == 0
    assert cli.main(["sweep", "--depths", "1,2", "--widths", "8", "--optimizer", "agd", *common]) == 0
    for s, h in saved.items():
        signal.signal(s, h)
    with app_store(path, monkeypatch):
        yield path


def runs_page(query=None) -> AppTest:
    return open_page(PAGE, query)


def texts(elements):
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def table_ids(at) -> list[int]:
    return [int(i) for i in at.dataframe[0].value["id"]]


def chart(at, key: str) -> dict:
    (el,) = [c for c in charts_of(at) if c.key == key]
    return el.figure


# -------------------------------------------------------------------------------------------------


def test_the_table_lists_filters_and_sorts_the_runs(db):
    at = clean(runs_page())
    assert texts(at.title) == ["Runs"]
    assert table_ids(at) == [4, 3, 2, 1] and "4 of 4 runs shown" in texts(at.caption)
    assert [c.key for c in charts_of(at)] == ["rn_hparams"]  # nothing selected, no dashboard

    at.multiselect(key="rn_f_opt").set_value(["adam lr=0.01"]).run()
    assert table_ids(at) == [2]
    at.multiselect(key="rn_f_opt").set_value([])
    at.multiselect(key="rn_f_depth").set_value([1, 2]).run()
    assert table_ids(at) == [4, 3]
    at.multiselect(key="rn_f_depth").set_value([])
    at.multiselect(key="rn_f_status").set_value(["finished"])
    at.text_input(key="rn_f_text").input("bold").run()
    assert table_ids(at) == [2, 1] and "2 of 4 runs shown" in texts(at.caption)
    at.text_input(key="rn_f_text").input("").run()

    at.selectbox(key="rn_sort").set_value("depth")
    at.toggle(key="rn_asc").set_value(True).run()
    assert [int(d) for d in at.dataframe[0].value["depth"]] == [1, 2, 3, 3]
    at.selectbox(key="rn_sort").set_value("final_train_acc").run()
    accs = list(at.dataframe[0].value["final_train_acc"])
    assert accs == sorted(accs)
    # names are data in the table, never markup anywhere on the page
    assert NAME in set(at.dataframe[0].value["name"])
    assert not any("<b>" in m for m in texts(at.markdown))


def test_a_link_puts_its_runs_on_a_dashboard_with_exports_and_rerun_commands(db, tmp_path):
    at = clean(runs_page({"run": "1,2"}))
    assert at.multiselect(key="rn_sel").value == [1, 2]
    assert at.dataframe[0].proto.selection_mode  # the table offers ticking rows
    fig = chart(at, "rn_chart")  # the default dashboard: loss and accuracy, one shared step axis
    in_legend = sorted(fig["data"], key=lambda t: t["legendrank"])  # AGD is drawn last, listed first
    assert [t["name"] for t in in_legend] == ["#1 agd · 3×16", "#2 adam lr=0.01 · 3×16"] * 2
    assert {t["yaxis"] for t in fig["data"]} == {"y", "y2"} and {t.get("xaxis", "x") for t in fig["data"]} == {"x"}
    assert fig["layout"]["yaxis2"]["anchor"] == "x"  # zooming one panel zooms both
    config = [c for c in charts_of(at) if c.key == "rn_chart"][0].config
    assert config["toImageButtonOptions"]["format"] == "png" and config["displayModeBar"]
    assert [b.proto.label for b in at.get("download_button")] == ["Metrics as CSV", "Metrics as JSON"]

    commands = [c.value for c in at.code if "python -m agd_viz train" in c.value]
    assert len(commands) == 2
    for command, rid in zip(commands, (1, 2)):
        spec = Store(db).get_run(rid)["spec"]
        cd, train = command.split(" && ")
        assert cd == f"cd {shlex.quote(str(ROOT))}" and f"--db {db}" in train
        args = cli.build_parser().parse_args(shlex.split(train)[3:])
        assert cli._spec_from_args(args) == RunSpec.from_dict(spec)
    specs = [json.loads(c.value) for c in at.code if c.language == "json"]
    assert [s["optimizers"] for s in specs] == [["agd"], ["adam:lr=1e-2"]]
    assert f"Name: {NAME}" in texts(at.text)  # st.text: shown literally

    # a per-layer metric alone: a layer picked, smoothed, on wall time, in SVG
    at.multiselect(key="rn_metrics").set_value(["w_spec_scaled"]).run()
    assert at.multiselect(key="rn_layers").options == ["0", "1", "2"]
    at.multiselect(key="rn_layers").set_value([2])
    at.slider(key="rn_smooth").set_value(0.5)
    at.radio(key="rn_x").set_value("time")
    at.toggle(key="rn_logy").set_value(True)
    at.radio(key="rn_img").set_value("svg").run()
    fig = chart(clean(at), "rn_chart")
    assert len(fig["data"]) == 2  # layer 2 of each run
    assert fig["layout"]["xaxis"]["title"]["text"] == "wall time (s)"
    assert fig["layout"]["yaxis"]["type"] == "log" and "EMA 0.5" in fig["layout"]["yaxis"]["title"]["text"]
    config = [c for c in charts_of(at) if c.key == "rn_chart"][0].config
    assert config["toImageButtonOptions"]["format"] == "svg"

    # picking more runs rewrites the link, which keeps only what differs from the defaults
    at.multiselect(key="rn_sel").set_value([1, 2, 3]).run()
    assert at.query_params["run"] == "1,2,3" and at.query_params["metric"] == "w_spec_scaled"
    assert at.query_params["x"] == "time" and at.query_params["logy"] == "1" and "sort" not in at.query_params

    # the re-run command works from another folder and lands in the store it names
    other = tmp_path / "elsewhere"
    other.mkdir()
    out = subprocess.run(["bash", "-c", commands[0].replace("--quiet", "") + " --quiet --json"], cwd=other,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    again = Store(db).get_run(json.loads(out.stdout)[0]["run_id"])
    assert RunSpec.from_dict(again["spec"]) == RunSpec.from_dict(Store(db).get_run(1)["spec"])


def test_the_csv_export_carries_each_runs_settings(db):
    rows = list(csv.DictReader(io.StringIO(rv.export_csv(Store(db), [1, 3]))))
    first = rows[0]
    assert (first["run_id"], first["dataset"], first["depth"], first["width"], first["optimizer"]) == \
        ("1", "digits", "3", "16", "agd")
    depth = Store(db).get_run(3)["spec"]["depth"]
    assert {r["depth"] for r in rows if r["run_id"] == "3"} == {str(depth)} and first["status"] == "finished"


def test_a_reloaded_link_restores_filters_sort_and_charts_and_ticks_its_runs(db):
    at = clean(runs_page({"run": "1", "dataset": "digits", "depth": "3", "sort": "width", "asc": "1",
                          "metric": "loss,eta", "hx": "depth", "hm": "final_test_acc"}))
    assert at.multiselect(key="rn_f_depth").value == [3] and at.selectbox(key="rn_sort").value == "width"
    assert at.toggle(key="rn_asc").value and at.multiselect(key="rn_metrics").value == ["loss", "eta"]
    assert at.selectbox(key="rn_hp_x").value == "depth"
    ids = table_ids(at)
    assert sorted(ids) == [1, 2]
    assert json.loads(at.dataframe[0].proto.selection_default)["selection"]["rows"] == [ids.index(1)]
    bad = clean(runs_page({"depth": "x", "sort": "nope", "smooth": "5"}))
    notes = " ".join(texts(bad.warning))
    assert "depth='x'" in notes and "sort='nope'" in notes and "smooth='5'" in notes
    assert bad.selectbox(key="rn_sort").value == "id"


def test_final_values_against_a_setting_average_seeds_and_keep_networks_apart(db):
    at = clean(runs_page())
    at.selectbox(key="rn_hp_x").set_value("depth").run()
    fig = chart(at, "rn_hparams")
    lines = [t for t in fig["data"] if t.get("mode") == "lines+markers"]
    assert fig["layout"]["xaxis"]["type"] == "log"
    names = sorted(t["name"] for t in lines)
    assert names == ["adam lr=0.01 · width 16", "agd · width 16", "agd · width 8"]


def test_a_link_with_bad_runs_says_so(db):
    at = clean(runs_page({"run": "abc,3,99"}))
    warnings = " ".join(texts(at.warning))
    assert "'abc'" in warnings and "#99 are not in the store" in warnings
    assert at.multiselect(key="rn_sel").value == [3]
    assert at.query_params["run"] == "3"


def operator(at, monkeypatch, key="let me in"):
    """This session holds the server's operator key (AGD_VIZ_ADMIN_KEY). As if entered in the
    sidebar's Operator box: AppTest keeps app.py's own elements only on its first run
    (test_robustness drives the box itself on a real server)."""
    monkeypatch.setenv("AGD_VIZ_ADMIN_KEY", key)
    at.session_state["agd_operator_key"] = key
    return at.run()


def test_delete_asks_first_and_removes_runs_and_their_empty_group(db, monkeypatch):
    at = clean(runs_page({"run": "3,4"}))
    at.button(key="rn_delete").click().run()
    assert "cannot be undone" in " ".join(texts(at.warning))
    at.button(key="rn_delete_no").click().run()
    assert Store(db).get_run(3) is not None and not at.warning

    # The command line's runs are nobody's session's: only the operator deletes them from a page.
    at.button(key="rn_delete").click().run()
    clean(at.button(key="rn_delete_yes").click().run())
    assert "Runs #3, #4 were started by someone else" in " ".join(texts(at.error))
    assert Store(db).get_run(3) is not None
    operator(at, monkeypatch)
    at.button(key="rn_delete").click().run()
    clean(at.button(key="rn_delete_yes").click().run())
    assert "Deleted 2 run(s): #3, #4." in texts(at.success)
    store = Store(db)
    assert [r["id"] for r in store.list_runs()] == [2, 1]
    assert store.list_groups(kind="sweep") == []  # the sweep had no runs left
    assert table_ids(at) == [2, 1] and at.multiselect(key="rn_sel").value == []
    store.close()


def test_deleting_a_running_run_stops_it_first(db, monkeypatch):
    spec = RunSpec(dataset="digits", depth=2, width=8, steps=200_000, batch_size=32, device="cpu",
                   metrics="none")
    with jobs.JobManager(db, max_workers=1) as other:  # a run trained by someone else's server
        _, (rid,) = other.submit(spec)
        store = Store(db)
        end = time.monotonic() + 90
        while (store.get_run(rid)["step"] or 0) < 1:
            assert time.monotonic() < end, "the worker never started"
            time.sleep(0.2)
        at = operator(clean(runs_page({"run": str(rid)})), monkeypatch)
        at.button(key="rn_delete").click().run()
        assert "1 of them still training will be stopped first" in " ".join(texts(at.warning))
        clean(at.button(key="rn_delete_yes").click().run())
        assert f"Deleted 1 run(s): #{rid}." in texts(at.success)
        assert store.get_run(rid) is None
        end = time.monotonic() + 10
        while other.active_runs():  # its worker saw the cancel and exited
            assert time.monotonic() < end
            other.poll()
            time.sleep(0.1)
        store.close()
