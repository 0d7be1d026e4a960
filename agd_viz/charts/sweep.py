"""Depth × width grids of a sweep: one heatmap panel per optimiser, side by side on ONE colour
scale (the same zmin/zmax in every panel), so a cell's colour means the same value everywhere.

Made for a sweep in progress: the whole grid is drawn from the start; a cell without a value
says why (queued, running, diverged, ...; `STATUS_TEXT`); accuracies use a fixed 0–1 scale; and
every cell carries an invisible marker with its run id, because plotly heatmaps emit no
selection events: clicking the marker is how a page learns which cell was chosen.

What a sweep's results mean (which learning rate won a cell, who beat whom) is the caller's
business (views/sweep.py); these builders only draw a frame they are given.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from agd_viz.charts.common import _figure, _finite_range, _layout, empty_figure, metric_name
from agd_viz.charts.palette import color_for

__all__ = ["sweep_heatmaps", "best_rate_heatmaps", "STATUS_TEXT", "SWEEP_HEIGHT"]

SWEEP_HEIGHT = 380

# What an empty cell says, by its run's status ("pending": a cell of the grid with no run yet).
STATUS_TEXT = {"pending": "·", "queued": "queued", "running": "running", "failed": "failed",
               "cancelled": "cancelled", "interrupted": "stopped", "diverged": "diverged"}

# Room above the panel titles for plotly's modebar, which would otherwise cover the last one.
_MODEBAR_ROOM = 28
_CELL_MARKER = 28  # px: the click target of a cell
_OUTLINE = "#d62728"


def sweep_heatmaps(df: pd.DataFrame | None, value: str = "final_train_acc",
                   optimizers: Sequence[str] | None = None, *, fmt: str = ".3g",
                   title: str | None = None, selected: tuple[int, int] | None = None,
                   clickable: bool = True, height: int = SWEEP_HEIGHT) -> go.Figure:
    """One depth × width heatmap per optimiser (rows depth, columns width), one colour scale.

    df: a sweep's results, one row per (cell, optimiser) run, columns
        run_id     the run's id (None/NaN for a cell with no run yet),
        optimizer  the spec string ("adam:lr=1e-3"): the panel it belongs to, and its colour,
        label      the panel's title (optional; default the optimizer),
        depth, width  the cell,
        status     the run's status, or "pending" (optional),
        <value>    the number drawn (NaN where there is none yet).
      Several rows for one cell (seeds) are averaged.
    value: the column drawn; a loss is drawn with the colour scale reversed (dark is good) and
      an "..._acc" column on a fixed 0–1 scale.
    optimizers: the panels, in order (default: the frame's optimizers in order of appearance);
      every panel shows the full grid of all of them, so cells line up across panels.
    fmt: format of the value written in each cell.
    selected: (depth, width) of the cell to outline in every panel.
    clickable: clicks select a cell (`clickmode="event+select"`); else they only emit events.

    Each panel's cells carry a transparent marker (a scatter trace after the heatmaps, one per
    panel) whose customdata is [run_id, depth, width] (run_id -1 for no run) and whose text is
    the status of a cell without a value. Returns `empty_figure` when there is nothing to draw.
    """
    return _panels(df, value, optimizers, fmt=fmt, title=title, selected=selected,
                   clickable=clickable, height=height, rate=None)


def best_rate_heatmaps(df: pd.DataFrame | None, value: str = "final_train_loss",
                       optimizers: Sequence[str] | None = None, *, rate: str = "best_lr",
                       fmt: str = ".3g", title: str | None = None,
                       selected: tuple[int, int] | None = None, clickable: bool = True,
                       height: int = SWEEP_HEIGHT) -> go.Figure:
    """`sweep_heatmaps` for AGD beside a baseline's best learning rate per cell: a cell that has
    a `rate` writes "lr <rate>" under its value.

    df: as for `sweep_heatmaps`, already reduced by the caller to one row per cell and panel:
    e.g. optimizer "agd" (its runs), and optimizer "adam (best lr)" whose row per cell is the run
    with the best value over Adam's rates, with that rate in the column `rate` (NaN for AGD's
    rows and for cells no rate has won yet). The view chooses the winners; this only draws them.
    A view with nothing to compare shows its own `empty_figure(message)`.
    """
    return _panels(df, value, optimizers, fmt=fmt, title=title, selected=selected,
                   clickable=clickable, height=height, rate=rate)


# --------------------------------------------------------------------------------------------------
# The panels


def _numbers(col: pd.Series) -> np.ndarray:
    """Floats, NaN for anything missing, non-numeric or infinite."""
    v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(v), v, np.nan)


def _grid(part: pd.DataFrame, column: str, depths: list, widths: list) -> np.ndarray:
    """(depths, widths) mean of `column` per cell; NaN where a cell has no value."""
    if not len(part):
        return np.full((len(depths), len(widths)), np.nan)
    cells = part.assign(_v=_numbers(part[column]))
    grid = cells.pivot_table(index="depth", columns="width", values="_v", aggfunc="mean",
                             dropna=False)
    return grid.reindex(index=depths, columns=widths).to_numpy(dtype=np.float64)


def _cell_text(z: np.ndarray, fmt: str, rates: np.ndarray | None) -> list[list[str]]:
    """The value of each cell ("" where there is none: its marker says why), and "lr <rate>"
    under it where a rate won the cell."""
    text = np.full(z.shape, "", dtype=object)
    has = np.isfinite(z)
    text[has] = [format(v, fmt) for v in z[has]]
    if rates is not None:
        won = has & np.isfinite(rates)
        text[won] = [f"{t}<br>lr {r:g}" for t, r in zip(text[won], rates[won])]
    return text.tolist()


def _value(v: float) -> str:
    return format(v, ".4g") if math.isfinite(v) else "—"


def _markers(part: pd.DataFrame, values: np.ndarray, value: str, name: str, suffix: str) -> dict:
    """The panel's click targets: one transparent square per run (row), carrying
    [run_id, depth, width], the status text of a cell without a value, and the hover text."""
    ids = _numbers(part["run_id"]) if "run_id" in part else np.full(len(part), np.nan)
    ids = np.where(np.isnan(ids), -1, ids).astype(int).tolist()
    depths = part["depth"].astype(int).tolist()
    widths = part["width"].astype(int).tolist()
    statuses = (part["status"].fillna("").astype(str).tolist() if "status" in part
                else [""] * len(part))
    shown = metric_name(value)
    hover = [f"{name} · depth {d} × width {w}<br>{s}: {shown} {_value(v)}"
             + (f"<br>run {r}: click for its curves" if r >= 0 else "")
             for r, d, w, s, v in zip(ids, depths, widths, statuses, values)]
    return dict(
        type="scatter", mode="markers+text", x=[str(w) for w in widths],
        y=[str(d) for d in depths],
        text=["" if math.isfinite(v) else STATUS_TEXT.get(s, s) for s, v in zip(statuses, values)],
        textfont=dict(color="#666", size=11), textposition="middle center",
        customdata=[[r, d, w] for r, d, w in zip(ids, depths, widths)],
        hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
        marker=dict(symbol="square", size=_CELL_MARKER, color="rgba(0,0,0,0)"),
        # Selecting a point would dim the others; a grid of cells should not fade.
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
        showlegend=False, xaxis=f"x{suffix}", yaxis=f"y{suffix}", name=name,
    )


def _panels(df, value, optimizers, *, fmt, title, selected, clickable, height, rate):
    urev = f"sweeps:{value}"
    if df is None or len(df) == 0 or "optimizer" not in df:
        return empty_figure(height=height, uirevision=urev, title=title)
    optimizers = list(pd.unique(df["optimizer"]) if optimizers is None else optimizers)
    if value not in df or "depth" not in df or "width" not in df or not optimizers:
        return empty_figure(f"no {metric_name(value)} in this sweep yet", height=height,
                            uirevision=urev, title=title)
    sub = df[df["optimizer"].isin(optimizers)]
    depths = sorted(int(d) for d in pd.unique(sub["depth"]))
    widths = sorted(int(w) for w in pd.unique(sub["width"]))
    if value.endswith("_acc"):
        zmin, zmax = 0.0, 1.0
    else:
        zmin, zmax = _finite_range([_numbers(sub[value])])
    xs, ys = [str(w) for w in widths], [str(d) for d in depths]
    n = len(optimizers)
    gap = 0.06 if n > 1 else 0.0
    w = (1.0 - gap * (n - 1)) / n
    layout = _layout(height, urev, title=title, hovermode="closest", legend=False,
                     clickmode="event+select" if clickable else "event", dragmode=False)
    layout["margin"]["t"] += _MODEBAR_ROOM
    maps, markers, annotations, shapes = [], [], [], []
    for i, opt in enumerate(optimizers):
        suffix = "" if i == 0 else str(i + 1)
        part = sub[sub["optimizer"] == opt]
        name = str(part["label"].iloc[0]) if "label" in part and len(part) else str(opt)
        z = _grid(part, value, depths, widths)
        rates = _grid(part, rate, depths, widths) if rate is not None and rate in part else None
        maps.append(dict(
            type="heatmap", x=xs, y=ys, z=z.astype(np.float32), zmin=zmin, zmax=zmax,
            zauto=False, text=_cell_text(z, fmt, rates), texttemplate="%{text}",
            colorscale="Viridis", reversescale="loss" in value, showscale=i == n - 1,
            xaxis=f"x{suffix}", yaxis=f"y{suffix}", xgap=1, ygap=1, hoverinfo="skip",
            colorbar=dict(title=dict(text=metric_name(value), side="right"), thickness=14),
        ))
        if len(part):
            markers.append(_markers(part, _numbers(part[value]), value, name, suffix))
        left = i * (w + gap)
        # An all-empty heatmap registers no categories: the grid is fixed on the axes themselves.
        layout[f"xaxis{suffix}"] = dict(
            domain=[left, min(left + w, 1.0)], anchor=f"y{suffix}", type="category",
            title=dict(text="width"), categoryorder="array", categoryarray=xs,
            range=[-0.5, len(xs) - 0.5])
        layout[f"yaxis{suffix}"] = dict(
            anchor=f"x{suffix}", type="category", title=dict(text="depth" if i == 0 else None),
            showticklabels=i == 0, categoryorder="array", categoryarray=ys,
            range=[-0.5, len(ys) - 0.5])
        if i:
            layout[f"yaxis{suffix}"]["matches"] = "y"
        annotations.append(dict(text=name, xref="paper", yref="paper", x=left + w / 2, y=1.0,
                                xanchor="center", yanchor="bottom", showarrow=False,
                                font=dict(size=13, color=color_for(str(opt)))))
        if selected is not None and selected[0] in depths and selected[1] in widths:
            xi, yi = widths.index(selected[1]), depths.index(selected[0])
            shapes.append(dict(type="rect", xref=f"x{suffix}", yref=f"y{suffix}",
                               x0=xi - 0.5, x1=xi + 0.5, y0=yi - 0.5, y1=yi + 0.5,
                               line=dict(color=_OUTLINE, width=3)))
    layout["annotations"] = annotations
    if selected is not None:
        layout["shapes"] = shapes
    return _figure(maps + markers, layout)
