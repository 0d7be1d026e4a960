"""Plotly figure builders for AGD Explorer: run-store frames in, `go.Figure` out.

Pure numpy/pandas/plotly, no torch and no streamlit, so a page importing this stays light; of
agd_viz it may import only `fmt`, `optspec` and `theory` (docs/architecture.md, "Import rules").
The modules, by kind of figure:

    palette   one colour per optimiser family, shades per learning rate; run line styles
    common    RunData, metric names, smoothing, downsampling, layer pivots, layout scaffolding
              (and the performance budgets every builder keeps: read its docstring first)
    lines     loss/accuracy, step size, relative update, per-layer lines, any scalar
    layers    layer × step heatmaps
    sweep     depth × width grids (clickable cells, statuses, best rate)
    boundary  decision boundaries of 2-D toy data sets
    live      the Live page's set of figures
    explore   many runs at once: a dashboard of metrics on one axis, final values against a setting

`from agd_viz import charts` gives every public builder below; the How AGD works figures are in
`agd_viz.charts.explain`, imported by their page only.
"""

from agd_viz.charts.boundary import BOUNDARY_HEIGHT, decision_boundary_figure
from agd_viz.charts.common import (
    LINE_HEIGHT,
    WAITING,
    RunData,
    chart_style,
    downsample,
    ema,
    empty_figure,
    metric_name,
    presenter_style,
)
from agd_viz.charts.explore import dashboard_figure, hparam_figure
from agd_viz.charts.layers import (
    HEATMAP_ROW_HEIGHT,
    MAX_HEATMAP_COLS,
    layer_heatmap,
    layer_heatmaps,
)
from agd_viz.charts.lines import (
    STEP_SIZE_HEIGHT,
    layer_lines_figure,
    loss_figure,
    rel_update_figure,
    scalar_figure,
    step_size_figure,
)
from agd_viz.charts.live import LIVE_FIGURES, all_live_figures, hold_x
from agd_viz.charts.palette import color_for, md_label
from agd_viz.charts.sweep import STATUS_TEXT, SWEEP_HEIGHT, best_rate_heatmaps, sweep_heatmaps

__all__ = [
    "RunData",
    "color_for",
    "md_label",
    "presenter_style",
    "chart_style",
    "ema",
    "downsample",
    "metric_name",
    "empty_figure",
    "loss_figure",
    "step_size_figure",
    "rel_update_figure",
    "layer_lines_figure",
    "scalar_figure",
    "layer_heatmap",
    "layer_heatmaps",
    "decision_boundary_figure",
    "sweep_heatmaps",
    "best_rate_heatmaps",
    "all_live_figures",
    "hold_x",
    "dashboard_figure",
    "hparam_figure",
    "LIVE_FIGURES",
    "STATUS_TEXT",
    "WAITING",
    "LINE_HEIGHT",
    "STEP_SIZE_HEIGHT",
    "HEATMAP_ROW_HEIGHT",
    "MAX_HEATMAP_COLS",
    "SWEEP_HEIGHT",
    "BOUNDARY_HEIGHT",
]
