"""What every figure builder shares: the run as the charts see it, metric names, smoothing,
downsampling, layer pivots and binning, and the layout scaffolding.

Every refresh of the live page re-sends whole figures to each browser, so the builders work to
two budgets: build time (numpy only, no per-point Python loops, traces built as dicts with
plotly's validation switched off) and JSON size (min/max downsampling of long lines, step-binned
heatmaps, float32 values so plotly ships 4-byte base64 arrays instead of 8-byte ones).

Figures are built with `go.Figure(..., _validate=False)` (`_figure`): validation costs ~0.5 ms
per trace, which for 4 runs x 32 layers alone would eat the whole refresh budget. The tests
re-validate every builder's output through `go.Figure(fig.to_dict())`, so a typo in a property
name still fails loudly there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from agd_viz.charts.palette import drawn_last

__all__ = ["RunData", "metric_name", "ema", "downsample", "empty_figure", "WAITING", "LINE_HEIGHT"]

WAITING = "waiting for data…"

# Traces longer than this are drawn with WebGL. Below it SVG is as fast and does not use up one of
# the browser's ~16 WebGL contexts per page.
GL_THRESHOLD = 1000

LINE_HEIGHT = 340

_MARGIN = dict(l=60, r=16, t=32, b=44)
_X_TITLES = {"step": "step", "time": "wall time (s)"}

_METRIC_NAMES = {
    "loss": "loss",
    "acc": "accuracy",
    "eta": "η (AGD step size)",
    "G": "G (gradient summary)",
    "lr": "learning rate",
    "w_fro": "‖W‖<sub>F</sub>",
    "w_spec": "‖W‖<sub>*</sub> (spectral norm)",
    "w_srank": "weight stable rank",
    "w_spec_scaled": "‖W‖<sub>*</sub> / √(d<sub>out</sub>/d<sub>in</sub>)",
    "g_fro": "‖∇W‖<sub>F</sub>",
    "g_srank": "gradient stable rank",
    "rel_update": "‖ΔW‖<sub>F</sub> / ‖W‖<sub>F</sub>",
    "u_srank": "update stable rank",
    "final_train_acc": "final train accuracy",
    "final_test_acc": "final test accuracy",
    "final_train_loss": "final train loss",
    "final_test_loss": "final test loss",
}
_SPLIT_NAMES = {"batch": "minibatch", "train": "train", "test": "test"}
# How many examples an evaluation reads (agd_viz.train): the test split whole, the training split
# up to cost.EVAL_MAX examples (tests/test_charts.py holds the two numbers equal). Said on the axis.
EVAL_TRAIN_MAX = 8192
_SPLIT_NOTES = {"batch": "", "train": f" (≤ {EVAL_TRAIN_MAX:,} examples)", "test": " (whole test set)"}


def metric_name(metric: str) -> str:
    """Readable name of a metric column, used for axis and colour-bar titles."""
    if metric in _METRIC_NAMES:
        return _METRIC_NAMES[metric]
    for split in ("train", "test"):
        for m in ("loss", "acc"):
            if metric == f"{split}_{m}":
                return f"{split} {_METRIC_NAMES[m]}"
    return metric.replace("_", " ")


# --------------------------------------------------------------------------------------------------
# Runs


@dataclass(eq=False)
class RunData:
    """One run as the charts see it: the run store's frames plus what the legend and colours need.

    `optimizer` is the spec or label of the optimiser ("agd", "adam:lr=1e-3", "adam lr=0.001"); it
    picks the colour, `label` is the legend name. `layers` is the long per-layer frame or None.
    """

    run_id: int
    label: str
    optimizer: str
    scalars: pd.DataFrame
    layers: pd.DataFrame | None = None
    status: str = "running"
    diverged_step: int | None = None
    # The per-layer frame's pivot layout, keyed by the identity of the frame it came from.
    _cache: dict = field(default_factory=dict, init=False, repr=False)


def _has_rows(df: pd.DataFrame | None) -> bool:
    return df is not None and len(df) > 0


# --------------------------------------------------------------------------------------------------
# Numerics: EMA, downsampling, layer pivots, binning


def ema(values, alpha: float) -> np.ndarray:
    """Debiased exponential moving average, s_t = α·s_{t−1} + (1−α)·x_t (TensorBoard's smoothing).

    `alpha` in [0, 1) is the weight of the past (0 returns the input). Debiased means the weights
    are normalised, s_t = Σ_i α^i x_{t−i} / Σ_i α^i, so the curve starts at x_0 rather than near 0.
    NaN and ±inf are gaps: they stay NaN in the output and the average runs over the finite values
    only (an eval metric logged every k steps smooths as its own series).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or alpha <= 0:
        return x.copy()
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    finite = np.isfinite(x)
    x = np.where(finite, x, np.nan)
    out = pd.Series(x).ewm(alpha=1.0 - alpha, adjust=True, ignore_na=True).mean()
    # ewm carries the last mean through a gap; keep the gap visible instead.
    return np.where(finite, out.to_numpy(), np.nan)


def _extreme_indices(Y: np.ndarray, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Y is (n, k): k series of length n down axis 0 (the run store's (step, layer) layout, so no
    transpose is needed). Cuts the interior points 1..n−2 into ≤n_buckets consecutive buckets and
    returns the index of each bucket's min and of its max, both (buckets, k). NaN never wins
    unless its whole bucket is NaN."""
    n, k = Y.shape
    interior = n - 2
    size = -(-interior // n_buckets)
    full = interior // size
    starts = 1 + np.arange(full) * size
    parts_min, parts_max = [], []
    for lo, count, rows in ((1, full, full * size), (1 + full * size, 1, interior - full * size)):
        if rows <= 0:
            continue
        block = Y[lo:lo + rows]
        if np.isfinite(block.sum()):
            low = high = block
        else:  # rare (a NaN row at init, an overflow): pay for the copies only then
            nan = np.isnan(block)
            low, high = np.where(nan, np.inf, block), np.where(nan, -np.inf, block)
        width = rows // count
        parts_min.append(low.reshape(count, width, k).argmin(axis=1))
        parts_max.append(high.reshape(count, width, k).argmax(axis=1))
    offsets = np.append(starts, 1 + full * size)[:sum(len(p) for p in parts_min), None]
    return np.concatenate(parts_min) + offsets, np.concatenate(parts_max) + offsets


def downsample(x, y, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Min/max-per-bucket downsampling of one line to at most `max_points` points.

    The interior is cut into (max_points−2)/2 consecutive buckets; each keeps its smallest and its
    largest y, so spikes and the global extremes survive, and the first and last points are always
    kept. Points stay in their original order.
    """
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, got {max_points}")
    x = np.asarray(x)
    y = np.asarray(y)
    n = len(y)
    if n <= max_points:
        return x, y
    n_buckets = max(1, (max_points - 2) // 2)
    imin, imax = _extreme_indices(y[:, None], n_buckets)
    idx = np.unique(np.concatenate(([0], imin[:, 0], imax[:, 0], [n - 1])))
    return x[idx], y[idx]


def _downsample_columns(x: np.ndarray, M: np.ndarray, max_points: int):
    """`downsample` for the k columns of M (n, k) sharing one x; returns (X, Y), both (k, m)."""
    n, k = M.shape
    if n <= max_points:
        return np.broadcast_to(x, (k, n)), M.T
    n_buckets = max(1, (max_points - 2) // 2)
    imin, imax = _extreme_indices(M, n_buckets)
    ends = np.broadcast_to(np.array([[0], [n - 1]]), (2, k))
    # A bucket whose min and max coincide repeats a point; harmless for a line.
    idx = np.sort(np.concatenate([ends, imin, imax]), axis=0)
    return x[idx].T, M[idx, np.arange(k)].T


def _envelope(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_points: int):
    """Band polygon between lo and hi (same x), ≤ max_points vertices, keeping the lowest low and
    the highest high of every bucket: x then reversed x, for a `fill="toself"` trace."""
    n = len(x)
    half = max(4, max_points // 2)
    if n <= half:
        xl, yl, xh, yh = x, lo, x, hi
    else:
        n_buckets = max(1, half - 2)
        imin, _ = _extreme_indices(lo[:, None], n_buckets)
        _, imax = _extreme_indices(hi[:, None], n_buckets)
        il = np.concatenate(([0], imin[:, 0], [n - 1]))
        ih = np.concatenate(([0], imax[:, 0], [n - 1]))
        xl, yl, xh, yh = x[il], lo[il], x[ih], hi[ih]
    return np.concatenate([xl, xh[::-1]]), np.concatenate([yl, yh[::-1]])


def _compact(a: np.ndarray) -> np.ndarray:
    """Smallest exact dtype for JSON: integral x as int, values as float32 (4-byte base64)."""
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return a
    if a.dtype.kind == "f":
        if a.size and np.isfinite(a).all() and (a == np.round(a)).all() and np.abs(a).max() < 2**31:
            return a.astype(np.int32)
        return a.astype(np.float32)
    return a


class _LayerView:
    """A run's long layer frame pivoted to (T steps, L layers) matrices."""

    def __init__(self, df: pd.DataFrame):
        layer = df["layer"].to_numpy()
        if layer.dtype.kind == "f" and np.isfinite(layer).all() and (layer % 1 == 0).all():
            layer = layer.astype(np.int64)
        if layer.dtype.kind not in "iu":
            codes, uniques = pd.factorize(df["layer"])
            layer, self.layer_ids = codes, np.asarray(uniques)
        else:
            self.layer_ids = None
        step = df["step"].to_numpy()
        t = df["t"].to_numpy() if "t" in df else np.full(len(df), np.nan)
        n = len(df)
        L = int(layer.max()) + 1 if n else 0
        self.L = L
        self._df = df
        # The store returns rows ordered by (step, layer) with every layer present: then the pivot
        # is a free reshape. Anything else goes through the general scatter below.
        regular = False
        if L and n % L == 0:
            lay2 = layer.reshape(-1, L)
            st2 = step.reshape(-1, L)
            regular = bool((lay2 == np.arange(L)).all() and (st2 == st2[:, :1]).all())
        if regular:
            self.steps = step[::L]
            self.t = t[::L]
            self._rows = None
        else:
            self.steps, first, inverse = np.unique(step, return_index=True, return_inverse=True)
            self.t = t[first]
            self._rows = (inverse.ravel(), layer)
        if self.layer_ids is None:
            self.layer_ids = np.arange(L)
        if self.steps.dtype.kind == "f":
            self.steps = _compact(self.steps)

    def matrix(self, name: str) -> np.ndarray | None:
        """(T, L) values of a per-layer metric; NaN where a layer was not logged.

        Not cached: for the store's ordering this is a zero-copy reshape, and reading the column
        afresh means a frame edited in place never shows stale values."""
        if name not in self._df:
            return None
        v = self._df[name].to_numpy(dtype=np.float64, na_value=np.nan)
        if self._rows is None:
            return v.reshape(-1, self.L)
        M = np.full((len(self.steps), self.L), np.nan)
        M[self._rows[0], self._rows[1]] = v
        return M

    def x(self, x: str) -> np.ndarray:
        return self.steps if x == "step" else self.t


def _layer_view(run: RunData) -> _LayerView | None:
    """The run's pivot layout, computed once per frame object (the view keeps the frame alive, so
    its id cannot be reused by another frame while cached)."""
    df = run.layers
    if not _has_rows(df) or "layer" not in df or "step" not in df:
        return None
    key = (id(df), len(df))
    view = run._cache.get("layers")
    if view is None or view[0] != key:
        view = (key, _LayerView(df))
        run._cache["layers"] = view
    return view[1]


def _bin_steps(steps: np.ndarray, M: np.ndarray, max_cols: int):
    """Mean of (T, L) values over min(T, max_cols) groups of consecutive steps; returns (x, z (L, bins)).
    x is the mean step of each group, so the cells sit where their data came from. Groups hold
    floor or ceil of T / max_cols steps, so T > max_cols always gives max_cols columns (groups of one
    size would give only ~max_cols/2 for T a little above it: 121 records, 61 columns)."""
    T, L = M.shape
    if T <= max_cols:
        return steps, M.T.astype(np.float32)
    starts = np.linspace(0, T, max_cols + 1).round().astype(np.int64)[:-1]
    sizes = np.diff(np.append(starts, T))
    finite = np.isfinite(M)
    with np.errstate(invalid="ignore", divide="ignore"):
        if finite.all():
            z = np.add.reduceat(M, starts, axis=0) / sizes[:, None]
        else:
            count = np.add.reduceat(finite, starts, axis=0)
            total = np.add.reduceat(np.where(finite, M, 0.0), starts, axis=0)
            z = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    x = np.add.reduceat(steps.astype(np.float64), starts) / sizes
    return x.astype(np.float32), np.ascontiguousarray(z.T, dtype=np.float32)


def _finite_range(arrays) -> tuple[float, float]:
    """(min, max) over the finite values of all `arrays`: one colour scale for several panels."""
    lo, hi = math.inf, -math.inf
    for a in arrays:
        f = a[np.isfinite(a)]
        if f.size:
            lo, hi = min(lo, float(f.min())), max(hi, float(f.max()))
    if not math.isfinite(lo):
        return 0.0, 1.0
    if lo == hi:  # a constant grid: keep the scale at the value (an accuracy of 0.95 ± 1e-3)
        pad = max(abs(lo) * 1e-3, 1e-12)
        return lo - pad, hi + pad
    return lo, hi


SPIKE_FACTOR = 3.0  # a value this many spreads above the bulk of the data is a spike, not the scale


def _robust_y(arrays, log_y: bool = False) -> tuple[list[float], str] | None:
    """A y range that a lone spike does not squash (one loss of 60 beside losses of 0.1–2): the
    bulk of the values (1st to 99th percentile) with a margin, and a note naming the spike; None
    when the full range reads fine. Log axes already tame spikes: left alone."""
    if log_y:
        return None
    finite = [a[np.isfinite(a)] for a in arrays]
    values = np.concatenate(finite) if finite else np.empty(0)
    if values.size < 20:
        return None
    q_lo, q_hi = np.quantile(values, [0.01, 0.99])
    spread = max(float(q_hi - q_lo), 1e-12)
    top, bottom = float(values.max()), float(values.min())
    if top <= q_hi + SPIKE_FACTOR * spread:
        return None
    hi = float(q_hi + 0.15 * spread)
    lo = min(bottom, float(q_lo - 0.05 * spread))
    return [lo, hi], f"y axis cut at {hi:.3g}: a spike reaches {top:.3g}"


def _clip_note(text: str) -> dict:
    return dict(text=text, xref="paper", yref="paper", x=1.0, y=1.0, xanchor="right", yanchor="top",
                showarrow=False, font=dict(size=11, color="#888"))


# --------------------------------------------------------------------------------------------------
# Figure scaffolding


def _layout(height: int, uirevision: str, *, title: str | None = None, hovermode="x unified",
            xtitle: str | None = None, ytitle: str | None = None, log_y: bool = False,
            legend: bool = True, **extra) -> dict:
    layout = dict(
        height=height,
        uirevision=uirevision,
        margin=dict(_MARGIN, t=_MARGIN["t"] + (28 if title else 0)),
        hovermode=hovermode,
        xaxis=dict(title=dict(text=xtitle)),
        yaxis=dict(title=dict(text=ytitle), type="log" if log_y else "linear",
                   hoverformat=".4g", exponentformat="power" if log_y else "B",
                   # Within a decade plotly labels ticks with bare digits ("2, 1, 9, 8"): whole numbers.
                   **({"minorloglabels": "complete"} if log_y else {})),
        showlegend=legend,
        legend=dict(orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom"),
    )
    if title:
        layout["title"] = dict(text=title, x=0, xanchor="left", y=0.98, yanchor="top")
    layout.update(extra)
    return layout


def _figure(traces: list[dict], layout: dict) -> go.Figure:
    """The figure, AGD's traces drawn last (on top) while the legend keeps the builder's order."""
    if any(drawn_last(t) for t in traces):
        for rank, trace in enumerate(traces, start=1):
            trace.setdefault("legendrank", rank)
        traces = sorted(traces, key=drawn_last)  # stable: the order within each kind stays
    return go.Figure(data=traces, layout=layout, _validate=False)


def empty_figure(message: str = WAITING, *, height: int = LINE_HEIGHT, uirevision: str = "empty",
                 title: str | None = None) -> go.Figure:
    """A blank chart with `message` centred: what every builder returns when there is no data."""
    layout = _layout(height, uirevision, title=title, legend=False, hovermode=False)
    layout["xaxis"] = dict(visible=False)
    layout["yaxis"] = dict(visible=False)
    layout["plot_bgcolor"] = "rgba(0,0,0,0)"
    layout["annotations"] = [dict(text=message, xref="paper", yref="paper", x=0.5, y=0.5,
                                  showarrow=False, font=dict(size=15, color="#888"))]
    return _figure([], layout)


def _line(x, y, *, name: str, color: str, dash: str = "solid", width: float = 2.0,
          group: str | None = None, showlegend: bool = True, opacity: float | None = None,
          hover: bool = True, **extra) -> dict:
    n = len(x)
    trace = dict(
        type="scattergl" if n > GL_THRESHOLD else "scatter",
        x=_compact(x), y=_compact(y), mode="lines", name=name,
        line=dict(color=color, dash=dash, width=width),
        legendgroup=group, showlegend=showlegend,
    )
    if opacity is not None:
        trace["opacity"] = opacity
    if not hover:
        trace["hoverinfo"] = "skip"
    trace.update(extra)
    return trace


def _finite_xy(df: pd.DataFrame, col: str, x: str):
    xcol = "step" if x == "step" else "t"
    if col not in df or xcol not in df:
        return None, None
    xs = df[xcol].to_numpy()
    ys = df[col].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = np.isfinite(ys)
    if xs.dtype.kind == "f":
        keep &= np.isfinite(xs)
    if keep.all():
        return xs, ys
    return xs[keep], ys[keep]


def _check_x(x: str) -> None:
    if x not in _X_TITLES:
        raise ValueError(f"x must be 'step' or 'time', got {x!r}")


def _no_runs(runs: Sequence[RunData], frame: str = "scalars") -> bool:
    return not any(_has_rows(getattr(r, frame)) for r in runs)


# The charts' look (fonts, greys, grid), set on each figure by the app (app_widgets.chart) in
# place of Streamlit's chart theme, which the browser would otherwise apply chart by chart: about
# 30 ms a chart on a cold page and again on every live refresh (benchmarks/cold_draw.py). Close to
# that theme: Streamlit's font, faded axis text, a light grid on y only.
FONT_FAMILY = '"Source Sans", "Source Sans Pro", sans-serif'
FADED_TEXT = "#808495"
GRID_COLOR = "#e6eaf1"


def chart_style(text_color: str) -> dict:
    """Layout defaults for a figure template: `text_color` for titles and legends (the app's
    theme), faded greys for axes."""
    font = dict(family=FONT_FAMILY, size=12, color=FADED_TEXT)
    axis = dict(gridcolor=GRID_COLOR, zerolinecolor=GRID_COLOR, tickcolor=GRID_COLOR,
                tickfont=dict(size=12, color=FADED_TEXT), title=dict(font=dict(size=14, color=FADED_TEXT)),
                minor=dict(gridcolor=GRID_COLOR))
    return dict(
        font=font, paper_bgcolor="#ffffff", plot_bgcolor="#ffffff",
        title=dict(font=dict(family=FONT_FAMILY, size=16, color=text_color), x=0, xanchor="left", pad=dict(l=4)),
        legend=dict(font=dict(size=12, color=text_color), bordercolor="rgba(0,0,0,0)", borderwidth=0),
        xaxis=dict(axis, showgrid=False, zeroline=False, title=dict(axis["title"], standoff=20)),
        yaxis=dict(axis, title=dict(axis["title"], standoff=24)),
        hoverlabel=dict(bgcolor="#ffffff", bordercolor="rgba(31, 36, 48, 0.2)", font=dict(family=FONT_FAMILY, size=12)),
    )


PRESENTER_SCALE = 1.35
# A projector at 1280×720 seen from the back of a room: ticks and legends at 18 px or more.
PRESENTER_FONT = 20
PRESENTER_TICK_FONT = 18


def presenter_style(fig: go.Figure, scale: float = PRESENTER_SCALE, font: int = PRESENTER_FONT,
                    height: int | None = None) -> go.Figure:
    """The figure for a projector: taller (or exactly `height` px) and in larger type. Sizes go on
    every axis, the legend, colour bars and panel titles explicitly, because Streamlit's chart
    theme sets them there and would win over `font`."""
    tick = max(PRESENTER_TICK_FONT, font - 2)
    fig.update_layout(height=int(height or (fig.layout.height or LINE_HEIGHT) * scale), font=dict(size=font),
                      legend=dict(font=dict(size=font)), hoverlabel=dict(font=dict(size=tick)))
    fig.update_xaxes(tickfont=dict(size=tick), title_font=dict(size=font))
    fig.update_yaxes(tickfont=dict(size=tick), title_font=dict(size=font))
    fig.update_traces(colorbar=dict(tickfont=dict(size=tick)), selector=dict(type="heatmap"))
    fig.update_annotations(font=dict(size=tick))  # panel titles, spike notes, "waiting for data…"
    if fig.layout.title and fig.layout.title.text:
        fig.update_layout(title_font=dict(size=font))
    return fig
