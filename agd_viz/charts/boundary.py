"""Decision boundaries of a model on a 2-D toy data set: the predicted class over a grid (paler
where the model is unsure) with the training points on top. The caller supplies the grid's
predictions; nothing here runs a model."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from agd_viz.charts.common import GL_THRESHOLD, _figure, _layout, empty_figure
from agd_viz.charts.palette import _CLASS_COLORS, _mix_white

__all__ = ["decision_boundary_figure", "BOUNDARY_HEIGHT"]

BOUNDARY_HEIGHT = 460


def decision_boundary_figure(xx, yy, probs_or_labels, points_x, points_y, labels,
                             title: str | None = None, *, class_names: Sequence[str] | None = None,
                             height: int = BOUNDARY_HEIGHT) -> go.Figure:
    """Predicted class over a grid with the training points on top (2-D toy datasets).

    xx, yy: the grid (meshgrid arrays (ny, nx), or the 1-D axes). probs_or_labels: class labels
    per grid point, or class probabilities with the class last; flat or (ny, nx). A confident
    region is drawn at full tint, an uncertain one paler (opacity follows max-probability).
    """
    urev = f"boundary:{title}"
    xx, yy = np.asarray(xx, dtype=np.float64), np.asarray(yy, dtype=np.float64)
    gx = xx[0, :] if xx.ndim == 2 else xx
    gy = yy[:, 0] if yy.ndim == 2 else yy
    P = np.asarray(probs_or_labels)
    nx, ny = len(gx), len(gy)
    if P.size == 0 or nx == 0 or ny == 0:
        return empty_figure(height=height, uirevision=urev, title=title)
    if P.ndim == 3:
        P = P.reshape(ny * nx, -1)
    elif P.ndim == 2 and P.shape == (ny, nx):
        P = P.reshape(-1)
    if P.ndim == 1 and P.dtype.kind == "f" and not np.all(P == np.round(P)):
        P = np.stack([1.0 - P, P], axis=1)  # a single column is P(class 1)
    if P.ndim == 2 and P.shape[1] > 1:
        pred = P.argmax(axis=1)
        conf = P.max(axis=1)
        n_classes = P.shape[1]
    else:
        pred = P.reshape(-1).astype(np.int64)
        conf = None
        n_classes = int(pred.max()) + 1
    if pred.size != ny * nx:
        raise ValueError(f"{pred.size} predictions for a {ny} x {nx} grid")
    labels = np.asarray(labels).reshape(-1)
    if labels.size:
        n_classes = max(n_classes, int(labels.max()) + 1)
    pred = pred.reshape(ny, nx)
    colors = [_CLASS_COLORS[c % len(_CLASS_COLORS)] for c in range(n_classes)]
    names = list(class_names) if class_names is not None else [f"class {c}" for c in
                                                               range(n_classes)]
    scale = []
    for c, col in enumerate(colors):
        tint = _mix_white(col, 0.65)
        scale += [[c / n_classes, tint], [(c + 1) / n_classes, tint]]
    traces = [dict(type="heatmap", x=gx.astype(np.float32), y=gy.astype(np.float32),
                   z=pred.astype(np.int16), zmin=-0.5, zmax=n_classes - 0.5, zauto=False,
                   colorscale=scale, showscale=False, hoverinfo="skip",
                   opacity=1.0 if conf is None else 0.9)]
    if conf is not None:
        # White veil whose opacity grows as the model gets less sure: boundaries read as soft.
        unsure = np.clip(1.0 - (conf.reshape(ny, nx) - 1.0 / n_classes) * n_classes /
                         max(n_classes - 1, 1), 0, 1)
        traces.append(dict(type="heatmap", x=gx.astype(np.float32), y=gy.astype(np.float32),
                           z=unsure.astype(np.float32), zmin=0, zmax=1, zauto=False,
                           colorscale=[[0, "rgba(255,255,255,0)"], [1, "rgba(255,255,255,0.8)"]],
                           showscale=False, hoverinfo="skip"))
    px, py = np.asarray(points_x, dtype=np.float32), np.asarray(points_y, dtype=np.float32)
    for c in range(n_classes):
        m = labels == c
        if not m.any():
            continue
        traces.append(dict(
            type="scattergl" if m.sum() > GL_THRESHOLD else "scatter", x=px[m], y=py[m],
            mode="markers", name=names[c] if c < len(names) else f"class {c}",
            marker=dict(color=colors[c], size=6, line=dict(width=0.5, color="white")),
        ))
    layout = _layout(height, urev, title=title, hovermode="closest", xtitle="x₁", ytitle="x₂")
    layout["yaxis"].update(scaleanchor="x", scaleratio=1)
    layout["xaxis"].update(range=[float(gx.min()), float(gx.max())], constrain="domain")
    layout["yaxis"].update(range=[float(gy.min()), float(gy.max())], constrain="domain")
    return _figure(traces, layout)
