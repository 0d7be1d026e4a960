"""Issue 9 in the pages: learning-rate-free optimisers, downloadable image data sets, the CNN,
and the paper's comparisons, on the Live page (and the Sweep page where they apply).

AppTests run the real app; downloads come from a local HTTP server on 127.0.0.1 serving small
generated IDX files (tests/test_downloads.py's helpers) into a cache under tmp_path. A missing
optimiser package is simulated through the vocabulary itself (`optspec.register` with a module
that does not exist), never by patching the availability check.
"""

import re
from pathlib import Path

import pytest

import dataclasses

from agd_viz import charts, downloads, optspec, paper
from agd_viz.spec import SweepConfig
from agd_viz.views import datasets as data_view
from agd_viz.views import live_form as live
from agd_viz.views import paper as paper_view
from agd_viz.store import Store
from apptest_util import app_store, clean, figures, open_page, wait_final
from test_downloads import Server, free_port, mnist_files, source_for

# Real worker processes and servers, seconds each: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LIVE, SWEEP = "pages/live.py", "pages/sweep.py"
TINY = {"lv_depth": 3, "lv_width": 8, "lv_batch_size": 16, "lv_steps": 12}


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv(downloads.ENV_DIR, str(tmp_path / "cache"))  # nothing downloaded yet
    for name in (data_view.ENV_DATA_URL, data_view.ENV_ALLOW_DOWNLOADS, "AGD_VIZ_MAX_GRID"):
        monkeypatch.delenv(name, raising=False)
    with app_store(tmp_path / "runs.db", monkeypatch, max_workers=3) as path:
        yield path


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def missing_package():
    """D-Adapt Adam re-registered as needing a package that does not exist, then restored."""
    name = "dadapt-adam"
    info = optspec.OPTIMIZERS[name]
    optspec.register(dataclasses.replace(info, requires=("agd_viz_no_such_package",
                                                         "pip install agd-viz-no-such-package")))
    yield "pip install agd-viz-no-such-package"
    optspec.register(info)


page = open_page


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements).replace("\\", "")  # md_escape'd text, plain


def start(at):
    return at.button(key="lv_start")


def seed_group(db, spec: dict, accs: dict[str, float]) -> int:
    """A finished comparison in the store, each run with a final test accuracy."""
    store = Store(db)
    gid = store.create_group("compare", None, spec)
    for opt, acc in accs.items():
        rid = store.create_run({**spec, "optimizers": [opt]}, opt, group_id=gid)
        store.append_metrics(rid, [{"step": k, "t": 0.01 * k, "loss": 1.0 / (1 + k), "acc": 0.5,
                                    "lr": None if opt == "agd" else 1e-4, "eta": 0.2 if opt == "agd" else None}
                                   for k in range(5)], progress={"steps": 4})
        store.finish_run(rid, "finished", summary={"final_test_acc": acc, "final_train_acc": acc})
    store.close()
    return gid


# -------------------------------------------------------------------------------------------------
# Logic (agd_viz.views, agd_viz.charts)


def test_the_form_offers_every_optimiser_of_the_vocabulary():
    assert live.OPTIMIZER_NAMES == tuple(optspec.OPTIMIZERS)
    assert set(live.OPTION_OPTIMIZERS) == {"prodigy", "dadapt-adam", "schedulefree-adamw"}
    assert live.optimizer_statuses() == {n: optspec.available(n) for n in live.OPTION_OPTIMIZERS}


def test_lr_free_options_parse_check_and_round_trip():
    assert live.parse_options("prodigy", "d_coef = 0.5; decouple=false") == {"d_coef": 0.5, "decouple": False}
    assert live.normalize_options("schedulefree-adamw", " lr=1e-2  warmup_steps=10") == "lr=1e-2, warmup_steps=10"
    for text, why in (("d_coef", "key=value"), ("foo=1", "unknown option 'foo'"), ("d_coef=-1", "> 0"),
                      ("beta1=1", "[0, 1)"), ("d_coef=1, d_coef=2", "twice"), ("decouple=maybe", "true or false")):
        with pytest.raises(ValueError, match=re.escape(why)):
            live.parse_options("prodigy", text)
    state = dict(live.DEFAULTS, optimizers=("agd", "prodigy", "schedulefree-adamw"),
                 prodigy_opts="d_coef=0.5, weight_decay=0.01", schedulefree_adamw_opts="")
    specs = live.optimizer_specs(state)
    assert specs == ["agd", "prodigy:d_coef=0.5,weight_decay=0.01", "schedulefree-adamw"]
    assert all(optspec.parse(s) for s in specs)  # the library accepts what the form makes
    assert live.check(state, available={n: (True, None) for n in live.OPTION_OPTIMIZERS}) == {}
    back, notes = live.state_from_query(live.query_from_state(state))
    assert not notes and back["optimizers"] == state["optimizers"] and back["prodigy_opts"] == state["prodigy_opts"]
    again = live.state_from_spec(live.spec_fields(state))
    assert live.optimizer_specs(again) == specs
    bad = live.check(dict(state, prodigy_opts="d_coef=zero"))
    assert "d_coef must be a number" in bad["prodigy_opts"][0].text
    missing = live.check(state, available={**{n: (True, None) for n in live.OPTION_OPTIMIZERS},
                                           "prodigy": (False, "pip install prodigyopt")})
    assert "pip install prodigyopt" in missing["prodigy_opts"][0].text and live.has_errors(missing)


def test_cnn_is_offered_on_image_data_only_and_needs_depth_two():
    assert live.image_shape("digits") == (1, 8, 8) and live.image_shape("cifar10") == (3, 32, 32)
    assert live.image_shape("moons") is None
    state = dict(live.DEFAULTS, arch="cnn", depth=1)
    assert "depth ≥ 2" in live.check(state)["arch"][0].text
    assert live.spec_fields(dict(state, depth=3))["arch"] == "cnn"
    assert live.spec_fields(dict(state, dataset="moons"))["arch"] == "mlp"  # hidden control, MLP
    back, notes = live.state_from_query({"arch": "cnn", "dataset": "mnist", "train_samples": "500"})
    assert not notes and back["arch"] == "cnn" and live.data_options(back) == {"train_samples": 500}
    assert live.query_from_state(back)["arch"] == "cnn"
    assert "at most that" in live.check(dict(back, dataset="cifar10", train_samples=55000))["train_samples"][0].text


def test_download_dataset_reports_progress_and_names_the_url_when_offline(db, server, monkeypatch, tmp_path):
    files = mnist_files()
    server.files.update(files)
    monkeypatch.setitem(downloads.SOURCES, "mnist", source_for("mnist", files, server.url))
    assert not data_view.data_status("mnist").downloaded
    calls = []
    ok, where = data_view.download_dataset("mnist", progress=lambda d, t, m: calls.append(data_view.download_progress(d, t, m)))
    assert ok and Path(where) == tmp_path / "cache" / "mnist" and data_view.data_status("mnist").downloaded
    assert calls[-1][0] == 1.0 and calls[-1][1].startswith("MNIST: done")
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(data_view.ENV_DATA_URL, url)
    ok, why = data_view.download_dataset("fashion-mnist")
    assert not ok and f"{url}/fashion-mnist/train-images-idx3-ubyte.gz: connection refused" in why
    monkeypatch.setenv(data_view.ENV_ALLOW_DOWNLOADS, "0")
    assert data_view.download_dataset("fashion-mnist") == (False, "downloads are turned off on this server "
                                                             "(AGD_VIZ_ALLOW_DOWNLOADS=0).")


def test_paper_tables_match_runs_to_the_paper():
    spec = dict(paper.PRESETS["paper-fcn16-cifar10"].spec, optimizers=["agd", "adam:lr=0.0001"], steps=500)
    rows = [{"optimizer": "agd", "status": "finished", "summary": {"final_test_acc": 0.5}},
            {"optimizer": "adam:lr=0.0001", "status": "running", "summary": None}]
    assert paper_view.preset_for_comparison(spec) == "paper-fcn16-cifar10"
    table, caption = paper_view.comparison_table(spec, rows)
    assert list(table["Paper"]) == ["52.7 % test accuracy", "53.5 % test accuracy (best tuned rate)"]
    assert list(table["Measured here"]) == ["50.0 %", "–"]
    assert "ran 500 steps; the preset runs 19,500" in caption
    rows += [{"optimizer": "adam:lr=0.001", "status": "finished", "summary": {"final_test_acc": 0.46}},
             {"optimizer": "adam:lr=0.01", "status": "finished", "summary": {"final_test_acc": 0.41}}]
    table, _ = paper_view.comparison_table(spec, rows)
    assert list(table["Measured here"]) == ["50.0 %", "46.0 % (best: adam lr=0.001)"]
    assert paper_view.comparison_table(dict(spec, depth=4), rows) is None


def test_new_optimisers_get_their_own_stable_colours():
    colours = {charts.color_for(n) for n in ("agd", "adam", "sgd", "adamw", *live.OPTION_OPTIMIZERS)}
    assert len(colours) == 7
    assert charts.color_for("prodigy lr=1") == charts.color_for("prodigy")


# -------------------------------------------------------------------------------------------------
# Live page


def test_lr_free_optimisers_train_from_the_page_and_show_their_step_size(db):
    at = page(LIVE)
    for key, value in TINY.items():
        at.number_input(key=key).set_value(value)
    at.checkbox(key="lv_use_adam").uncheck()
    at.checkbox(key="lv_use_prodigy").check()
    at.checkbox(key="lv_use_schedulefree-adamw").check().run()
    clean(at.text_input(key="lv_prodigy_opts").input("d_coef=0.5").run())
    assert at.query_params["optimizers"] == "agd,prodigy,schedulefree-adamw"
    assert at.query_params["prodigy_opts"] == "d_coef=0.5"
    clean(start(at).click().run())
    runs = wait_final(db)
    assert [r["optimizer"] for r in runs] == ["agd", "prodigy:d_coef=0.5", "schedulefree-adamw"]
    assert all(r["status"] == "finished" for r in runs), [(r["status"], r["error"]) for r in runs]
    clean(at.run())
    step = figures(at)[2]
    names = {t.get("name") for t in step["data"]}
    assert {"agd η", "prodigy lr=1 d_coef=0.5 d·lr", "schedulefree-adamw lr=0.0025 lr"} <= names
    colours = {t["name"]: t["line"]["color"] for t in step["data"] if t.get("name") and "line" in t}
    assert colours["prodigy lr=1 d_coef=0.5 d·lr"] == charts.color_for("prodigy:d_coef=0.5")


def test_a_missing_package_is_shown_disabled_with_its_install_command(db, missing_package):
    at = clean(page(LIVE))
    box = at.checkbox(key="lv_use_dadapt-adam")
    assert box.disabled and missing_package in box.help
    assert missing_package in texts(at.sidebar.caption)
    assert not at.checkbox(key="lv_use_prodigy").disabled  # installed ones stay available
    # A link that asks for it: ticked, so it can be unticked; Start waits and says why.
    at = clean(page(LIVE, {"optimizers": "agd,dadapt-adam"}))
    assert at.checkbox(key="lv_use_dadapt-adam").value and not at.checkbox(key="lv_use_dadapt-adam").disabled
    assert missing_package in texts(at.sidebar.error) and start(at).disabled
    at.checkbox(key="lv_use_dadapt-adam").uncheck().run()
    assert not at.sidebar.error and not start(at).disabled


def test_download_button_fetches_on_click_then_start_trains_a_cnn(db, server, monkeypatch, tmp_path):
    files = mnist_files(n_train=40, n_test=10)
    server.files.update(files)
    monkeypatch.setitem(downloads.SOURCES, "mnist", source_for("mnist", files, server.url))
    monkeypatch.setenv(data_view.ENV_DATA_URL, server.url)  # a local mirror: <url>/mnist/<file>
    real, fed = data_view.download_dataset, []

    def tap(name, progress=None):  # the page's progress callback, fed by the library
        return real(name, progress=lambda d, t, m: (fed.append((d, t)), progress(d, t, m)))

    monkeypatch.setattr(data_view, "download_dataset", tap)
    at = clean(page(LIVE, {"dataset": "mnist"}))
    assert "MNIST is not downloaded yet" in texts(at.sidebar.error) and start(at).disabled
    assert "not downloaded yet" in texts(at.caption)
    button = at.button(key="lv_download")
    assert button.label.startswith("Download MNIST (") and server.requests == []  # only on click
    clean(button.click().run())
    assert sorted(server.requests) == sorted(files)
    assert fed and fed[-1][0] == fed[-1][1] == sum(len(b) for b in files.values())
    assert downloads.is_downloaded("mnist") and "MNIST is downloaded and checked" in texts(at.sidebar.success)
    assert not at.sidebar.error and not [b for b in at.button if b.key == "lv_download"]
    at.radio(key="lv_arch").set_value("cnn")
    for key, value in dict(TINY, lv_steps=5).items():
        at.number_input(key=key).set_value(value)
    clean(at.run())
    assert not start(at).disabled
    clean(start(at).click().run())
    runs = wait_final(db)
    assert all(r["status"] == "finished" for r in runs), [(r["status"], r["error"]) for r in runs]
    assert {r["spec"]["arch"] for r in runs} == {"cnn"} and {r["spec"]["dataset"] for r in runs} == {"mnist"}


def test_offline_download_shows_the_librarys_error_and_downloads_can_be_turned_off(db, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(data_view.ENV_DATA_URL, url)
    at = clean(page(LIVE, {"dataset": "cifar10"}))
    clean(at.button(key="lv_download").click().run())
    error = texts(at.sidebar.error)
    assert "Download failed: could not download cifar-10-binary.tar.gz for CIFAR-10" in error
    assert f"{url}/cifar10/cifar-10-binary.tar.gz: connection refused" in error
    assert start(at).disabled and not downloads.is_downloaded("cifar10")
    monkeypatch.setenv(data_view.ENV_ALLOW_DOWNLOADS, "0")
    at = clean(page(LIVE, {"dataset": "cifar10"}))
    assert "downloads from the page are turned off here (AGD_VIZ_ALLOW_DOWNLOADS=0)" in texts(at.sidebar.error)
    assert not [b for b in at.button if b.key == "lv_download"] and start(at).disabled


def test_architecture_choice_for_image_data_and_its_link(db):
    at = clean(page(LIVE))
    assert at.radio(key="lv_arch").value == "mlp"  # digits: 8×8 images
    at.radio(key="lv_arch").set_value("cnn")
    clean(at.number_input(key="lv_depth").set_value(1).run())
    assert "A CNN needs depth ≥ 2" in texts(at.sidebar.error) and start(at).disabled
    clean(at.number_input(key="lv_depth").set_value(4).run())
    assert not start(at).disabled and at.query_params["arch"] == "cnn"
    at = clean(page(LIVE, {"arch": "cnn", "depth": "5"}))
    assert at.radio(key="lv_arch").value == "cnn" and at.number_input(key="lv_depth").value == 5
    at = clean(page(LIVE, {"dataset": "moons"}))
    assert not [r for r in at.radio if r.key == "lv_arch"]  # 2-D points: no CNN


def test_a_paper_preset_fills_the_form_and_shows_the_papers_numbers(db):
    at = clean(page(LIVE))
    # Folded, the paper's presets are not sent at all (a cold page loads and draws less).
    assert not [b for b in at.button if b.key.startswith("lv_paper_")]
    at.session_state["lv_paper_open"] = True  # the expander, opened
    clean(at.run())
    clean(at.button(key="lv_paper_paper-fcn16-cifar10").click().run())
    assert at.selectbox(key="lv_dataset").value == "cifar10"
    assert (at.number_input(key="lv_depth").value, at.number_input(key="lv_width").value) == (16, 512)
    assert at.number_input(key="lv_steps").value == 19500
    assert at.text_input(key="lv_adam_lr").value == "1e-05, 0.0001, 0.001, 0.01"
    assert at.radio(key="lv_loss").value == "square" and at.checkbox(key="lv_augment").value
    assert "Made for a GPU: slow on a CPU" in texts(at.sidebar.warning)
    spec = {**paper.PRESETS["paper-fcn16-cifar10"].spec, "optimizers": ["agd", "adam:lr=0.0001"], "steps": 4,
            "seed": 0, "device": "cpu", "same_init": False}
    gid = seed_group(db, spec, {"agd": 0.481, "adam:lr=0.0001": 0.502})
    at = clean(page(LIVE, {"group": str(gid)}))
    (table,) = at.dataframe
    df = table.value
    assert list(df["Paper"]) == ["52.7 % test accuracy", "53.5 % test accuracy (best tuned rate)"]
    assert list(df["Measured here"]) == ["48.1 %", "50.2 % (best: adam lr=0.0001)"]
    assert "ran 4 steps; the preset runs 19,500" in texts(at.caption)


# -------------------------------------------------------------------------------------------------
# Sweep page


def test_sweep_page_offers_the_papers_depth_sweep_and_its_numbers(db, missing_package):
    at = clean(page(SWEEP))
    assert at.checkbox(key="sw_use_dadapt-adam").disabled  # the same install hint as on Live
    at.session_state["sw_paper_open"] = True  # the paper's presets' expander, opened
    clean(at.run())
    clean(at.button(key="sw_paper_paper-depth-sweep-cifar10").click().run())
    assert at.text_input(key="sw_depths").value == "2, 4, 8, 16, 32" and at.text_input(key="sw_widths").value == "512"
    assert at.selectbox(key="sw_dataset").value == "cifar10" and at.text_input(key="sw_lr_adam").value == "1e-4"
    assert "Made for a GPU" in texts(at.sidebar.warning)
    assert "CIFAR-10 is not downloaded yet" in texts(at.error) and at.button(key="sw_start").disabled
    config = SweepConfig(depths=(2, 4), widths=(512,), optimizers=("agd", "adam:lr=1e-4"), dataset="cifar10",
                            steps=4)
    store = Store(db)
    gid = store.create_group("sweep", None, config.to_dict())
    for d, acc in ((2, 0.40), (4, 0.45)):
        for opt in config.optimizers:
            fields = config.spec_fields(d, 512)
            rid = store.create_run({**fields, "optimizers": [opt]}, opt, group_id=gid)
            store.finish_run(rid, "finished", summary={"final_test_acc": acc if opt == "agd" else 0.1,
                                                       "final_train_loss": 1.0})
    store.close()
    at = clean(page(SWEEP, {"sweep": str(gid)}))
    df = at.dataframe[0].value
    assert "best test cell: depth 4, width 2048, 63.7 % test accuracy" in list(df["Paper"])
    measured = " ".join(df["Measured here"])
    assert "best test cell: depth 4, width 512, 45.0 %" in measured and "worst test cell: depth 2, width 512, 40.0 %" in measured
    # Figure 6's claim is about training: our final train loss, not test accuracy, stands beside it.
    row = df.set_index("Paper").loc["training performance: wider was always better; depths 8 and 16 beat depth 32"]
    assert "final train loss at width 512 by depth: 2: 1, 4: 1" in row["Measured here"]
    assert len(df) == 3
