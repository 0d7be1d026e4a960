"""The Runs page's logic: the table and its filters and sort, the ?run= link, overlays of any
metric, exports, and the command line that trains a run again exactly."""

import csv
import io
import json
import signal

import pytest

from agd_viz import cli
from agd_viz.views import runs as rv
from agd_viz.store import Store
from agd_viz.spec import RunSpec


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Real runs from the CLI, in this process: a comparison with per-layer metrics and a sweep."""
    db = tmp_path_factory.mktemp("runs") / "runs.db"
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    common = ["--dataset", "digits", "--steps", "15", "--batch-size", "32", "--device", "cpu",
              "--quiet", "--json", "--db", str(db)]
    try:
        assert cli.main(["train", "--depth", "3", "--width", "16", "--optimizer", "agd",
                         "--optimizer", "adam:lr=1e-2", "--metrics", "full", "--name", "*bold* <b>x</b>",
                         *common]) == 0
        assert cli.main(["sweep", "--depths", "1,2", "--widths", "8", "--optimizer", "agd", *common]) == 0
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    s = Store(db)
    yield s
    s.close()


def test_table_filters_and_sort(store):
    df = rv.runs_frame(store.list_runs())
    assert list(df["id"]) == [4, 3, 2, 1]  # newest first
    opts = rv.filter_options(df)
    assert opts["statuses"] == ["finished"] and opts["depths"] == [1, 2, 3] and opts["widths"] == [8, 16]
    assert set(opts["optimizers"]) == {"agd", "adam lr=0.01"}

    only = rv.apply_filters(df, rv.Filters(optimizers=["adam lr=0.01"]))
    assert list(only["id"]) == [2]
    assert list(rv.apply_filters(df, rv.Filters(depths=[1, 2], widths=[8]))["id"]) == [4, 3]
    assert list(rv.apply_filters(df, rv.Filters(text="BOLD"))["id"]) == [2, 1]
    assert rv.apply_filters(df, rv.Filters(statuses=["running"])).empty
    assert list(rv.apply_filters(df, rv.Filters(datasets=["digits"], depths=[3]))["id"]) == [2, 1]

    by_acc = rv.sort_frame(df, "final_train_acc", ascending=True)
    accs = by_acc["final_train_acc"].tolist()
    assert accs == sorted(accs)
    assert list(rv.sort_frame(df, "depth", True)["depth"]) == [1, 2, 3, 3]
    with pytest.raises(ValueError):
        rv.sort_frame(df, "nope")


def test_run_link_parsing():
    assert rv.parse_run_param("3") == ([3], [])
    assert rv.parse_run_param("1,2, 2 ,x,-4") == ([1, 2], ["x", "-4"])
    assert rv.parse_run_param(None) == ([], [])
    # digits that are not ASCII, and numbers too long to be a run id, are refused, never raised on
    assert rv.parse_run_param("²") == ([], ["²"]) and rv.parse_run_param("1,²,①") == ([1], ["²", "①"])
    assert rv.parse_run_param("9" * 4300)[0] == [] and rv.parse_run_param("9223372036854775808")[0] == []
    assert len(rv.parse_run_param(",".join(map(str, range(1, 50))))[0]) == rv.MAX_LINKED
    assert rv.format_run_param([1, 2]) == "1,2"


def test_rerun_command_trains_the_same_spec(store):
    for row in store.list_runs():
        command = rv.rerun_command(row["spec"], row["optimizer"])
        assert command.startswith("python -m agd_viz train ")
        args = cli.build_parser().parse_args(command.split()[3:])
        assert cli._spec_from_args(args) == RunSpec.from_dict(row["spec"])
        assert RunSpec.from_dict(json.loads(rv.spec_json(row["spec"]))) == RunSpec.from_dict(row["spec"])
    spec = RunSpec(dataset="moons", depth=3, width=8, same_init=True, eval_every=5,
                   data_options={"noise": 0.2, "n_samples": 300}).to_dict()
    command = rv.rerun_command(spec)
    assert "--same-init" in command and "--data-option noise=0.2" in command
    assert cli._spec_from_args(cli.build_parser().parse_args(command.split()[3:])) == RunSpec.from_dict(spec)
    # The paper's loss and augmentation are part of the run: the command says them.
    for fields, words in ((dict(dataset="digits", loss="square"), "--loss square"),
                          (dict(dataset="cifar10", augment=False), "--no-augment"),
                          (dict(dataset="cifar10"), "")):
        spec = RunSpec(depth=3, width=8, **fields).to_dict()
        command = rv.rerun_command(spec)
        assert words in command and ("augment" in command) == (words == "--no-augment")
        assert cli._spec_from_args(cli.build_parser().parse_args(command.split()[3:])) == RunSpec.from_dict(spec)


def test_exports_hold_every_selected_run(store):
    text = rv.export_csv(store, [1, 3])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["run_id"] for r in rows} == {"1", "3"}
    assert len([r for r in rows if r["run_id"] == "1"]) == 16  # steps 0..15
    assert "w_spec_scaled[2]" in rows[0]  # per-layer columns of the run that has them
    doc = json.loads(rv.export_json(store, [1, 2]))
    assert doc["format"] == "agd_viz.runs" and [d["run"]["id"] for d in doc["runs"]] == [1, 2]
    assert len(doc["runs"][0]["metrics"]) == 16
    assert rv.export_name([5], "csv") == "agd-run-5.csv" and rv.export_name([1, 2], "json") == "agd-runs-1-2.json"


def test_overlays_any_scalar_or_per_layer_metric(store):
    rows = [store.get_run(1), store.get_run(2)]
    runs = rv.run_data(store, rows, layers=True)
    assert rv.layer_count(runs) == 3
    fig = rv.overlay_figure(runs, "train_loss")
    in_legend = sorted(fig.data, key=lambda t: t.legendrank)  # AGD drawn on top, listed first
    assert [t.name for t in in_legend] == ["#1 agd · 3×16", "#2 adam lr=0.01 · 3×16"]
    fig = rv.overlay_figure(runs, "w_spec_scaled", layers=[0, 2], x="time")
    lines = [t for t in fig.data if t.fill != "toself"]
    assert len(lines) == 4 and fig.layout.xaxis.title.text == "wall time (s)"
    assert [t.name for t in fig.data if t.fill == "toself"] == ["#1 agd · 3×16: reach of its steps (start ± Σ η/L)"]
    smooth = rv.overlay_figure(runs, "rel_update", layers=[1], smoothing=0.8, log_y=True)
    assert "EMA 0.8" in smooth.layout.yaxis.title.text and smooth.layout.yaxis.type == "log"
    assert len(rv.overlay_figure(runs, "eta").data) == 1  # Adam logs no η
    # a sweep run trained without per-layer metrics has none to show
    assert rv.layer_count(rv.run_data(store, [store.get_run(3)], layers=True)) == 0
    with pytest.raises(ValueError):
        rv.overlay_figure(runs, "nope")
    cfg = rv.image_config("svg", "x")
    assert cfg["toImageButtonOptions"]["format"] == "svg" and cfg["displayModeBar"]


def test_delete_plan_keeps_running_runs_apart():
    rows = [{"id": 1, "status": "finished", "label": "agd", "optimizer": "agd"},
            {"id": 2, "status": "running", "label": "adam lr=0.001", "optimizer": "adam:lr=1e-3"}]
    assert rv.split_active(rows, [1, 2, 9]) == ([2], [1])
    assert rv.describe_runs(rows, [1, 2]) == "#1 agd (finished), #2 adam lr=0.001 (running)"


def test_final_values_group_seeds_and_name_what_varies():
    def row(rid, opt, depth, seed, acc, status="finished"):
        return {"id": rid, "optimizer": opt, "label": None, "status": status,
                "spec": {"dataset": "digits", "depth": depth, "width": 16, "batch_size": 32, "steps": 10,
                         "seed": seed, "optimizers": [opt]},
                "summary": {"final_train_acc": acc}}

    rows = [row(1, "agd", 2, 0, 0.9), row(2, "agd", 2, 1, 0.7), row(3, "agd", 4, 0, 0.95),
            row(4, "adam:lr=1e-3", 4, 0, 0.5), row(5, "adam:lr=1e-3", 4, 1, float("nan")),
            row(6, "adam:lr=1e-3", 2, 0, 0.1, status="diverged")]
    df = rv.hparam_frame(rows, "depth", "final_train_acc").set_index(["line", "x"])
    assert df.loc[("agd", 2), ["mean", "lo", "hi", "n"]].tolist() == pytest.approx([0.8, 0.7, 0.9, 2])
    assert df.loc[("adam lr=0.001", 4), "n"] == 1  # the NaN and the diverged run are left out
    by_opt = rv.hparam_frame(rows, "optimizer", "final_train_acc")
    assert set(by_opt["line"]) == {"depth 2", "depth 4"}  # what varies besides the optimiser
    with pytest.raises(ValueError, match="x must be one of"):
        rv.hparam_frame(rows, "seed", "final_train_acc")
