"""AppTest of the Live training page under the app's navigation: presets, explanations of bad
values, links, Start/Stop with real worker processes, charts with data, presenter view."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agd_viz.store import Store
from apptest_util import APP, app_store, clean, figures, open_page, wait_final

# Real worker processes and servers, seconds each: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/live.py"
TINY = {"lv_depth": 3, "lv_width": 16, "lv_batch_size": 32, "lv_steps": 40}


@pytest.fixture
def db(tmp_path, monkeypatch):
    with app_store(tmp_path / "runs.db", monkeypatch, max_workers=2) as path:  # AGD and baseline side by side
        yield path


def live_page(query=None) -> AppTest:
    return open_page(PAGE, query)


def texts(elements):
    return [e.value for e in elements]


def status_lines(at) -> list[str]:
    """The text of each run's status line (app_widgets.status_line: HTML, tags dropped)."""
    import html
    import re

    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", h.proto.body)).split()) for h in at.get("html")
            if "min-width:8em" in h.proto.body]


def start_button(at):
    return at.button(key="lv_start")


def n_points(fig) -> int:
    total = 0
    for trace in fig["data"]:
        for axis in ("x", "z"):
            values = trace.get(axis)
            if isinstance(values, dict):  # plotly's typed-array encoding {"dtype", "bdata", "shape"}
                shape = values.get("shape")
                total += int(shape.split(",")[0]) if isinstance(shape, str) else len(values["bdata"]) // 4
                break
            if isinstance(values, list):
                total += len(values)
                break
    return total


def seed_group(db, optimizers=("agd", "adam:lr=0.001"), steps=30, status="finished") -> tuple[int, list[int]]:
    """A finished comparison written straight into the store (no training), as a worker would."""
    store = Store(db)
    spec = {"dataset": "digits", "depth": 3, "width": 16, "steps": steps, "batch_size": 32, "seed": 0,
            "device": "cpu", "metrics": "full", "same_init": False, "arch": "mlp", "optimizers": list(optimizers)}
    gid = store.create_group("compare", None, spec)
    ids = []
    for o in optimizers:
        rid = store.create_run({**spec, "optimizers": [o]}, o, group_id=gid)
        recs = [{"step": k, "t": 0.01 * k, "loss": 2.0 / (1 + k), "acc": min(1.0, 0.1 + k / steps),
                 "eta": 0.3 if o == "agd" else None, "G": 0.5 if o == "agd" else None,
                 "lr": None if o == "agd" else 1e-3,
                 "layers": {m: [1.0, 1.1, 0.9] for m in ("w_fro", "w_spec", "w_srank", "w_spec_scaled",
                                                        "g_fro", "g_srank", "rel_update", "u_srank")}}
                for k in range(steps + 1)]
        store.append_metrics(rid, recs, progress={"steps": steps})
        store.finish_run(rid, status, error="loss became non-finite at step 12" if status == "diverged" else None)
        ids.append(rid)
    store.close()
    return gid, ids


# -------------------------------------------------------------------------------------------------


def test_empty_store_invites_a_first_run(db):
    at = clean(live_page())
    assert texts(at.title) == ["Live training"]
    assert "No runs yet" in " ".join(texts(at.caption))
    assert at.button(key="lv_headline").label == "Run “Adam fails at depth 32”"  # one click away
    assert not start_button(at).disabled and at.button(key="lv_stop").disabled
    # The landing link is bare: the link names only values that differ from the defaults.
    assert dict(at.query_params) == {}
    at.number_input(key="lv_depth").set_value(5).run()
    at.text_input(key="lv_adam_lr").input("0.001").run()  # the default rate, spelled another way
    assert dict(at.query_params) == {"depth": "5"}


def test_a_preset_fills_the_whole_form_in_one_click(db):
    at = live_page()
    at.number_input(key="lv_steps").set_value(77).run()
    clean(at.button(key="lv_preset_Adam fails at depth 32").click().run())
    assert at.selectbox(key="lv_dataset").value == "digits"
    assert at.number_input(key="lv_depth").value == 32
    assert at.number_input(key="lv_width").value == 128
    assert at.number_input(key="lv_steps").value == 400  # the preset sets every field
    assert at.checkbox(key="lv_use_agd").value and at.checkbox(key="lv_use_adam").value
    assert not at.checkbox(key="lv_use_sgd").value
    assert at.text_input(key="lv_adam_lr").value == "1e-3"
    assert any("Loaded “Adam fails at depth 32”" in c.value for c in at.sidebar.caption)
    assert at.query_params["depth"] == "32"
    clean(at.button(key="lv_preset_Tuned Adam vs AGD").click().run())
    assert at.number_input(key="lv_depth").value == 8
    assert at.text_input(key="lv_adam_lr").value == "1e-4, 1e-3, 1e-2"


def test_bad_values_are_explained_next_to_the_control_and_block_start(db):
    at = live_page()
    at.text_input(key="lv_adam_lr").input("1e-3, fast").run()
    clean(at)
    assert "'fast' is not a number" in " ".join(texts(at.sidebar.error))
    assert start_button(at).disabled
    assert any("Fix the settings marked in red" in c.value for c in at.caption)

    at.text_input(key="lv_adam_lr").input("1e-3").run()
    assert not at.sidebar.error and not start_button(at).disabled

    at.checkbox(key="lv_use_agd").uncheck()
    at.checkbox(key="lv_use_adam").uncheck().run()
    assert texts(at.sidebar.error) == ["Choose at least one optimiser to train."]
    assert start_button(at).disabled

    at.checkbox(key="lv_use_agd").check().run()
    at.number_input(key="lv_depth").set_value(64)
    at.number_input(key="lv_width").set_value(2048).run()
    assert "hidden weights" in " ".join(texts(at.sidebar.error)) and start_button(at).disabled


def test_a_link_with_bad_values_explains_them_and_uses_defaults(db):
    at = clean(live_page({"depth": "abc", "dataset": "imagenet", "steps": "500", "adam_lr": "0",
                          "group": "x"}))
    warnings = " ".join(texts(at.warning))
    assert "'abc' is not a whole number" in warnings and "Using the default, 8" in warnings
    assert "'imagenet' is not one of" in warnings and "positive" in warnings
    assert "not a run group number" in warnings
    assert at.number_input(key="lv_depth").value == 8
    assert at.selectbox(key="lv_dataset").value == "digits"
    assert at.number_input(key="lv_steps").value == 500  # good values from the link are kept
    assert dict(at.query_params) == {"steps": "500"}  # the link is rewritten with what is used


def test_a_link_opens_its_comparison_and_a_new_session_starts_clean(db):
    first, _ = seed_group(db)
    latest, _ = seed_group(db, optimizers=("agd", "sgd:lr=0.1"))
    at = clean(live_page())  # someone else's comparisons: a new session is not put on them
    assert not [h for h in texts(at.subheader) if h.startswith("Comparison")] and "group" not in at.query_params
    assert "No runs yet" in " ".join(texts(at.caption))
    at = clean(live_page({"group": str(first), "depth": "5"}))
    assert f"Comparison {first}" in texts(at.subheader)
    # The link's fields are relative to its comparison: its settings, with depth 5.
    assert at.number_input(key="lv_depth").value == 5 and at.number_input(key="lv_steps").value == 30
    assert dict(at.query_params) == {"group": str(first), "depth": "5"}
    figs = figures(at)  # loss, accuracy, step size, relative update; the per-layer ones folded away
    assert len(figs) == 4 and all(n_points(f) > 0 for f in figs)
    names = {t.get("name") for t in figs[0]["data"]}
    assert {"agd", "adam lr=0.001"} <= names
    clean(at.button(key="lv_load_group").click().run())  # its settings into the form
    assert at.number_input(key="lv_depth").value == 3 and at.number_input(key="lv_steps").value == 30
    assert at.checkbox(key="lv_use_adam").value and at.text_input(key="lv_adam_lr").value == "0.001"
    at = clean(live_page({"group": "999"}))
    assert "Run group 999 is not in the run store" in " ".join(texts(at.warning))
    assert not [h for h in texts(at.subheader) if h.startswith("Comparison")]
    store = Store(db)
    sweep = store.create_group("sweep", "grid", {})
    store.close()
    at = clean(live_page({"group": str(sweep)}))
    assert f"Run group {sweep} is a sweep, not a comparison" in " ".join(texts(at.warning))


def test_a_link_to_a_comparison_opens_with_its_charts_and_the_form_folded(db):
    """Someone following a link (the session's first view of the page) gets the comparison's charts
    and a folded form: its forty-odd widgets are not sent until asked for (benchmarks/cold_draw.py).
    A link that changes a field, a preset, or a form with an error shows the form."""
    gid, _ = seed_group(db)

    def first_view(query):  # a new browser session whose first page is this link
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params.update(query)
        return clean(at.run())

    at = first_view({"group": str(gid)})
    assert f"Comparison {gid}" in texts(at.subheader) and len(figures(at)) == 4
    assert not at.sidebar.number_input and not at.sidebar.checkbox and not at.sidebar.selectbox
    assert not start_button(at).disabled  # Start trains the comparison's settings, shown above its charts
    clean(at.button(key="lv_form_unfold").click().run())
    assert at.number_input(key="lv_depth").value == 3 and at.number_input(key="lv_steps").value == 30
    assert at.checkbox(key="lv_use_adam").value and dict(at.query_params) == {"group": str(gid)}
    clean(at.run())
    assert at.sidebar.number_input  # it stays open

    at = first_view({"group": str(gid), "depth": "5"})
    assert at.number_input(key="lv_depth").value == 5  # the link changes the form: shown

    at = first_view({"group": str(gid)})
    clean(at.button(key="lv_preset_Adam fails at depth 32").click().run())
    assert at.number_input(key="lv_depth").value == 32  # a preset shows what it set

    store = Store(db)
    cifar = store.create_group("compare", None, {"dataset": "cifar10", "depth": 3, "width": 16, "steps": 30,
                                                  "batch_size": 32, "seed": 0, "device": "cpu",
                                                  "optimizers": ["agd"]})
    store.close()
    at = first_view({"group": str(cifar)})
    assert start_button(at).disabled and at.sidebar.selectbox  # an error to fix: never folded


def test_showing_stored_runs_does_not_import_torch(db):
    """Opening the page (form, charts of a finished comparison) stays light: torch is imported
    only to start runs or to draw a 2-D decision boundary."""
    gid, _ = seed_group(db)
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=60).run()\n"
        f"at.query_params['group'] = '{gid}'\n"
        f"at.switch_page({PAGE!r}).run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "assert len(at.get('bidi_component')) == 4\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_failed_run_says_why(db):
    gid, _ = seed_group(db, status="diverged")
    at = clean(live_page({"group": str(gid)}))
    errors = " ".join(texts(at.error))
    assert "Diverged: loss became non\\-finite at step 12" in errors


def test_presenter_view_hides_the_controls_and_keeps_big_numbers(db):
    gid, _ = seed_group(db)
    at = clean(live_page({"present": "1", "group": str(gid)}))
    assert at.session_state["lv_present"] and at.button(key="lv_present_switch").icon == ":material/toggle_on:"
    assert not at.sidebar.number_input and not at.sidebar.button  # no form, no presets
    agd, adam = status_lines(at)  # one line per run: name, chips, progress
    assert "agd" in agd and "step 30" in agd and "loss" in agd and "acc" in agd and "η 0.3" in agd
    assert "lr 0.001" in adam and "finished · step 30 / 30" in adam
    assert dict(at.query_params) == {"group": str(gid), "present": "1"}
    figs = figures(at)
    layout = figs[0]["layout"]
    assert layout["legend"]["font"]["size"] >= 18 and layout["xaxis"]["tickfont"]["size"] >= 18
    assert layout["yaxis"]["tickfont"]["size"] >= 18 and 300 <= layout["height"] <= 440  # fits 720 px
    at.button(key="lv_present_switch").click().run()
    assert at.sidebar.number_input and "present" not in at.query_params
    assert at.number_input(key="lv_depth").value == 3  # the form (the comparison's settings) survived being hidden


def test_start_trains_every_optimiser_and_the_charts_fill_in(db):
    at = live_page()
    for key, value in TINY.items():
        at.number_input(key=key).set_value(value)
    at.run()
    clean(start_button(at).click().run())
    store = Store(db)
    runs = sorted(store.list_runs(), key=lambda r: r["id"])
    assert [r["optimizer"] for r in runs] == ["agd", "adam:lr=0.001"]
    group = runs[0]["group_id"]
    assert at.session_state["live_group"] == group and at.query_params["group"] == str(group)
    assert len(status_lines(at)) == 2  # a progress line per run while it trains
    assert start_button(at).disabled and not at.button(key="lv_stop").disabled
    assert "lv_pause_switch" in [b.key for b in at.button]  # Pause charts, while it trains

    runs = wait_final(db)
    assert all(r["status"] == "finished" for r in runs), [(r["status"], r["error"]) for r in runs]
    clean(at.run())
    at.session_state["lv_layers"] = True  # the per-layer charts' expander, opened
    clean(at.run())
    figs = figures(at)
    assert len(figs) == 8
    loss = figs[0]
    assert {t["name"] for t in loss["data"]} == {"agd", "adam lr=0.001"}
    assert all(n_points(f) > 0 for f in figs), [n_points(f) for f in figs]
    progress = status_lines(at)
    assert all("finished · step 40 / 40" in t for t in progress), progress
    assert not start_button(at).disabled and at.button(key="lv_stop").disabled
    assert "lv_pause_switch" not in [b.key for b in at.button]  # nothing left to pause
    # The page's frames were filled incrementally: every step once.
    frames = at.session_state["live_frames"].runs
    assert all(list(fr.scalars["step"]) == list(range(41)) for fr in frames.values())
    store.close()


def test_stop_cancels_the_runs_and_keeps_what_they_logged(db):
    at = live_page()
    for key, value in dict(TINY, lv_steps=20000, lv_width=64).items():
        at.number_input(key=key).set_value(value)
    at.checkbox(key="lv_use_adam").uncheck().run()
    clean(start_button(at).click().run())
    store = Store(db)
    (run,) = store.list_runs()
    end = time.monotonic() + 60
    while time.monotonic() < end and (store.get_run(run["id"])["step"] or 0) < 5:
        time.sleep(0.2)
    clean(at.button(key="lv_stop").click().run())
    (run,) = wait_final(db, 30)
    assert run["status"] == "cancelled" and run["step"] >= 5
    clean(at.run())
    assert "cancelled" in status_lines(at)[0]
    assert n_points(figures(at)[0]) > 0
    store.close()


def test_a_2d_dataset_draws_each_optimisers_decision_boundary(db):
    out = subprocess.run(
        [sys.executable, "-m", "agd_viz", "train", "--dataset", "moons", "--depth", "3", "--width", "16",
         "--optimizer", "agd", "--optimizer", "adam:lr=0.01", "--steps", "30", "--batch-size", "64",
         "--device", "cpu", "--db", str(db), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    at = clean(live_page({"group": "1"}))
    boundary = [f for f in figures(at) if any(t.get("type") == "heatmap" for t in f["data"])
                and f["layout"].get("title", {}).get("text", "").endswith("step 30")]
    assert len(boundary) == 2
    titles = sorted(f["layout"]["title"]["text"] for f in boundary)
    assert titles == ["adam lr=0.01 · step 30", "agd · step 30"]
    assert {t.get("name") for t in boundary[0]["data"]} >= {"upper", "lower"}
