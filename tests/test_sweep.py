"""Depth × width sweeps: the grid and its limits, the time estimate, the CLI's `sweep` command and
the results shown as heatmaps (best Adam rate per cell against AGD)."""

import json
import math
import signal

import pytest

from agd_viz import charts, cli, cost, fmt
from agd_viz.spec import SweepConfig, SweepError, max_grid, parse_sizes
from agd_viz.store import Store
from agd_viz.views import sweep

TINY = ["--dataset", "digits", "--steps", "12", "--batch-size", "32", "--device", "cpu", "--quiet"]


@pytest.fixture
def keep_signals():
    """The CLI installs SIGINT/SIGTERM handlers; run in-process, it must not keep pytest's."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def run_cli(args, capsys):
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------------ grid


def test_sizes_parse_sort_and_explain_mistakes():
    assert parse_sizes("8, 2 4,,8") == (2, 4, 8)
    assert parse_sizes("1024", "widths") == (1024,)
    for text, words in [("", "at least one"), ("2, x", "'x' is not a whole number"),
                        ("0", "between 1 and 256"), (",".join(map(str, range(1, 20))), "at most 16")]:
        with pytest.raises(SweepError, match=words):
            parse_sizes(text)
    with pytest.raises(SweepError, match="between 1 and 16,384"):
        parse_sizes("20000", "widths")


def test_run_count_and_grid_limit(monkeypatch):
    config = SweepConfig(depths="2,4,8,16,32", widths="32,64,128", optimizers=("agd", "adam:lr=1e-3"))
    assert config.n_cells == 15 and config.n_runs == 30
    assert config.describe_size() == "30 runs (5 depths × 3 widths × 2 optimisers)"
    assert config.check() == []

    monkeypatch.setenv("AGD_VIZ_MAX_GRID", "20")
    problems = config.check()
    assert len(problems) == 1
    assert "30 runs" in problems[0] and "limit is 20" in problems[0] and "AGD_VIZ_MAX_GRID" in problems[0]
    monkeypatch.setenv("AGD_VIZ_MAX_GRID", "lots")
    with pytest.raises(SweepError, match="AGD_VIZ_MAX_GRID must be a whole number"):
        config.check()
    monkeypatch.delenv("AGD_VIZ_MAX_GRID")
    assert max_grid() == 200

    huge = SweepConfig(depths="64", widths="16384", optimizers=("agd",))
    assert any("weights" in p for p in huge.check())
    assert SweepConfig(depths="2", widths="8", optimizers=()).check() == ["choose at least one optimiser."]


def test_specs_one_per_cell_with_every_optimiser_and_round_trip():
    config = SweepConfig(depths=(4, 2), widths=(16,), optimizers=("agd", "adam:lr=1e-2"), steps=50,
                         metrics="none", data_options={"noise": 0.1}, dataset="moons")
    specs = config.specs()
    assert [(s.depth, s.width) for s in specs] == [(2, 16), (4, 16)]  # cheapest cell first
    assert all(s.optimizers == ("agd", "adam:lr=1e-2") and s.steps == 50 and s.metrics == "none"
               for s in specs)
    assert SweepConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(SweepError, match="unknown optimi"):
        SweepConfig(depths="2", widths="8", optimizers=("adamm",)).specs()


# -------------------------------------------------------------------------------------- estimate


def test_estimate_grows_with_the_work_and_shrinks_with_workers():
    speed = cost.Speed(flops_per_s=2e10)
    base = SweepConfig(depths="2,4", widths="32", optimizers=("agd",), steps=100)
    t = base.seconds(speed)
    deeper = SweepConfig(depths="8,16", widths="32", optimizers=("agd",), steps=100).seconds(speed)
    wider = SweepConfig(depths="2,4", widths="512", optimizers=("agd",), steps=100).seconds(speed)
    longer = SweepConfig(depths="2,4", widths="32", optimizers=("agd",), steps=1000).seconds(speed)
    assert t < deeper and t < wider and t < longer
    assert base.seconds(speed, workers=2) == pytest.approx(t / 2)
    # FLOPs per step ∝ batch × Σ d_k d_{k−1}; evaluations over train and test sets
    f = dict(dataset="digits", depth=3, width=10, steps=1, batch_size=7, eval_every=10**6)
    P = 64 * 10 + 10 * 10 + 10 * 10
    assert cost.run_flops(f) == pytest.approx(6 * 7 * P + 2 * 1797 * P * 1)
    assert cost.matmul_flops_per_s() > 1e8
    assert fmt.estimate(95) == "1 min 35 s" and fmt.estimate(0.2) == "1 s"


def test_the_start_up_per_cell_is_measured_on_the_stores_sweeps():
    """A sweep of the app runs one worker process per cell: what a cell costs beyond its training
    (process start, torch import, data, warm-up) comes from the store's finished sweeps."""
    assert cost.cell_overhead([]) == (cost.STARTUP_S, 0)

    def run(group, pid, created, started, ended, elapsed, status="finished"):
        return {"group_id": group, "pid": pid, "created": created, "started": started, "ended": ended,
                "status": status, "summary": {"elapsed_s": elapsed}}

    # One worker: four cells of 1 s training, 7 s apart: 6 s per cell beyond training.
    serial = [run(1, 100 + k, 0.0, 7.0 * k + 6, 7.0 * k + 7, 1.0) for k in range(4)]
    assert cost.cell_overhead(serial) == (pytest.approx(6.0), 1)
    # Two workers at once: the same cells in half the wall time cost the same per cell.
    paired = [run(2, 200 + k, 0.0, 7.0 * (k // 2) + 6, 7.0 * (k // 2) + 7, 1.0) for k in range(4)]
    assert cost.cell_overhead(paired)[0] == pytest.approx(6.0)
    # A comparison (one process, two runs side by side) or a CLI sweep (one process) says nothing.
    single = [run(3, 300, 0.0, 2.0, 5.0, 3.0), run(3, 300, 0.0, 2.0, 5.0, 3.0)]
    assert cost.cell_overhead(single) == (cost.STARTUP_S, 0)
    speed = cost.calibrate(serial, flops_per_s=2e10)
    assert speed.cell_s == pytest.approx(6.0) and speed.n_sweeps == 1 and "per cell" in speed.describe()
    config = SweepConfig(depths="2,4", widths="32", optimizers=("agd",), steps=100)
    assert config.seconds(speed) - config.seconds(cost.Speed(2e10, speed.ratio, speed.n_runs)) == \
        pytest.approx(2 * (6.0 - cost.STARTUP_S))


def test_cli_sweep_records_one_group_and_prints_rows_like_train(tmp_path, capsys, keep_signals):
    db = tmp_path / "runs.db"
    code, out, err = run_cli(["sweep", "--depths", "1,2", "--widths", "8", "--optimizer", "agd",
                              "--optimizer", "adam:lr=1e-3", "--db", str(db), "--json", *TINY], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert sorted((r["depth"], r["width"], r["optimizer"]) for r in rows) == [
        (1, 8, "adam:lr=1e-3"), (1, 8, "agd"), (2, 8, "adam:lr=1e-3"), (2, 8, "agd")]
    assert all(r["status"] == "finished" and r["steps"] == 12 for r in rows)

    code, out, err = run_cli(["train", "--depth", "2", "--width", "8", "--db", str(db), "--json", *TINY], capsys)
    assert code == 0, err
    assert set(json.loads(out)[0]) == set(rows[0])  # exactly train --json's fields

    store = Store(db)
    groups = store.list_groups(kind="sweep")
    assert len(groups) == 1 and groups[0]["n_runs"] == 4
    config = SweepConfig.from_dict(groups[0]["spec"])
    assert config.depths == (1, 2) and config.optimizers == ("agd", "adam:lr=1e-3")
    assert config.metrics == "none"
    runs = store.list_runs(group_id=groups[0]["id"])
    assert {r["id"] for r in runs} == {r["run_id"] for r in rows}
    assert all(r["summary"]["final_train_acc"] is not None for r in runs)

    # the calibrated estimate of this very sweep lands near what it took
    speed = cost.calibrate(runs)
    assert speed.n_runs == 4
    took = sum(r["summary"]["elapsed_s"] for r in runs) / 2  # two optimisers side by side
    guess = config.seconds(speed, per_process=False) - cost.STARTUP_S
    assert took / 3 < guess < took * 3, (took, guess)
    store.close()


@pytest.mark.parametrize("args, words", [
    (["--depths", "2,x"], "'x' is not a whole number"),
    (["--widths", "0"], "widths must be between 1"),
    (["--optimizer", "adamm"], "unknown optimi"),
    (["--steps", "0"], "steps must be between 1"),
    (["--dataset", "nope"], "unknown dataset"),
    (["--data-option", "noise"], "agd_viz sweep: --data-option expects KEY=VALUE"),
    (["--depths", "1,2,3,4,5,6", "--widths", "1,2,3,4,5"], "the limit is 20 runs"),
])
def test_cli_sweep_bad_arguments_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch,
                                                                 keep_signals, args, words):
    monkeypatch.setenv("AGD_VIZ_MAX_GRID", "20")
    db = tmp_path / "runs.db"
    base = {"--depths": "2", "--widths": "8"}
    for flag, value in zip(args[::2], args[1::2]):
        base.pop(flag, None)
    argv = ["sweep", *TINY, *[x for kv in base.items() for x in kv], *args, "--db", str(db)]
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert not db.exists()


# --------------------------------------------------------------------------------------- results


def _row(rid, opt, depth, width, status="finished", loss=None, acc=None, eta=None, label=None):
    summary = None if status in ("queued", "running") else {
        "final_train_loss": loss, "final_train_acc": acc, "final_test_acc": acc, "mean_eta": eta,
        "steps": 10, "elapsed_s": 1.0}
    return {"id": rid, "optimizer": opt, "label": label or opt.replace(":", " "), "status": status,
            "spec": {"depth": depth, "width": width, "steps": 10}, "summary": summary, "step": 10,
            "steps": 10, "error": None}


def results():
    rows = [
        _row(1, "agd", 2, 8, loss=0.1, acc=0.99, eta=0.3),
        _row(2, "adam:lr=1e-3", 2, 8, loss=0.5, acc=0.8),
        _row(3, "adam:lr=1e-2", 2, 8, loss=0.05, acc=0.995),
        _row(4, "agd", 32, 8, loss=0.2, acc=0.95, eta=0.1),
        _row(5, "adam:lr=1e-3", 32, 8, loss=2.3, acc=0.1),
        _row(6, "adam:lr=1e-2", 32, 8, status="diverged", loss=math.nan, acc=0.1),
        _row(7, "agd", 2, 16, status="running"),
    ]
    config = SweepConfig(depths="2,32", widths="8,16", optimizers=("agd", "adam:lr=1e-3", "adam:lr=1e-2"))
    return sweep.results_frame(rows, config), config


def test_results_frame_shows_the_whole_grid_and_progress():
    df, config = results()
    assert len(df) == 12  # 4 cells × 3 optimisers: the unstarted ones are pending
    assert (df["status"] == "pending").sum() == 5
    p = sweep.progress(df)
    assert p["total"] == 12 and p["done"] == 6 and p["running"] == 1
    assert sweep.is_active(df)
    assert not sweep.is_active(df[df["status"] != "running"])  # pending alone: nothing to wait for
    assert sweep.panel_order(df, config) == ["agd", "adam:lr=1e-3", "adam:lr=1e-2"]
    assert sweep.cell_options(df) == [(2, 8), (2, 16), (32, 8)]
    assert sweep.cell_run_ids(df, 2, 8) == [1, 2, 3]


def test_best_adam_rate_per_cell_against_agd():
    df, _ = results()
    best = sweep.best_rate_frame(df, "adam", "final_train_loss").set_index(["depth", "width"])
    assert best.loc[(2, 8), "final_train_loss"] == 0.05 and best.loc[(2, 8), "best_lr"] == 1e-2
    # the diverged rate counts as the worst: the best at depth 32 is lr 1e-3
    assert best.loc[(32, 8), "final_train_loss"] == 2.3 and best.loc[(32, 8), "best_lr"] == 1e-3
    assert best.loc[(2, 16), "status"] == "pending" and math.isnan(best.loc[(2, 16), "final_train_loss"])
    acc = sweep.best_rate_frame(df, "adam", "final_train_acc").set_index(["depth", "width"])
    assert acc.loc[(2, 8), "final_train_acc"] == 0.995  # higher is better for accuracy

    cmp = sweep.agd_vs_best(df, "adam")
    assert sweep.agd_wins(cmp) == (1, 2)  # AGD wins at depth 32, the tuned Adam at depth 2

    frame, panels = sweep.best_rate_panels(df, "adam")
    fig = charts.best_rate_heatmaps(frame, "final_train_loss", panels)
    maps = [t for t in fig.data if t.type == "heatmap"]
    assert [a.text for a in fig.layout.annotations] == ["agd", "adam (best lr)"]
    assert maps[0].zmin == maps[1].zmin and maps[0].zmax == maps[1].zmax  # one colour scale
    cell = maps[1].text[list(maps[1].y).index("2")][list(maps[1].x).index("8")]
    assert cell == "0.05<br>lr 0.01"


def test_the_forms_optimisers_agd_baselines_at_their_rates_and_any_other_spec():
    assert sweep.optimizer_specs(True, {"adam": "1e-4, 1e-3", "sgd": None}) == [
        "agd", "adam:lr=0.0001", "adam:lr=0.001"]
    got = sweep.optimizer_specs(False, {"sgd": "0.1"}, "agd:gain=2; sgd:lr=0.1,momentum=0.9 sgd:lr=0.1")
    assert got == ["sgd:lr=0.1", "agd:gain=2", "sgd:lr=0.1,momentum=0.9"]
    with pytest.raises(ValueError, match="adam learning rates: 'fast' is not a number"):
        sweep.optimizer_specs(True, {"adam": "fast"})
    with pytest.raises(ValueError, match="more optimisers: unknown optimiser 'adamm'"):
        sweep.optimizer_specs(True, {}, "adamm")
    assert sweep.baseline_families(got) == ["sgd"]
