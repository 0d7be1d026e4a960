"""Layer × step heatmaps of a per-layer metric (stable ranks of weights and gradients): one run,
or several stacked on one colour scale. Long runs are binned along the step axis so the figure
stays small (`common._bin_steps`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from agd_viz.charts.common import (
    WAITING,
    RunData,
    _bin_steps,
    _compact,
    _figure,
    _finite_range,
    _has_rows,
    _layer_view,
    _layout,
    _no_runs,
    empty_figure,
    metric_name,
)
from agd_viz.charts.palette import color_for

__all__ = ["layer_heatmap", "layer_heatmaps", "HEATMAP_ROW_HEIGHT", "MAX_HEATMAP_COLS"]

MAX_HEATMAP_COLS = 500
HEATMAP_ROW_HEIGHT = 170


def _binned_layers(run: RunData, metric: str, max_cols: int):
    view = _layer_view(run)
    M = view.matrix(metric) if view else None
    if M is None:
        return None
    total = M.sum(axis=1)
    keep = np.isfinite(total)
    if not keep.all():
        keep[~keep] = np.isfinite(M[~keep]).any(axis=1)
    if not keep.any():
        return None
    steps = view.steps if keep.all() else view.steps[keep]
    xs, z = _bin_steps(steps, M if keep.all() else M[keep], max_cols)
    return xs, view.layer_ids, z


def _heatmap_trace(xs, ys, z, metric: str, zmin: float, zmax: float, showscale: bool,
                   xaxis="x", yaxis="y", colorscale="Viridis") -> dict:
    return dict(
        type="heatmap", x=_compact(xs), y=ys, z=z, zmin=zmin, zmax=zmax, zauto=False,
        colorscale=colorscale, showscale=showscale, xaxis=xaxis, yaxis=yaxis,
        colorbar=dict(title=dict(text=metric_name(metric), side="right"), thickness=14),
        hovertemplate=f"step %{{x:.0f}}<br>layer %{{y}}<br>{metric_name(metric)}: %{{z:.4g}}"
                      "<extra></extra>",
    )


def layer_heatmap(run: RunData, metric: str = "w_srank", *, max_cols: int = MAX_HEATMAP_COLS,
                  zmin: float | None = None, zmax: float | None = None,
                  title: str | None = None, height: int = 2 * HEATMAP_ROW_HEIGHT) -> go.Figure:
    """Layer × step heatmap of a per-layer metric for one run (x step, y layer 0..L−1).

    For the stable ranks, srank(M) = ‖M‖_F² / ‖M‖_*². Runs with more steps than `max_cols` are
    binned along the step axis (mean per bin) so the figure stays small.
    """
    urev = f"heatmap:{metric}:{run.run_id if run is not None else ''}"
    if run is None or not _has_rows(run.layers):
        return empty_figure(height=height, uirevision=urev, title=title)
    binned = _binned_layers(run, metric, max_cols)
    if binned is None:
        return empty_figure(f"no {metric_name(metric)} recorded yet", height=height,
                            uirevision=urev, title=title)
    xs, ys, z = binned
    lo, hi = _finite_range([z])
    trace = _heatmap_trace(xs, ys, z, metric, lo if zmin is None else zmin,
                           hi if zmax is None else zmax, True)
    layout = _layout(height, urev, title=title, xtitle="step", ytitle="layer", legend=False,
                     hovermode="closest")
    return _figure([trace], layout)


def layer_heatmaps(runs: Sequence[RunData], metric: str = "w_srank", *,
                   max_cols: int = MAX_HEATMAP_COLS, title: str | None = None,
                   row_height: int = HEATMAP_ROW_HEIGHT) -> go.Figure:
    """`layer_heatmap` for several runs stacked, one row each, sharing one colour scale and the
    step axis so optimisers can be compared cell for cell."""
    urev = f"heatmaps:{metric}"
    rows = []
    for run in runs:
        if _has_rows(run.layers):
            binned = _binned_layers(run, metric, max_cols)
            if binned is not None:
                rows.append((run, binned))
    height = 60 + row_height * max(len(rows), 1)
    if not rows:
        msg = WAITING if _no_runs(runs, "layers") else f"no {metric_name(metric)} recorded yet"
        return empty_figure(msg, height=height, uirevision=urev, title=title)
    zmin, zmax = _finite_range([b[2] for _, b in rows])
    n = len(rows)
    gap = 0.12 / n if n > 1 else 0.0
    h = (1.0 - gap * (n - 1)) / n
    traces, annotations = [], []
    layout = _layout(height, urev, title=title, legend=False, hovermode="closest")
    for i, (run, (xs, ys, z)) in enumerate(rows):
        suffix = "" if i == 0 else str(i + 1)
        top = 1.0 - i * (h + gap)
        traces.append(_heatmap_trace(xs, ys, z, metric, zmin, zmax, i == 0,
                                     xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
        layout[f"yaxis{suffix}"] = dict(domain=[max(top - h, 0.0), top], anchor=f"x{suffix}",
                                        title=dict(text="layer"))
        layout[f"xaxis{suffix}"] = dict(anchor=f"y{suffix}", showticklabels=i == n - 1,
                                        title=dict(text="step" if i == n - 1 else None))
        if i:
            layout[f"xaxis{suffix}"]["matches"] = "x"
        annotations.append(dict(text=run.label, xref="paper", yref="paper", x=0, y=top,
                                xanchor="left", yanchor="bottom", showarrow=False,
                                font=dict(size=12, color=color_for(run.optimizer or run.label))))
    layout["annotations"] = annotations
    return _figure(traces, layout)
