"""The paper's experimental figures, redrawn from our runs (frames from `agd_viz.views.figures` in,
Plotly figures out): accuracy curves (Figure 1, left), accuracy against learning rate with AGD as a
level line (Figure 1, middle), per-epoch η with its min–max band beside the objective and the
accuracies (Figures 4 and 5), small multiples over a depth × width grid (Figure 6) and curves per
batch size (Figure 7). Titles cite the paper from its one table (`agd_viz.paper`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from agd_viz import optspec, paper
from agd_viz.charts.common import downsample
from agd_viz.charts.palette import _rgba, color_for

__all__ = ["accuracy_curves_figure", "lr_grid_figure", "epoch_figure", "cells_figure", "batch_figure",
           "FIGURE_HEIGHT"]

FIGURE_HEIGHT = 420
_TRAIN, _TEST = "solid", "dot"


def _style(fig: go.Figure, title: str, height: int = FIGURE_HEIGHT) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), height=height, margin=dict(l=60, r=16, t=60, b=90),
                      legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"), hovermode="x unified")
    return fig


def _empty(title: str, message: str = "waiting for the runs…") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, title, 300)


def _finite(x, y):
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _band(fig, x, lo, hi, color, name, row=None, col=None, group=None):
    x, lo, hi = (np.asarray(a, dtype=float) for a in (x, lo, hi))
    keep = np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi)
    x, lo, hi = x[keep], lo[keep], hi[keep]
    if not len(x):
        return
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([lo, hi[::-1]]), fill="toself",
                             fillcolor=_rgba(color, 0.18), line=dict(width=0), hoverinfo="skip", name=name,
                             legendgroup=group, showlegend=False), row=row, col=col)


# -------------------------------------------------------------------------------------------------
# Figure 1


def accuracy_curves_figure(series: Sequence[Mapping]) -> go.Figure:
    """Figure 1 (left): train (solid) and test (dotted) accuracy per epoch, one colour per
    optimiser. `series`: {"label", "optimizer", "epochs"} with views.figures.per_epoch frames."""
    title = f"{paper.ref('fig1_left')}, redrawn: accuracy at the default learning rates"
    if not series:
        return _empty(title)
    fig = go.Figure()
    for s in series:
        e, color = s["epochs"], color_for(s["optimizer"])
        for col, dash, what in (("train_acc", _TRAIN, "train"), ("test_acc", _TEST, "test")):
            x, y = _finite(e["epoch"], e[col])
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{s['label']} {what}", legendgroup=s["label"],
                                     line=dict(color=color, dash=dash)))
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="accuracy", tickformat=".0%", range=[0, 1.02])
    return _style(fig, title)


def lr_grid_figure(grid, runs_note: str = "") -> go.Figure:
    """Figure 1 (middle): final train (solid) and test (dotted) accuracy against learning rate, a
    curve per tuned optimiser, and AGD's single run as level lines. `grid`: views.figures.lr_grid."""
    title = f"{paper.ref('fig1_middle')}, redrawn: accuracy against learning rate"
    title += f" · {runs_note}" if runs_note else ""
    if grid is None or not len(grid):
        return _empty(title)
    fig = go.Figure()
    for fam in [f for f in dict.fromkeys(grid["family"]) if f != "agd"]:
        sub = grid[grid["family"] == fam].sort_values("lr")
        color = color_for(fam)
        for col, dash, what in (("train_acc", _TRAIN, "train"), ("test_acc", _TEST, "test")):
            fig.add_trace(go.Scatter(x=sub["lr"], y=sub[col], mode="lines+markers", name=f"{optspec.title(fam)} {what}",
                                     legendgroup=fam, line=dict(color=color, dash=dash)))
        diverged = sub[sub["status"] == "diverged"]
        if len(diverged):
            fig.add_trace(go.Scatter(x=diverged["lr"], y=[0.0] * len(diverged), mode="markers", legendgroup=fam,
                                     name=f"{optspec.title(fam)} diverged", marker=dict(symbol="x", size=11, color=color)))
    agd = grid[grid["family"] == "agd"]
    if len(agd):
        for col, dash, what, where in (("train_acc", _TRAIN, "train", "top left"),
                                       ("test_acc", _TEST, "test", "bottom left")):
            v = float(agd[col].iloc[0])
            if np.isfinite(v):
                fig.add_hline(y=v, line=dict(color=color_for("agd"), dash=dash, width=2),
                              annotation_text=f"AGD {what} (one run, no learning rate)", annotation_position=where)
    fig.update_xaxes(title_text="learning rate", type="log", exponentformat="power")
    fig.update_yaxes(title_text="final accuracy", tickformat=".0%", range=[0, 1.02])
    fig.update_layout(hovermode="closest")
    return _style(fig, title)


# -------------------------------------------------------------------------------------------------
# Figures 4 and 5: per epoch


def epoch_figure(series: Sequence[Mapping], key: str = "fig4", top: str = "eta") -> go.Figure:
    """Figures 4 and 5: per epoch, a top-left panel (`top` = "eta": η's mean with its min–max band,
    AGD runs only; "rel_update": the mean relative update (1/L)Σ‖ΔW_k‖_F/‖W_k‖_F with its min–max
    band, every run), the objective top right, train and test accuracy below. `series`: {"label",
    "optimizer", "epochs" (views.figures.per_epoch), "rel" (views.figures.rel_update_per_epoch)}."""
    top_title = ("automatic learning rate η (mean, min–max)" if top == "eta"
                 else "relative update (1/L) Σ ‖ΔW‖_F/‖W‖_F")
    title = f"{paper.ref(key)}, redrawn: per epoch"
    if not series:
        return _empty(title)
    fig = make_subplots(rows=2, cols=2, subplot_titles=(top_title, "objective (mean minibatch loss)", "train accuracy",
                                                        "test accuracy"), vertical_spacing=0.14, horizontal_spacing=0.1)
    for s in series:
        e, color, group = s["epochs"], color_for(s["optimizer"]), s["label"]
        dash = "solid" if optspec.family(s["optimizer"]) == "agd" else "dash"
        if top == "eta" and optspec.family(s["optimizer"]) == "agd":
            _band(fig, e["epoch"], e["eta_min"], e["eta_max"], color, f"{group} η min–max", 1, 1, group)
            x, y = _finite(e["epoch"], e["eta_mean"])
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=group, legendgroup=group, showlegend=False,
                                     line=dict(color=color)), 1, 1)
        elif top == "rel_update" and s.get("rel") is not None and len(s["rel"]):
            r = s["rel"]
            _band(fig, r["epoch"], r["rel_min"], r["rel_max"], color, f"{group} min–max", 1, 1, group)
            fig.add_trace(go.Scatter(x=r["epoch"], y=r["rel_mean"], mode="lines", name=group, legendgroup=group,
                                     showlegend=False, line=dict(color=color, dash=dash)), 1, 1)
        for (row, col), name in (((1, 2), "objective"), ((2, 1), "train_acc"), ((2, 2), "test_acc")):
            x, y = _finite(e["epoch"], e[name])
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=group, legendgroup=group, line=dict(color=color, dash=dash),
                                     showlegend=(row, col) == (1, 2)), row, col)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    fig.update_yaxes(tickformat=".0%", row=2, col=2)
    fig.update_xaxes(title_text="epoch", row=2)
    return _style(fig, title, 620)


# -------------------------------------------------------------------------------------------------
# Figure 6: small multiples over the grid


def cells_figure(cells: Sequence[Mapping], value: str = "eta") -> go.Figure:
    """Figure 6: one small panel per (depth, width) cell, rows by depth and columns by width, of η
    per epoch (`value` "eta": its mean, with its min–max band) or the objective per epoch
    ("objective"), on shared axes so the two phases line up. `cells`: {"depth", "width", "epochs"}
    with views.figures.per_epoch frames."""
    what = "η per epoch (mean, min–max)" if value == "eta" else "objective per epoch"
    title = f"{paper.ref('fig6')}, redrawn: {what} in every cell"
    if not cells:
        return _empty(title)
    depths = sorted({c["depth"] for c in cells})
    widths = sorted({c["width"] for c in cells})
    fig = make_subplots(rows=len(depths), cols=len(widths), shared_xaxes=True, shared_yaxes=True,
                        column_titles=[f"width {w}" for w in widths], row_titles=[f"depth {d}" for d in depths],
                        horizontal_spacing=0.02, vertical_spacing=0.03)
    color = color_for("agd")
    for c in cells:
        e, row, col = c["epochs"], depths.index(c["depth"]) + 1, widths.index(c["width"]) + 1
        if value == "eta":
            _band(fig, e["epoch"], e["eta_min"], e["eta_max"], color, "min–max", row, col)
        x, y = _finite(e["epoch"], e["eta_mean" if value == "eta" else "objective"])
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color=color, width=1.5), showlegend=False,
                                 name=f"depth {c['depth']} × width {c['width']}"), row, col)
    fig.update_yaxes(type="log")
    fig.update_layout(hovermode="closest")
    return _style(fig, title, max(320, 110 * len(depths) + 80))


# -------------------------------------------------------------------------------------------------
# Figure 7: batch sizes


def batch_figure(series: Sequence[Mapping]) -> go.Figure:
    """Figure 7: η (every iteration of the first epoch, then once per epoch, as the paper plots it)
    and the objective per epoch, a line per batch size. `series`: {"batch", "epoch_x", "eta", "epochs"}."""
    title = f"{paper.ref('fig7')}, redrawn: η and objective at each batch size"
    if not series:
        return _empty(title)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("automatic learning rate η", "objective (mean minibatch loss)"),
                        horizontal_spacing=0.1)
    colors = sample_colorscale("Viridis", [i / max(len(series) - 1, 1) * 0.85 for i in range(len(series))])
    for s, color in zip(sorted(series, key=lambda s: s["batch"]), colors):
        name = f"batch {s['batch']}"
        x, y = _finite(s["epoch_x"], s["eta"])
        x, y = downsample(x, y, 800) if len(x) > 800 else (x, y)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, legendgroup=name, line=dict(color=color)), 1, 1)
        e = s["epochs"]
        x, y = _finite(e["epoch"], e["objective"])
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, legendgroup=name, showlegend=False,
                                 line=dict(color=color)), 1, 2)
    fig.update_yaxes(type="log")
    fig.update_xaxes(title_text="epoch")
    return _style(fig, title)
