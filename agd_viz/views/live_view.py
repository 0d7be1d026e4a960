"""The Live page beyond its form: the chart options and the view carried in its link, the one-line
status of each run, the sizes that fit the presenter layout on a 1280×720 projector, and what
the landing says. The form itself is `views.live_form`; the panel's reads `views.live_panel`.

No streamlit, no torch (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any, Mapping

from agd_viz import fmt
from agd_viz.views.links import Param, read, write

__all__ = ["CHART_PARAMS", "OPTION_DEFAULTS", "FOCUS", "figures_shown", "read_options", "option_params",
           "status_chips", "chart_height", "HEADLINE"]

# Charts one can show alone, full screen ("" : every chart), with their titles.
FOCUS = {"": "All charts", "loss": "Loss", "acc": "Accuracy", "step_size": "Step size",
         "rel_update": "Relative update", "boundary": "Decision boundary",
         "w_spec_scaled": "Weight spectral norm", "w_srank": "Weight stable rank", "g_srank": "Gradient stable rank",
         "u_srank": "Update stable rank"}
# The per-layer charts, drawn (and sent to the browser) only while their expander is open: four
# heavy figures (a line per layer and run, three heatmaps) below the first screen.
LAYER_CHARTS = ("w_spec_scaled", "w_srank", "g_srank", "u_srank")

def figures_shown(focus: str = "", layers_open: bool = False) -> list[str]:
    """The Live figures to build (`charts.all_live_figures(names=…)`): the one shown full screen,
    else the four of the page and the per-layer ones while their expander is open. Nothing else
    is built or sent to the browser."""
    if focus:
        return [focus]
    return ["loss", "acc", "step_size", "rel_update", *(LAYER_CHARTS if layers_open else ())]


# The chart options in the link (views.links writes only what differs from these defaults).
CHART_PARAMS = (
    Param("smooth", "lv_smooth", "float", 0.6, lo=0.0, hi=0.99),
    Param("logy", "lv_logy", "bool", False),
    Param("x", "lv_x", "choice", "step", ("step", "time")),
    Param("split", "lv_split", "choice", "batch", ("batch", "train", "test")),
    Param("layers", "lv_layers", "bool", False),
    Param("focus", "lv_focus", "choice", "", tuple(FOCUS)),
)
OPTION_DEFAULTS: dict[str, Any] = {p.key: p.default for p in CHART_PARAMS}
OPTION_NAMES = frozenset(p.name for p in CHART_PARAMS)


def option_params(values: Mapping[str, Any]) -> dict[str, str]:
    """The chart options (by widget key) as query parameters, only those not at their default."""
    return write({**OPTION_DEFAULTS, **{k: v for k, v in values.items() if k in OPTION_DEFAULTS}}, CHART_PARAMS)


def read_options(params: Mapping[str, Any], written: Mapping[str, str] | None) -> tuple[dict | None, list[str]]:
    """The chart options a link sets ({widget key: value}, every option: those it does not name at
    their defaults), or None when the link's options are those the page wrote last, or when it
    names none (a link of the form alone, or the page after a visit to another one); and a
    sentence per value it could not use."""
    given = {k: str(v) for k, v in params.items() if k in OPTION_NAMES}
    if not given or given == dict(written or {}):
        return None, []
    values, notes = read(given, CHART_PARAMS)
    return {**OPTION_DEFAULTS, **values}, notes


# -------------------------------------------------------------------------------------------------
# Status


def status_chips(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, value) chips of one run's latest numbers (`live_panel.latest_values`): step, loss,
    accuracy, and AGD's η or a baseline's learning rate; "–" where there is none yet."""
    step = values.get("step")
    chips = [("step", f"{step:,}" if step is not None else "–"), ("loss", fmt.number(values.get("loss"))),
             ("acc", fmt.percent(values.get("acc")))]
    if values.get("eta") is not None:
        chips.append(("η", fmt.number(values["eta"])))
    else:
        chips.append(("lr", fmt.number(values.get("lr"))))
    return chips


# -------------------------------------------------------------------------------------------------
# Sizes (px). The presenter view's first screen at 1280×720 holds the controls and the comparison's
# line, a status line per run, a chart title and then the loss and accuracy charts side by side
# (or the one chart shown alone, at full width); measured in chromium, checked by
# tests/browser/test_presenter_browser.py.

SCREEN_H = 720  # a 1280×720 projector
PRESENT_TOP_H = 190  # controls, comparison line, chart title, gaps and a margin
STATUS_LINE_H = 47  # one run's chips and progress bar
REPLAY_ROW_H = 60  # the replay's Play button and slider
MIN_CHART_H = 280
NORMAL_H = 340
NORMAL_FOCUS_H = 560


def chart_height(present: bool, n_runs: int, replay: bool = False, focus: bool = False) -> int:
    """Height of the first row of charts, or of the one chart shown alone: in the presenter view
    what fits the rest of a 720 px screen, else the usual sizes (the page scrolls)."""
    if not present:
        return NORMAL_FOCUS_H if focus else NORMAL_H
    h = SCREEN_H - PRESENT_TOP_H - STATUS_LINE_H * n_runs - (REPLAY_ROW_H if replay else 0)
    return max(MIN_CHART_H, h)


# -------------------------------------------------------------------------------------------------
# Landing

HEADLINE = "Adam fails at depth 32"
WHAT_IS_AGD = ("**Automatic Gradient Descent (AGD)** trains a deep network with no learning rate: at every "
               "step it computes its own step size from the gradient and the network's depth and widths "
               "(Bernstein et al. 2023). Here it trains beside Adam, SGD and others on the same batches, live.")
LANDING_CAPTION = ("A 32-layer network on digits: AGD (blue) reaches 100 % train accuracy with no tuning, "
                   "Adam at its default rate (orange) stays near 20 %.")
