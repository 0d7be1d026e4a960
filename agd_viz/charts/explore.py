"""Figures for exploring many runs at once (the Runs page): a dashboard of several metrics with one
shared step axis, so zooming one panel zooms them all, and a hyperparameter view, the final value of
a metric against depth, width, batch size or optimiser, seeds grouped as mean with a min–max band.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from agd_viz.charts.common import (
    _X_TITLES,
    LINE_HEIGHT,
    RunData,
    _check_x,
    _figure,
    _finite_xy,
    _layer_view,
    _layout,
    _line,
    downsample,
    ema,
    empty_figure,
    metric_name,
)
from agd_viz.charts.palette import _rgba, _styles, color_for

__all__ = ["dashboard_figure", "hparam_figure", "PANEL_HEIGHT"]

PANEL_HEIGHT = 230
_GAP = 0.06  # between stacked panels, as a share of the figure's height


def _series(run: RunData, metric: str, x: str):
    """(x, y) of a scalar metric, or of a per-layer metric's mean over layers (NaN layers left out)."""
    if run.scalars is not None and metric in run.scalars:
        return _finite_xy(run.scalars, metric, x)
    view = _layer_view(run)
    M = view.matrix(metric) if view is not None else None
    if M is None:
        return None, None
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(np.isfinite(M), M, np.nan), axis=1) if M.size else np.empty(0)
    xs = view.x(x)
    keep = np.isfinite(mean)
    return xs[keep], mean[keep]


def dashboard_figure(runs: Sequence[RunData], metrics: Sequence[str], *, smoothing: float = 0.0,
                     log_y: bool = False, x: str = "step", max_points: int = 1000) -> go.Figure:
    """One panel per metric, stacked, every panel on the same x axis (zoom and pan move them all).
    Scalar metrics are drawn as they are; a per-layer metric as its mean over layers. A run keeps
    its colour and legend entry across panels."""
    _check_x(x)
    metrics = list(metrics)
    urev = f"dashboard:{','.join(metrics)}:{x}:{log_y}"
    if not metrics or not runs:
        return empty_figure("choose runs and metrics", uirevision=urev)
    n = len(metrics)
    height = max(LINE_HEIGHT, PANEL_HEIGHT * n)
    step = (1.0 - _GAP * (n - 1)) / n
    styles = _styles(runs)
    traces: list[dict] = []
    layout = _layout(height, urev, xtitle=_X_TITLES[x])
    for k, metric in enumerate(metrics):
        axis = "" if k == 0 else str(k + 1)
        top = 1.0 - k * (step + _GAP)
        layout[f"yaxis{axis}"] = dict(domain=[max(top - step, 0.0), top], anchor="x",
                                      title=dict(text=metric_name(metric)), type="log" if log_y else "linear",
                                      hoverformat=".4g", exponentformat="power" if log_y else "B")
        for run in runs:
            xs, ys = _series(run, metric, x)
            if xs is None or not len(xs):
                continue
            if log_y:
                xs, ys = xs[ys > 0], ys[ys > 0]
            if smoothing > 0:
                ys = ema(ys, smoothing)
            color, dash = styles[id(run)]
            sx, sy = downsample(xs, ys, max_points)
            traces.append(_line(sx, sy, name=run.label, color=color, dash=dash, group=str(run.run_id),
                                showlegend=k == 0, yaxis=f"y{axis}"))
    if not traces:
        return empty_figure("none of these metrics was recorded for these runs", uirevision=urev)
    return _figure(traces, layout)


def hparam_figure(frame: pd.DataFrame, x: str, metric: str, *, title: str | None = None,
                  height: int = LINE_HEIGHT + 60) -> go.Figure:
    """A metric's final value against one hyperparameter: one line per group (`frame["line"]`, the
    optimiser and the settings that vary), its mean over seeds with a band from the lowest to the
    highest seed. `frame`: columns line, optimizer, x, mean, lo, hi, n (views.runs.hparam_frame).
    Depth, width and batch size are powers of two in practice: a log x axis; optimisers are
    categories, drawn as points with error bars."""
    urev = f"hparam:{x}:{metric}"
    if frame is None or not len(frame):
        return empty_figure(f"no finished runs with a {metric_name(metric)}", uirevision=urev, title=title)
    categorical = x == "optimizer"
    traces = []
    for line, part in frame.groupby("line", sort=False):
        part = part.sort_values("x") if not categorical else part
        color = color_for(str(part["optimizer"].iloc[0]))
        xs, mean = part["x"].to_numpy(), part["mean"].to_numpy(dtype=np.float64)
        lo, hi = part["lo"].to_numpy(dtype=np.float64), part["hi"].to_numpy(dtype=np.float64)
        seeds = part["n"].to_numpy()
        if not categorical and len(part) > 1 and (hi > lo).any():
            traces.append(dict(type="scatter", x=np.concatenate([xs, xs[::-1]]).tolist(),
                               y=np.concatenate([lo, hi[::-1]]).tolist(), fill="toself", mode="lines",
                               line=dict(width=0, color=_rgba(color, 0.0)), fillcolor=_rgba(color, 0.18),
                               hoverinfo="skip", showlegend=False, legendgroup=str(line)))
        traces.append(dict(
            type="scatter", x=xs.tolist(), y=mean.tolist(), name=str(line), legendgroup=str(line),
            mode="markers" if categorical else "lines+markers", line=dict(color=color, width=2),
            marker=dict(color=color, size=8),
            error_y=dict(type="data", symmetric=False, array=(hi - mean).tolist(), arrayminus=(mean - lo).tolist(),
                         visible=categorical, color=color),
            customdata=np.stack([lo, hi, seeds], axis=1).tolist(),
            hovertemplate=f"{line}<br>{x} %{{x}}: %{{y:.4g}} (seeds: %{{customdata[2]}}, "
                          "from %{customdata[0]:.4g} to %{customdata[1]:.4g})<extra></extra>"))
    layout = _layout(height, urev, title=title, hovermode="closest", xtitle=x.replace("_", " "),
                     ytitle=f"{metric_name(metric)} (mean over seeds, band: min–max)")
    if not categorical and len(frame) and (frame["x"] > 0).all():
        values = sorted(set(frame["x"]))
        layout["xaxis"].update(type="log", tickvals=values, ticktext=[f"{v:g}" for v in values])
    elif categorical:
        layout["xaxis"]["type"] = "category"
    if metric.endswith("_acc") and math.isfinite(frame["hi"].max()):
        layout["yaxis"].update(tickformat=".0%")
    return _figure(traces, layout)
