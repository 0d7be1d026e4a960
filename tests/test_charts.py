"""Figure builders: what a user sees on the charts (colours, smoothing, markers, sizes)."""

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from agd_viz import charts
from agd_viz.charts import (
    RunData,
    all_live_figures,
    best_rate_heatmaps,
    color_for,
    decision_boundary_figure,
    downsample,
    ema,
    layer_heatmap,
    layer_heatmaps,
    layer_lines_figure,
    loss_figure,
    rel_update_figure,
    step_size_figure,
    sweep_heatmaps,
)
from agd_viz.charts import palette

SCALARS = ["loss", "acc", "train_loss", "train_acc", "test_loss", "test_acc", "eta", "G", "lr"]
LAYER_METRICS = ["w_fro", "w_spec", "w_srank", "w_spec_scaled", "g_fro", "g_srank", "rel_update"]


def scalar_frame(steps, *, agd, seed=0, eval_every=50, lr=1e-3):
    """A run-store-shaped scalar frame: batch metrics every step, evals every k steps."""
    rng = np.random.default_rng(seed)
    step = np.arange(steps)
    loss = 2.3 * np.exp(-step / max(steps / 4, 1)) + 0.05 * rng.random(steps)
    df = pd.DataFrame({"step": step, "t": step * 0.01})
    df["loss"] = loss
    df["acc"] = np.clip(1 - loss / 2.3, 0, 1)
    is_eval = step % eval_every == 0
    for col, val in [("train_loss", loss), ("train_acc", df["acc"]), ("test_loss", loss * 1.1),
                     ("test_acc", df["acc"] * 0.95)]:
        df[col] = np.where(is_eval, val, np.nan)
    G = 0.5 + rng.random(steps)
    df["eta"] = np.log((1 + np.sqrt(1 + 4 * G)) / 2) if agd else np.nan
    df["G"] = G if agd else np.nan
    df["lr"] = np.nan if agd else lr
    return df[["step", "t"] + SCALARS]


def layer_frame(steps, n_layers, *, seed=0, every=1):
    """Long per-layer frame ordered by (step, layer), as the store returns it."""
    rng = np.random.default_rng(seed)
    step = np.repeat(np.arange(0, steps, every), n_layers)
    layer = np.tile(np.arange(n_layers), len(step) // n_layers)
    n = len(step)
    df = pd.DataFrame({"step": step, "t": step * 0.01, "layer": layer})
    for name in LAYER_METRICS:
        df[name] = 1.0 + rng.random(n)
    df["rel_update"] = 10.0 ** (-3 + rng.random(n))
    df.loc[df["step"] == 0, "rel_update"] = np.nan  # no update before the first step
    return df


def make_runs(steps=300, n_layers=4, specs=("agd", "adam:lr=1e-3", "sgd:lr=0.1", "adamw:lr=1e-3"),
              layer_every=1):
    runs = []
    for i, spec in enumerate(specs):
        agd = spec.startswith("agd")
        lr = float(spec.split("lr=")[1]) if "lr=" in spec else 1e-3
        runs.append(RunData(
            run_id=i + 1, label=spec.replace(":", " "), optimizer=spec,
            scalars=scalar_frame(steps, agd=agd, seed=i, lr=lr),
            layers=layer_frame(steps, n_layers, seed=i, every=layer_every),
            status="finished",
        ))
    return runs


def valid(fig):
    """Re-validate the whole figure through plotly (the builders skip validation for speed)."""
    go.Figure(fig.to_dict())
    return fig


def line_traces(fig):
    return [t for t in fig.data if t.type in ("scatter", "scattergl") and t.mode == "lines"]


def is_waiting(fig):
    return any(a.text == charts.WAITING for a in fig.layout.annotations)


# ---------------------------------------------------------------------------------------- colours


def test_colour_families_are_fixed_and_deterministic():
    agd = color_for("agd")
    assert agd == color_for("AGD") == color_for("agd:gain=1") == "#1565c0"
    assert color_for("adam") == color_for("adam:lr=1e-3") == color_for("adam lr=0.001")
    assert color_for("sgd") == color_for("sgd:lr=0.1,momentum=0")
    families = {color_for(o) for o in ("agd", "adam", "sgd", "adamw")}
    assert len(families) == 4
    # Adam learning rates: different shades, all from the orange family.
    shades = [color_for(f"adam:lr={lr}") for lr in ("1e-4", "3e-4", "1e-3", "3e-3", "1e-2")]
    assert len(set(shades)) == 5
    assert set(shades) <= set(palette._FAMILY_SHADES["adam"])
    # Unknown optimisers: a stable colour, not one of the four families' colours.
    lion = color_for("lion:lr=1e-4")
    assert lion == color_for("lion") and lion in palette._HASH_PALETTE


def test_every_optimiser_family_has_its_colour_and_shades_follow_the_options():
    base = {name: color_for(name) for name in ("agd", "adam", "sgd", "adamw", "prodigy",
                                                "dadapt-adam", "schedulefree-adamw")}
    assert base == {"agd": "#1565c0", "adam": "#f57c00", "sgd": "#2e7d32", "adamw": "#7b1fa2",
                    "prodigy": "#c62828", "dadapt-adam": "#00838f",
                    "schedulefree-adamw": "#6d4c41"}
    # The shade-picking option is the family's own: AGD's gain, Prodigy's d_coef.
    assert color_for("agd:gain=10") in palette._FAMILY_SHADES["agd"][1:]
    assert color_for("prodigy:d_coef=0.5") != color_for("prodigy") == color_for("prodigy lr=1")
    # Options left at their defaults change nothing; any other option shifts the shade within
    # the family, the same for a spec string and for its legend label.
    assert color_for("adam:lr=1e-3,beta2=0.999,eps=1e-8") == color_for("adam")
    tuned = color_for("adam:lr=1e-3,beta2=0.99")
    assert tuned != color_for("adam") and tuned in palette._FAMILY_SHADES["adam"]
    assert tuned == color_for("adam lr=0.001 beta2=0.99")
    assert color_for("adam:eps=1e-7") == color_for("adam lr=0.001 eps=1e-07")
    # Text that does not parse still gets a stable colour: its family's, else the palette's.
    assert color_for("adam (best lr)") == color_for("adam")
    assert color_for("adam:lr=oops") == color_for("adam")
    assert color_for("") in palette._HASH_PALETTE and color_for(None) == color_for("")


def test_each_run_has_the_same_colour_on_every_chart():
    runs = make_runs()
    figs = [loss_figure(runs), loss_figure(runs, "acc", "test", smoothing=0.5),
            step_size_figure(runs), rel_update_figure(runs), rel_update_figure(runs, layer=2)]
    for fig in figs:
        named = [t for t in line_traces(fig) if t.showlegend is not False]
        for run in runs:
            mine = [t for t in named if t.legendgroup == str(run.run_id)]
            assert mine, f"{run.label} missing"
            assert {t.line.color for t in mine} == {color_for(run.optimizer)}
            assert any(t.name.startswith(run.label) for t in mine)
    # Layer lines shade per layer, but the last layer (the legend entry) is the run's colour.
    fig = layer_lines_figure(runs)
    for run in runs:
        legend = [t for t in fig.data if t.legendgroup == str(run.run_id) and t.showlegend]
        assert [t.line.color for t in legend] == [color_for(run.optimizer)]


def test_baselines_show_lr_dashed_and_agd_eta_with_G_panel():
    runs = make_runs()
    fig = valid(step_size_figure(runs))
    by_name = {t.name: t for t in fig.data}
    assert by_name["agd η"].line.dash == "solid"
    assert by_name["agd G"].yaxis == "y2"
    for label in ("adam lr=1e-3", "sgd lr=0.1", "adamw lr=1e-3"):
        assert by_name[f"{label} lr"].line.dash == "dash"
    assert fig.layout.yaxis2.title.text == "G"


def test_d_adaptation_baselines_name_their_logged_step_d_lr():
    runs = make_runs(specs=("agd", "prodigy:d_coef=0.5", "dadapt-adam", "schedulefree-adamw"))
    names = {t.name for t in valid(step_size_figure(runs)).data}
    assert {"prodigy d_coef=0.5 d·lr", "dadapt-adam d·lr", "schedulefree-adamw lr"} <= names


# ---------------------------------------------------------------------------------------- numerics


def test_ema_matches_the_debiased_recursion():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    a = 0.5
    s, w, expected = 0.0, 0.0, []
    for v in x:
        s = a * s + (1 - a) * v
        w = a * w + (1 - a)
        expected.append(s / w)
    np.testing.assert_allclose(ema(x, a), expected)
    np.testing.assert_allclose(ema(x, 0.0), x)
    assert ema(x, 0.9)[0] == 1.0  # starts at the first value, not pulled towards 0


def test_ema_skips_gaps_and_infinities():
    x = np.array([1.0, np.nan, 3.0, np.inf, 5.0])
    out = ema(x, 0.5)
    assert np.isnan(out[1]) and np.isnan(out[3])
    np.testing.assert_allclose(out[[0, 2, 4]], ema([1.0, 3.0, 5.0], 0.5))
    assert ema([], 0.5).size == 0


def test_downsample_caps_points_and_keeps_first_last_and_extremes():
    rng = np.random.default_rng(0)
    n = 20_000
    x = np.arange(n)
    y = rng.normal(size=n)
    y[7_777] = 50.0  # a spike a naive stride would miss
    y[12_345] = -50.0
    xs, ys = downsample(x, y, max_points=500)
    assert len(xs) <= 500
    assert xs[0] == 0 and xs[-1] == n - 1
    assert ys.max() == 50.0 and ys.min() == -50.0
    assert np.all(np.diff(xs) > 0)
    np.testing.assert_array_equal(ys, y[xs])
    short_x, short_y = downsample(x[:100], y[:100], max_points=500)
    assert len(short_x) == 100


def test_downsample_survives_nan_runs():
    y = np.arange(5000, dtype=float)
    y[1000:2000] = np.nan
    xs, ys = downsample(np.arange(5000), y, max_points=100)
    assert len(xs) <= 100 and ys[-1] == 4999 and np.nanmax(ys) == 4999


# ---------------------------------------------------------------------------------------- builders


EMPTY_BUILDERS = {
    "loss": lambda runs: loss_figure(runs),
    "acc_test": lambda runs: loss_figure(runs, "acc", "test", smoothing=0.6, x="time"),
    "step_size": lambda runs: step_size_figure(runs),
    "rel_update": lambda runs: rel_update_figure(runs),
    "layer_lines": lambda runs: layer_lines_figure(runs),
    "heatmaps": lambda runs: layer_heatmaps(runs, "g_srank"),
    "heatmap": lambda runs: layer_heatmap(runs[0] if runs else None, "w_srank"),
}


@pytest.mark.parametrize("name", list(EMPTY_BUILDERS))
def test_builders_on_no_runs_and_on_runs_without_rows(name):
    build = EMPTY_BUILDERS[name]
    assert is_waiting(valid(build([])))
    blank = RunData(1, "agd", "agd", scalars=scalar_frame(0, agd=True), layers=None)
    fig = valid(build([blank]))
    assert is_waiting(fig)
    assert fig.layout.height and fig.layout.uirevision


def test_other_builders_on_empty_inputs():
    assert is_waiting(valid(sweep_heatmaps(pd.DataFrame(), "final_train_acc")))
    assert is_waiting(valid(decision_boundary_figure([], [], [], [], [], [])))
    figs = all_live_figures([])
    assert set(figs) == set(charts.LIVE_FIGURES) and all(is_waiting(f) for f in figs.values())


@pytest.mark.parametrize("x", ["step", "time"])
def test_every_line_builder_on_data(x):
    runs = make_runs()
    for fig in [loss_figure(runs, x=x, smoothing=0.8, log_y=True),
                loss_figure(runs, "acc", "train", x=x), loss_figure(runs, "loss", "test", x=x),
                step_size_figure(runs, x=x), rel_update_figure(runs, x=x),
                rel_update_figure(runs, layer=[0, 3], x=x),
                layer_lines_figure(runs, "w_spec_scaled", x=x),
                layer_lines_figure(runs, "g_fro", layers=[1], x=x, log_y=True)]:
        fig = valid(fig)
        assert fig.data and fig.layout.height and fig.layout.uirevision
        assert fig.layout.xaxis.title.text == ("step" if x == "step" else "wall time (s)") or \
            fig.layout.xaxis2.title.text == ("step" if x == "step" else "wall time (s)")


def test_zoom_survives_a_refresh_with_more_data():
    """Same uirevision and height before and after new steps arrive; a new view resets zoom."""
    before, after = make_runs(steps=100), make_runs(steps=300)
    for build in (loss_figure, step_size_figure, rel_update_figure, layer_lines_figure,
                  layer_heatmaps):
        old, new = build(before), build(after)
        assert old.layout.uirevision == new.layout.uirevision
        assert old.layout.height == new.layout.height
    assert loss_figure(after).layout.uirevision != loss_figure(after, x="time").layout.uirevision
    assert loss_figure([]).layout.height == loss_figure(after).layout.height


def test_loss_figure_smoothing_draws_faint_raw_line_behind_and_hover_is_unified():
    runs = make_runs()
    fig = valid(loss_figure(runs, smoothing=0.9))
    assert fig.layout.hovermode == "x unified"
    for run in runs:
        raw, smooth = [t for t in fig.data if t.legendgroup == str(run.run_id)]
        assert raw.opacity < 0.5 and raw.showlegend is False and raw.hoverinfo == "skip"
        assert smooth.name == run.label and smooth.line.color == raw.line.color
        assert np.std(np.diff(smooth.y)) < np.std(np.diff(raw.y))
    # Eval metrics (every 50 steps) are plotted at their own steps only.
    test = valid(loss_figure(runs, "acc", "test"))
    assert list(test.data[0].x) == list(range(0, 300, 50))


def test_diverged_run_gets_an_x_marker_and_a_note():
    runs = make_runs()
    bad = runs[1]
    bad.scalars = bad.scalars.iloc[:120].copy()
    bad.scalars.loc[119, "loss"] = np.inf
    bad.status, bad.diverged_step = "diverged", 119
    for log_y in (False, True):
        fig = valid(loss_figure(runs, smoothing=0.5, log_y=log_y))
        markers = [t for t in fig.data if t.mode == "markers"]
        assert len(markers) == 1
        assert markers[0].marker.symbol == "x" and markers[0].x[0] == 119
        assert markers[0].marker.color == color_for(bad.optimizer)
        assert [a.text for a in fig.layout.annotations] == ["diverged"]
    # Status alone is enough: the last logged step is where it stopped.
    bad.diverged_step = None
    fig = loss_figure(runs)
    assert [t.x[0] for t in fig.data if t.mode == "markers"] == [119]


def test_rel_update_default_is_mean_line_in_a_min_max_band_on_log_axis():
    runs = make_runs(n_layers=5)
    fig = valid(rel_update_figure(runs))
    assert fig.layout.yaxis.type == "log"
    M = runs[0].layers.pivot(index="step", columns="layer", values="rel_update").to_numpy()
    band, mean = [t for t in fig.data if t.legendgroup == "1"]
    assert band.fill == "toself"
    np.testing.assert_allclose(mean.y, np.nanmean(M[1:], axis=1), rtol=1e-6)
    assert min(band.y) == pytest.approx(np.nanmin(M), rel=1e-6)
    assert max(band.y) == pytest.approx(np.nanmax(M), rel=1e-6)


def test_layer_lines_reference_at_one_and_irregular_frames():
    runs = make_runs(n_layers=3)
    # Rows in layer-major order with a layer missing at some steps still pivot correctly.
    df = runs[0].layers.sort_values(["layer", "step"])
    df = df[~((df["layer"] == 2) & (df["step"] % 2 == 1))]
    runs[0].layers = df
    fig = valid(layer_lines_figure(runs[:1], layers=[0, 2]))
    assert fig.layout.shapes[0].y0 == 1
    last = [t for t in fig.data if "layer 2" in (t.hovertemplate or "")][0]
    assert len(last.x) == 300 and np.isnan(np.asarray(last.y, dtype=float)[1])


def test_agd_spectral_norm_band_is_the_reach_of_its_steps_not_a_pull_to_one():
    """AGD starts ‖W‖*/√(d_out/d_in) at its initial values and moves it by at most gain·η/L a
    step (Weyl): the band is the starting range widened by Σ gain·η_t/L; other optimisers have none;
    the axis follows the lines, not the ever-wider band; a reference line marks the initial 1."""
    runs = make_runs(n_layers=4, specs=("agd:gain=2", "adam:lr=1e-3"))
    fig = valid(layer_lines_figure(runs))
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 1 and "reach of its steps" in bands[0].name
    M = runs[0].layers.pivot(index="step", columns="layer", values="w_spec_scaled").to_numpy()
    eta = np.nan_to_num(runs[0].scalars["eta"].to_numpy())
    widen = 2.0 * np.cumsum(eta) / 4
    n = M.shape[0]
    band_x, band_y = np.asarray(bands[0].x, dtype=float), np.asarray(bands[0].y, dtype=float)
    half = len(band_x) // 2
    steps, hi = band_x[half:][::-1], band_y[half:][::-1]  # the upper edge, drawn back to front
    np.testing.assert_allclose(hi, M[0].max() + widen[steps.astype(int)] - widen[0], rtol=1e-5)
    assert n == 300 and len(band_x) <= 2 * 400
    assert fig.layout.yaxis.range[1] < hi.max()
    assert "initial value" in fig.layout.annotations[0].text


def test_heatmap_layers_by_steps_with_readable_colourbar_and_binning():
    run = make_runs(steps=3000, n_layers=6, specs=("agd",))[0]
    fig = valid(layer_heatmap(run, "w_srank"))
    (hm,) = fig.data
    z = np.asarray(hm.z)
    assert z.shape == (6, 500)
    assert list(hm.y) == list(range(6))
    assert hm.colorbar.title.text == "weight stable rank"
    full = run.layers.pivot(index="step", columns="layer", values="w_srank").to_numpy()
    np.testing.assert_allclose(z[:, 0], full[:6].mean(axis=0), rtol=1e-5)


def test_layer_heatmaps_share_one_colour_scale():
    runs = make_runs()
    runs[1].layers["g_srank"] *= 10  # Adam's ranks on a different range
    fig = valid(layer_heatmaps(runs, "g_srank"))
    assert len(fig.data) == 4
    assert len({(t.zmin, t.zmax) for t in fig.data}) == 1
    assert fig.data[0].zmax == pytest.approx(runs[1].layers["g_srank"].max(), rel=1e-6)
    assert sum(bool(t.showscale) for t in fig.data) == 1


def test_decision_boundary_colours_the_grid_by_predicted_class():
    g = np.linspace(-1, 1, 30)
    xx, yy = np.meshgrid(g, g)
    probs = np.stack([xx > 0, xx <= 0], axis=-1).astype(float)
    pts = np.random.default_rng(0).uniform(-1, 1, size=(50, 2))
    labels = (pts[:, 0] <= 0).astype(int)
    fig = valid(decision_boundary_figure(xx, yy, probs, pts[:, 0], pts[:, 1], labels, "moons"))
    grid = np.asarray(fig.data[0].z)
    assert grid.shape == (30, 30) and grid[0, 0] == 1 and grid[0, -1] == 0
    assert sum(t.type == "scatter" and t.mode == "markers" for t in fig.data) == 2
    fig = valid(decision_boundary_figure(g, g, (xx > 0).astype(int), pts[:, 0], pts[:, 1], labels,
                                         "labels"))
    assert np.asarray(fig.data[0].z)[0, -1] == 1


# ---------------------------------------------------------------------------------------- sweeps


SWEEP_RESULTS = [  # run_id, optimizer, depth, width, status, final_train_loss, final_train_acc
    (1, "agd", 2, 8, "finished", 0.1, 0.99),
    (2, "adam:lr=1e-3", 2, 8, "finished", 0.5, 0.8),
    (3, "adam:lr=1e-2", 2, 8, "finished", 0.05, 0.995),
    (4, "agd", 32, 8, "finished", 0.2, 0.95),
    (5, "adam:lr=1e-3", 32, 8, "finished", 2.3, 0.1),
    (6, "adam:lr=1e-2", 32, 8, "diverged", np.nan, 0.1),
    (7, "agd", 2, 16, "running", np.nan, np.nan),
    (None, "adam:lr=1e-3", 2, 16, "pending", np.nan, np.nan),
    (None, "adam:lr=1e-2", 2, 16, "pending", np.nan, np.nan),
    (None, "agd", 32, 16, "pending", np.nan, np.nan),
    (None, "adam:lr=1e-3", 32, 16, "pending", np.nan, np.nan),
    (None, "adam:lr=1e-2", 32, 16, "pending", np.nan, np.nan),
]
PANELS = ["agd", "adam:lr=1e-3", "adam:lr=1e-2"]


def sweep_results(rows=SWEEP_RESULTS):
    """A sweep's results frame as the Sweep view hands it over: one row per (cell, optimiser),
    cells without a run yet "pending"."""
    df = pd.DataFrame(rows, columns=["run_id", "optimizer", "depth", "width", "status",
                                     "final_train_loss", "final_train_acc"])
    return df.assign(label=df["optimizer"].str.replace(":", " "))


def heatmaps_of(fig):
    return [t for t in fig.data if t.type == "heatmap"]


def cell_text(fig, panel, depth, width):
    """What a cell says: its value on the heatmap, else its status on the marker layer."""
    heat = heatmaps_of(fig)[panel]
    value = heat.text[list(heat.y).index(str(depth))][list(heat.x).index(str(width))]
    marks = [t for t in fig.data if t.type == "scatter"][panel]
    k = [i for i, (x, y) in enumerate(zip(marks.x, marks.y)) if (x, y) == (str(width), str(depth))]
    status = marks.text[k[0]] if k else ""
    assert not (value and status)
    return value or status


def test_sweep_heatmaps_one_panel_per_optimiser_on_one_colour_scale():
    df = sweep_results()
    fig = valid(sweep_heatmaps(df, "final_train_loss", PANELS))
    maps = heatmaps_of(fig)
    assert len(maps) == 3
    finite = df["final_train_loss"].dropna()
    assert {(t.zmin, t.zmax) for t in maps} == {(finite.min(), finite.max())}
    assert all(t.reversescale for t in maps)  # a low loss is the good end of the scale
    assert sum(bool(t.showscale) for t in maps) == 1
    # Every panel shows the whole grid, so cells line up across panels.
    assert all(list(t.y) == ["2", "32"] and list(t.x) == ["8", "16"] for t in maps)
    titles = fig.layout.annotations
    assert [a.text for a in titles] == ["agd", "adam lr=1e-3", "adam lr=1e-2"]
    assert [a.font.color for a in titles] == [color_for(o) for o in PANELS]
    # Seeds of one cell are averaged.
    seeds = pd.concat([df, df.assign(run_id=df["run_id"].map(lambda r: r and r + 10),
                                     final_train_loss=df["final_train_loss"] * 3)])
    fig = valid(sweep_heatmaps(seeds, "final_train_loss", ["agd"]))
    assert cell_text(fig, 0, 2, 8) == "0.2"


def test_sweep_cells_show_their_value_or_why_there_is_none():
    df = sweep_results()
    fig = valid(sweep_heatmaps(df, "final_train_acc", PANELS))
    assert cell_text(fig, 0, 2, 8) == "0.99" and cell_text(fig, 0, 2, 16) == "running"
    assert cell_text(fig, 1, 2, 16) == "·"  # not started
    assert cell_text(fig, 2, 32, 8) == "0.1"  # a diverged run's accuracy is still a number
    loss = valid(sweep_heatmaps(df, "final_train_loss", PANELS))
    assert cell_text(loss, 2, 32, 8) == "diverged"
    assert {charts.STATUS_TEXT[s] for s in ("interrupted", "pending")} == {"stopped", "·"}


def test_sweep_accuracy_uses_a_fixed_0_to_1_scale():
    fig = valid(sweep_heatmaps(sweep_results(), "final_train_acc", PANELS))
    assert all(t.zmin == 0 and t.zmax == 1 for t in heatmaps_of(fig))
    assert not any(t.reversescale for t in heatmaps_of(fig))


def test_sweep_grid_is_drawn_before_any_cell_has_a_value():
    pending = sweep_results([(None, "agd", d, w, "pending", np.nan, np.nan)
                             for d in (2, 32) for w in (8, 16)])
    fig = valid(sweep_heatmaps(pending, "final_train_loss", ["agd"]))
    assert list(fig.layout.yaxis.categoryarray) == ["2", "32"]
    assert list(fig.layout.xaxis.range) == [-0.5, 1.5]
    assert cell_text(fig, 0, 32, 16) == "·"


def test_sweep_cells_carry_their_run_ids_for_clicks_and_the_selected_cell_is_outlined():
    fig = valid(sweep_heatmaps(sweep_results(), "final_train_acc", PANELS, selected=(32, 8)))
    clicks = [t for t in fig.data if t.type == "scatter"]
    assert len(clicks) == 3
    ids = sorted(c[0] for t in clicks for c in t.customdata if c[0] >= 0)
    assert ids == [1, 2, 3, 4, 5, 6, 7]
    first = dict(zip(zip(clicks[0].y, clicks[0].x), clicks[0].customdata))
    assert list(first[("32", "8")]) == [4, 32, 8]
    assert list(first[("32", "16")]) == [-1, 32, 16]  # no run yet: nothing to open
    assert "run 4: click for its curves" in clicks[0].hovertext[list(clicks[0].customdata).index(
        first[("32", "8")])]
    assert fig.layout.clickmode == "event+select" and fig.layout.dragmode is False
    outlined = [(s.xref, s.yref, s.x0, s.y0) for s in fig.layout.shapes]
    assert outlined == [("x", "y", -0.5, 0.5), ("x2", "y2", -0.5, 0.5), ("x3", "y3", -0.5, 0.5)]
    assert fig.layout.margin.t > 32 + 20  # room for the modebar above the panel titles
    still = sweep_heatmaps(sweep_results(), "final_train_acc", PANELS, clickable=False)
    assert still.layout.clickmode == "event" and not still.layout.shapes


def test_best_rate_heatmaps_name_the_winning_rate_under_the_baselines_value():
    # The view's comparison per cell: AGD's run, and Adam's best run over its rates.
    rows = [("agd", 1, 2, 8, "finished", 0.1, np.nan), ("agd", 4, 32, 8, "finished", 0.2, np.nan),
            ("agd", 7, 2, 16, "running", np.nan, np.nan),
            ("adam (best lr)", 3, 2, 8, "finished", 0.05, 1e-2),
            ("adam (best lr)", 5, 32, 8, "finished", 2.3, 1e-3),
            ("adam (best lr)", None, 2, 16, "pending", np.nan, np.nan)]
    df = pd.DataFrame(rows, columns=["optimizer", "run_id", "depth", "width", "status",
                                     "final_train_loss", "best_lr"])
    fig = valid(best_rate_heatmaps(df, "final_train_loss", ["agd", "adam (best lr)"],
                                   selected=(2, 8)))
    maps = heatmaps_of(fig)
    assert [a.text for a in fig.layout.annotations] == ["agd", "adam (best lr)"]
    assert fig.layout.annotations[1].font.color == color_for("adam")
    assert maps[0].zmin == maps[1].zmin and maps[0].zmax == maps[1].zmax  # one colour scale
    assert cell_text(fig, 1, 2, 8) == "0.05<br>lr 0.01"
    assert cell_text(fig, 1, 32, 8) == "2.3<br>lr 0.001"
    assert cell_text(fig, 0, 2, 8) == "0.1"  # AGD has no rate to name
    assert cell_text(fig, 1, 2, 16) == "·"
    assert len(fig.layout.shapes) == 2


def test_sweep_figures_on_empty_inputs():
    assert is_waiting(valid(sweep_heatmaps(pd.DataFrame(), "final_train_acc")))
    assert is_waiting(valid(sweep_heatmaps(None, "final_train_acc")))
    assert is_waiting(valid(best_rate_heatmaps(pd.DataFrame())))
    fig = valid(sweep_heatmaps(sweep_results(), "mean_eta"))
    assert fig.layout.annotations[0].text == "no mean eta in this sweep yet"


# ---------------------------------------------------------------------------------------- scale


@pytest.fixture(scope="module")
def big_runs():
    """4 runs x 20k steps x 32 layers, layer metrics every step: the benchmark's worst case."""
    return make_runs(steps=20_000, n_layers=32,
                     specs=("agd", "adam:lr=1e-3", "adam:lr=1e-2", "sgd:lr=0.1"))


def test_long_traces_use_webgl_and_are_downsampled(big_runs):
    fig = loss_figure(big_runs, smoothing=0.6)
    assert {t.type for t in fig.data} == {"scattergl"}
    assert all(len(t.x) <= 2000 for t in fig.data)
    short = loss_figure(make_runs(steps=300))
    assert {t.type for t in short.data} == {"scatter"}


def test_live_figures_for_4_runs_20k_steps_32_layers_fit_the_budget(big_runs):
    def build(x):
        # A live page gets fresh frames from the store on every refresh: time it uncached.
        for run in big_runs:
            run._cache.clear()
        start = time.perf_counter()
        figs = all_live_figures(big_runs, x=x)
        return time.perf_counter() - start, figs

    seconds = min(build("step")[0] for _ in range(3))
    for x in ("step", "time"):
        _, figs = build(x)
        sizes = {name: len(pio.to_json(fig, validate=False)) for name, fig in figs.items()}
        total = sum(sizes.values())
        print(f"\nall_live_figures 4 runs x 20k steps x 32 layers, x={x}: "
              f"build {seconds * 1e3:.0f} ms, JSON {total / 1e6:.3f} MB {sizes}")
        assert total < 1_000_000  # what st.plotly_chart sends per refresh
        assert set(figs) == set(charts.LIVE_FIGURES)
        for fig in figs.values():
            assert not is_waiting(fig)
            json.loads(pio.to_json(fig, validate=False))


# ------------------------------------------------------------------------------ any scalar metric


def test_scalar_figure_draws_any_metric_per_run_in_its_optimisers_colour():
    runs = make_runs(steps=200, n_layers=2, specs=("agd", "adam:lr=1e-3"))
    fig = valid(charts.scalar_figure(runs, "test_acc"))
    lines = sorted(line_traces(fig), key=lambda t: t.legendrank)  # in the legend's order
    assert [t.name for t in lines] == ["agd", "adam lr=1e-3"]
    assert lines[0].line.color == color_for("agd") and lines[1].line.color == color_for("adam")
    # test_acc is logged every 50 steps: only those points are drawn
    assert list(lines[0].x) == [0, 50, 100, 150]
    assert fig.layout.yaxis.title.text == "test accuracy"

    eta = valid(charts.scalar_figure(runs, "eta", x="time"))
    assert [t.name for t in line_traces(eta)] == ["agd"]  # Adam logs no η
    assert eta.layout.xaxis.title.text == "wall time (s)"


@pytest.mark.parametrize("build", [
    lambda runs: charts.loss_figure(runs, "loss", smoothing=0.6),
    lambda runs: charts.scalar_figure(runs, "acc"),
    lambda runs: charts.rel_update_figure(runs),
    lambda runs: charts.dashboard_figure(runs, ["loss", "w_srank"]),
])
def test_agd_is_drawn_on_top_of_the_baselines_and_listed_first(build):
    runs = make_runs(steps=200, n_layers=2, specs=("adam:lr=1e-3", "agd", "sgd:lr=0.1"))
    fig = valid(build(runs))
    agd = [k for k, t in enumerate(fig.data) if t.name and t.name.startswith("agd")]
    others = [k for k, t in enumerate(fig.data) if t.name and not t.name.startswith("agd")]
    assert agd and others and min(agd) > max(others)  # plotly draws later traces on top
    shown = sorted((t for t in fig.data if t.showlegend is not False), key=lambda t: t.legendrank)
    assert [t.name.split()[0] for t in shown][:3] == ["adam", "agd", "sgd"]  # the builder's order


def test_scalar_figure_smoothing_and_log_axis():
    runs = make_runs(steps=300, n_layers=2, specs=("agd",))
    raw = charts.scalar_figure(runs, "loss")
    smooth = valid(charts.scalar_figure(runs, "loss", smoothing=0.9))
    faint, bold = line_traces(smooth)
    assert faint.opacity == 0.25 and not faint.showlegend
    assert np.std(np.diff(bold.y)) < np.std(np.diff(line_traces(raw)[0].y))
    assert "EMA 0.9" in smooth.layout.yaxis.title.text

    runs[0].scalars.loc[5, "loss"] = -1.0  # no place on a log axis
    logged = valid(charts.scalar_figure(runs, "loss", log_y=True))
    assert logged.layout.yaxis.type == "log"
    assert 5 not in list(line_traces(logged)[0].x)
    assert is_waiting(charts.scalar_figure([], "loss"))
    assert "no" in charts.scalar_figure(runs, "nope").layout.annotations[0].text


# ---------------------------------------------------------------------------------------- imports


def test_charts_import_neither_torch_nor_streamlit():
    """The Streamlit server draws every figure; charts must keep torch (seconds to import) and
    streamlit out of whatever imports them (docs/architecture.md, "Import rules")."""
    code = ("import sys, agd_viz.charts, agd_viz.charts.palette, agd_viz.charts.sweep; "
            "print(sorted(m for m in ('torch', 'streamlit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_spike_does_not_squash_a_loss_chart():
    runs = make_runs(steps=300, n_layers=2, specs=("agd", "dadapt-adam"))
    spiky = runs[1].scalars.copy()
    spiky.loc[spiky["step"] == 150, "loss"] = 60.0  # what D-Adapt Adam once did
    runs[1] = charts.RunData(run_id=runs[1].run_id, label=runs[1].label, optimizer=runs[1].optimizer,
                             scalars=spiky)
    fig = valid(charts.loss_figure(runs, "loss"))
    lo, hi = fig.layout.yaxis.range
    bulk = max(float(np.nanmax(r.scalars["loss"].to_numpy()[r.scalars["loss"].to_numpy() < 50])) for r in runs)
    assert bulk <= hi < 10 and "a spike reaches 60" in fig.layout.annotations[-1].text
    calm = valid(charts.loss_figure(make_runs(steps=300, n_layers=2, specs=("agd",)), "loss"))
    assert calm.layout.yaxis.range is None  # nothing to cut
    assert valid(charts.loss_figure(runs, "loss", log_y=True)).layout.yaxis.range is None


def test_step_size_figure_draws_lemma8_on_the_G_panel():
    runs = make_runs(steps=400, specs=("agd", "adam:lr=1e-3"))
    fig = valid(step_size_figure(runs))
    (bound,) = [t for t in fig.data if t.name == charts.lines.LEMMA8_NAME]
    assert bound.yaxis == "y2" and "Lemma 8" in bound.name
    t, g = np.asarray(bound.x, dtype=float), np.asarray(bound.y, dtype=float)
    np.testing.assert_allclose(g, np.sqrt(11 / t), rtol=1e-6)
    assert t[0] == 1 and t[-1] == runs[0].scalars["step"].max()
    assert "Assumption 1" in bound.hovertext and "square loss" in bound.hovertext
    gaps = "the loss is cross-entropy, not the square loss"
    fig = valid(step_size_figure(runs, lemma8_gaps=gaps))
    (bound,) = [t for t in fig.data if t.name == charts.lines.LEMMA8_NAME]
    assert f"Not met here: {gaps}." in bound.hovertext
    assert any(gaps in a.text for a in fig.layout.annotations)
    assert not [t for t in step_size_figure(runs, x="time").data if t.name == charts.lines.LEMMA8_NAME]
    assert not [t for t in step_size_figure(runs[1:]).data if t.name == charts.lines.LEMMA8_NAME]


def test_axis_says_how_many_examples_an_evaluation_read():
    from agd_viz import cost
    from agd_viz.charts.common import EVAL_TRAIN_MAX

    assert EVAL_TRAIN_MAX == cost.EVAL_MAX
    runs = make_runs(specs=("agd",))
    assert "whole test set" in loss_figure(runs, "acc", "test").layout.yaxis.title.text
    assert "≤ 8,192 examples" in loss_figure(runs, "acc", "train").layout.yaxis.title.text
