"""Logic of the Live page's view (agd_viz.views.live_view, replay, and the link of live_form): short
links relative to the comparison they open, chart options in the link, status chips, presenter
sizes, and a replay's cut of the frames."""

import pandas as pd
import pytest

from agd_viz import charts
from agd_viz.views import live_form as form
from agd_viz.views import live_view as view
from agd_viz.views import replay


# -- the link --------------------------------------------------------------------------------------


def test_the_link_names_only_what_differs_from_the_defaults():
    assert form.link_params(form.DEFAULTS, None, False) == {}
    state = dict(form.DEFAULTS, depth=32, adam_lr="1e-3")  # "1e-3" is the default rate, spelled otherwise
    assert form.link_params(state, 4, True) == {"group": "4", "present": "1", "depth": "32"}
    preset = form.PRESETS["Tuned Adam vs AGD"].state()
    assert form.link_params(preset, None, False) == {"steps": "400", "adam_lr": "1e-4, 1e-3, 1e-2"}


def test_a_link_is_relative_to_the_comparison_it_opens():
    group_form = dict(form.DEFAULTS, depth=3, width=16, steps=30)
    state = dict(group_form, depth=5)
    params = form.link_params(state, 7, False, base=group_form)
    assert params == {"group": "7", "depth": "5"}
    # A new session reads it back on top of the comparison's settings.
    link = form.read_link(params, {}, base=group_form)
    assert link.group == 7 and link.state == state and not link.notes
    # `?group=7` alone: the form shows that comparison's settings.
    assert form.read_link({"group": "7"}, {}, base=group_form).state == group_form
    # The page's own link changes nothing; nor does a bare URL (after a visit to another page).
    written = {"fields": form.form_params(params), "group": 7, "present": False}
    assert form.read_link(params, written, base=group_form).state is None
    assert form.read_link({}, written).state is None and form.read_link({}, written).group is None


def test_chart_options_travel_in_the_link_and_bad_values_are_explained():
    assert view.option_params(view.OPTION_DEFAULTS) == {}
    values = {**view.OPTION_DEFAULTS, "lv_smooth": 0.2, "lv_logy": True, "lv_x": "time", "lv_focus": "acc"}
    params = view.option_params(values)
    assert params == {"smooth": "0.2", "logy": "1", "x": "time", "focus": "acc"}
    got, notes = view.read_options({**params, "group": "3"}, None)
    assert got == values and notes == []
    assert view.read_options(params, params) == (None, [])  # the page's own link
    assert view.read_options({"group": "3"}, params) == (None, [])  # a link of the form alone
    got, notes = view.read_options({"smooth": "2", "x": "epoch"}, None)
    assert got == view.OPTION_DEFAULTS and len(notes) == 2 and "outside 0–0.99" in notes[0]


def test_only_the_figures_shown_are_built():
    assert view.figures_shown() == ["loss", "acc", "step_size", "rel_update"]
    assert view.figures_shown(layers_open=True)[4:] == list(view.LAYER_CHARTS) == ["w_spec_scaled", "w_srank", "g_srank", "u_srank"]
    assert view.figures_shown("g_srank", layers_open=True) == ["g_srank"]


def test_status_chips_and_presenter_sizes():
    chips = view.status_chips({"step": 1200, "loss": 0.01234, "acc": 0.5, "eta": 0.31, "lr": None})
    assert chips == [("step", "1,200"), ("loss", "0.0123"), ("acc", "50.0 %"), ("η", "0.31")]
    assert view.status_chips({"step": None, "lr": 1e-3})[-1] == ("lr", "0.001")
    assert view.status_chips({"step": None})[0] == ("step", "–")
    two, four = view.chart_height(True, 2), view.chart_height(True, 4)
    assert 400 <= two <= 450 and 300 <= four < two and view.chart_height(True, 2, replay=True) < two
    assert view.chart_height(False, 2) == 340 and view.chart_height(True, 8) == view.MIN_CHART_H
    assert view.chart_height(True, 2, focus=True) == two and view.chart_height(False, 2, focus=True) > 500


def test_presenter_type_is_at_least_18_px():
    runs = [charts.RunData(1, "agd", "agd", pd.DataFrame({"step": range(30), "loss": [1.0] * 30}))]
    for fig in (charts.loss_figure(runs), charts.layer_heatmaps(runs), charts.empty_figure()):
        fig = charts.presenter_style(fig, height=400)
        assert fig.layout.height == 400 and fig.layout.legend.font.size >= 18
        assert fig.layout.xaxis.tickfont.size >= 18 and fig.layout.yaxis.tickfont.size >= 18
        assert all(a.font.size >= 18 for a in fig.layout.annotations or ())


# -- replay ----------------------------------------------------------------------------------------


def frame(steps):
    return pd.DataFrame({"step": list(steps), "t": [0.1 * s for s in steps], "loss": [1.0 / (1 + s) for s in steps]})


def test_replay_cuts_every_frame_at_its_step_and_holds_the_axis():
    a, b = frame(range(0, 801)), frame(range(0, 401))
    assert replay.step_span([a, b, None, frame([])]) == (0, 800)
    assert replay.step_span([None]) is None
    cut = replay.up_to(a, 250)
    assert cut["step"].iloc[-1] == 250 and len(cut) == 251 and replay.up_to(a, 10_000) is a
    assert replay.up_to(None, 5) is None and replay.up_to(a, None) is a  # no replay: everything
    assert replay.x_span([a, b]) == (0.0, 800.0) and replay.x_span([a], "time") == (0.0, pytest.approx(80.0))
    runs = [charts.RunData(1, "agd", "agd", cut)]
    figs = charts.hold_x(charts.all_live_figures(runs, names=["loss", "acc"]), 0, 800)
    assert set(figs) == {"loss", "acc"} and list(figs["loss"].layout.xaxis.range) == [0, 800]


def test_replay_plays_a_run_of_any_length_in_about_twenty_seconds():
    for hi in (40, 800, 20_000):
        step, frames = 0, 0
        while step < hi:
            step = replay.advance(step, 0, hi)
            frames += 1
        assert frames * replay.TICK_S <= replay.REPLAY_S + replay.TICK_S
        assert frames * replay.TICK_S >= min(hi, replay.REPLAY_S / replay.TICK_S) * replay.TICK_S * 0.9
    assert replay.clamp(None, 0, 80) == 80 and replay.clamp(500, 0, 80) == 80 and replay.clamp(-3, 0, 80) == 0
