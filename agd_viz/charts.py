"""Plotly figure builders for AGD Explorer: run-store frames in, `go.Figure` out.

Pure numpy/pandas/plotly (no streamlit, no torch) so that a page importing this stays light.

Every refresh of the live page re-sends whole figures to each browser, so this module is built
around two budgets: build time (numpy only, no per-point Python loops, traces built as dicts with
plotly's validation switched off) and JSON size (min/max downsampling of long lines, step-binned
heatmaps, float32 values so plotly ships 4-byte base64 arrays instead of 8-byte ones).

Figures are built with `go.Figure(..., _validate=False)`: validation costs ~0.5 ms per trace, which
for 4 runs x 32 layers alone would eat the whole refresh budget. The tests re-validate every builder's
output through `go.Figure(fig.to_dict())`, so a typo in a property name still fails loudly there.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "RunData",
    "color_for",
    "ema",
    "downsample",
    "eta_of_G",
    "metric_name",
    "empty_figure",
    "loss_figure",
    "step_size_figure",
    "rel_update_figure",
    "layer_lines_figure",
    "layer_heatmap",
    "layer_heatmaps",
    "decision_boundary_figure",
    "sweep_heatmap",
    "sweep_heatmaps",
    "eta_curve_figure",
    "all_live_figures",
    "scalar_figure",
    "WAITING",
]

WAITING = "waiting for data…"

# Traces longer than this are drawn with WebGL. Below it SVG is as fast and does not use up one of
# the browser's ~16 WebGL contexts per page.
GL_THRESHOLD = 1000
MAX_HEATMAP_COLS = 500

LINE_HEIGHT = 340
STEP_SIZE_HEIGHT = 420
HEATMAP_ROW_HEIGHT = 170
SWEEP_HEIGHT = 380
BOUNDARY_HEIGHT = 460
ETA_HEIGHT = 340

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
    "final_train_acc": "final train accuracy",
    "final_test_acc": "final test accuracy",
    "final_train_loss": "final train loss",
    "final_test_loss": "final test loss",
}
_SPLIT_NAMES = {"batch": "minibatch", "train": "train", "test": "test"}


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


def _diverged_at(run: RunData) -> int | None:
    if run.diverged_step is not None:
        return int(run.diverged_step)
    if run.status == "diverged" and _has_rows(run.scalars) and "step" in run.scalars:
        return int(run.scalars["step"].iloc[-1])
    return None


# --------------------------------------------------------------------------------------------------
# Colours

# Index 0 is the family's base colour; then darker/lighter shades alternate so that neighbouring
# learning rates (half a decade apart) land on clearly different shades.
_FAMILY_SHADES = {
    "agd": ["#1565c0", "#0b3d91", "#42a5f5", "#002171", "#90caf9"],
    "adam": ["#f57c00", "#bf4800", "#ffa726", "#8a3000", "#ffcc80"],
    "sgd": ["#2e7d32", "#1b5e20", "#66bb6a", "#003300", "#a5d6a7"],
    "adamw": ["#7b1fa2", "#4a0072", "#ba68c8", "#2a0045", "#e1bee7"],
    # The learning-rate-free baselines (and schedule-free AdamW): red, teal, brown.
    "prodigy": ["#c62828", "#8e0000", "#ef5350", "#5f0000", "#ef9a9a"],
    "dadapt-adam": ["#00838f", "#005662", "#26c6da", "#003038", "#80deea"],
    "schedulefree-adamw": ["#6d4c41", "#40241a", "#a1887f", "#260e04", "#d7ccc8"],
}
# Scale-like hyperparameter per family, whose default gives the base shade; defaults of the others
# are ignored so that "sgd:lr=0.1,momentum=0" and "sgd" get the same colour.
_FAMILY_DEFAULTS = {
    "agd": ("gain", {"gain": 1.0}),
    "adam": ("lr", {"lr": 1e-3}),
    "adamw": ("lr", {"lr": 1e-3, "weight_decay": 0.01}),
    "sgd": ("lr", {"lr": 0.1, "momentum": 0.0}),
    "prodigy": ("d_coef", {"d_coef": 1.0, "lr": 1.0}),
    "dadapt-adam": ("lr", {"lr": 1.0}),
    "schedulefree-adamw": ("lr", {"lr": 0.0025}),
}
# For optimisers without a family: none of these is blue, orange, green or purple.
_HASH_PALETTE = ["#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#c2185b",
                 "#00897b"]
_FAMILY_RE = re.compile(r"^\s*([A-Za-z][\w\-]*)")
_KWARG_RE = re.compile(r"(\w+)\s*=\s*([^\s,;:()]+)")


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; colours must agree between app, worker and tests.
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:4], "little")


def _parse_optimizer(text: str) -> tuple[str, dict[str, str]]:
    m = _FAMILY_RE.match(text or "")
    family = m.group(1).lower() if m else ""
    kwargs = {k.lower(): v for k, v in _KWARG_RE.findall(text or "")}
    return family, kwargs


def _as_float(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def color_for(label_or_optimizer: str) -> str:
    """Colour of an optimiser, the same on every chart.

    AGD is always the same blue, Adam orange, SGD green, AdamW purple; Prodigy red, D-Adapt
    Adam teal, schedule-free AdamW brown. Within a family the
    learning rate (AGD: gain) picks a shade: round(2·log10(lr/lr_default)) half-decades from the
    default, larger rates darker. Other non-default settings shift the shade by a stable hash.
    Unknown optimisers get a colour from a fixed palette chosen by a stable hash of their name.
    """
    family, kwargs = _parse_optimizer(label_or_optimizer)
    if family not in _FAMILY_SHADES:
        return _HASH_PALETTE[_stable_hash(family or str(label_or_optimizer)) % len(_HASH_PALETTE)]
    shades = _FAMILY_SHADES[family]
    scale_key, defaults = _FAMILY_DEFAULTS[family]
    index = 0
    value = _as_float(kwargs.get(scale_key, ""))
    if value is not None and value > 0:
        k = round(2 * math.log10(value / defaults[scale_key]))
        index = 2 * k - 1 if k > 0 else -2 * k
    extra = sorted(
        (key, val) for key, val in kwargs.items()
        if key != scale_key and not (key in defaults and _as_float(val) == defaults[key])
    )
    if extra:
        index += 1 + _stable_hash(repr(extra)) % (len(shades) - 1)
    return shades[index % len(shades)]


def _rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _mix_white(color: str, amount: float) -> str:
    c = color.lstrip("#")
    rgb = [int(c[i:i + 2], 16) for i in (0, 2, 4)]
    r, g, b = (round(v + (255 - v) * amount) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


_DASHES = ["solid", "dot", "dash", "longdash", "dashdot"]


def _styles(runs: Sequence[RunData]) -> dict[int, tuple[str, str]]:
    """(colour, dash) per run: the optimiser's colour; runs sharing a colour differ by dash."""
    seen: dict[str, int] = {}
    out = {}
    for run in runs:
        color = color_for(run.optimizer or run.label)
        n = seen.get(color, 0)
        seen[color] = n + 1
        out[id(run)] = (color, _DASHES[n % len(_DASHES)])
    return out


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
    """Mean of (T, L) values over ≤max_cols groups of consecutive steps; returns (x, z (L, bins)).
    x is the mean step of each group, so the cells sit where their data came from."""
    T, L = M.shape
    if T <= max_cols:
        return steps, M.T.astype(np.float32)
    size = -(-T // max_cols)
    full = T // size
    blocks = [(M[:full * size].reshape(full, size, L), steps[:full * size].reshape(full, size))]
    if T > full * size:
        blocks.append((M[full * size:][None], steps[full * size:][None]))
    zs, xs = [], []
    for block, st in blocks:
        total = block.sum(axis=1)
        if np.isfinite(total).all():
            zs.append(total / block.shape[1])
        else:
            finite = np.isfinite(block)
            count = finite.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                zs.append(np.where(count > 0, np.where(finite, block, 0.0).sum(axis=1) / count,
                                   np.nan))
        xs.append(st.mean(axis=1))
    z = np.ascontiguousarray(np.concatenate(zs).T, dtype=np.float32)
    return np.concatenate(xs).astype(np.float32), z


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
                   hoverformat=".4g", exponentformat="power" if log_y else "B"),
        showlegend=legend,
        legend=dict(orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom"),
    )
    if title:
        layout["title"] = dict(text=title, x=0, xanchor="left", y=0.98, yanchor="top")
    layout.update(extra)
    return layout


def _figure(traces: list[dict], layout: dict) -> go.Figure:
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


# --------------------------------------------------------------------------------------------------
# Line charts


def loss_figure(runs: Sequence[RunData], metric: str = "loss", split: str = "batch",
                smoothing: float = 0.0, log_y: bool = False, x: str = "step", *,
                max_points: int = 2000, title: str | None = None,
                height: int = LINE_HEIGHT) -> go.Figure:
    """Loss or accuracy per run: one line per run, EMA-smoothed over the raw line drawn faint.

    split "batch" is the minibatch metric logged every step (`loss`, `acc`); "train"/"test" are the
    full-set evaluations logged every k steps (`train_loss`, ...). A diverged run gets an "x"
    marker and a "diverged" note at its divergence step.
    """
    if metric not in ("loss", "acc"):
        raise ValueError(f"metric must be 'loss' or 'acc', got {metric!r}")
    if split not in _SPLIT_NAMES:
        raise ValueError(f"split must be one of {list(_SPLIT_NAMES)}, got {split!r}")
    _check_x(x)
    col = metric if split == "batch" else f"{split}_{metric}"
    ytitle = f"{_SPLIT_NAMES[split]} {metric_name(metric)}"
    if smoothing > 0:
        ytitle += f" (EMA {smoothing:g})"
    urev = f"loss:{col}:{x}:{log_y}"
    if _no_runs(runs):
        return empty_figure(height=height, uirevision=urev, title=title)
    styles = _styles(runs)
    traces, annotations = [], []
    for run in runs:
        if not _has_rows(run.scalars):
            continue
        xs, ys = _finite_xy(run.scalars, col, x)
        if xs is None or len(xs) == 0:
            continue
        color, dash = styles[id(run)]
        group = str(run.run_id)
        if smoothing > 0:
            rx, ry = downsample(xs, ys, max_points)
            traces.append(_line(rx, ry, name=run.label, color=color, dash=dash, width=1.0,
                                group=group, showlegend=False, opacity=0.25, hover=False))
            sx, sy = downsample(xs, ema(ys, smoothing), max_points)
        else:
            sx, sy = downsample(xs, ys, max_points)
        traces.append(_line(sx, sy, name=run.label, color=color, dash=dash, group=group))

        d = _diverged_at(run)
        if d is None:
            continue
        if x == "step":
            xd = d
        else:
            steps = run.scalars["step"].to_numpy()
            at = max(int(np.searchsorted(steps, d, side="right")) - 1, 0)
            xd = float(run.scalars["t"].iloc[at])
        before = xs <= xd
        yd = float(ys[before][-1]) if before.any() else None
        ann = dict(x=xd, text="diverged", showarrow=True, arrowhead=2, ax=0, ay=-28,
                   font=dict(color=color, size=12), arrowcolor=color)
        if yd is not None and (not log_y or yd > 0):
            traces.append(dict(
                type="scatter", x=[xd], y=[yd], mode="markers", name=f"{run.label} diverged",
                marker=dict(symbol="x", size=13, color=color, line=dict(width=1, color="white")),
                legendgroup=group, showlegend=False,
                hovertemplate=f"{run.label}: diverged at step {d}<extra></extra>",
            ))
            ann.update(y=math.log10(yd) if log_y else yd)
        else:
            ann.update(yref="paper", y=0.9)
        annotations.append(ann)
    if not traces:
        return empty_figure(f"no {ytitle} recorded yet", height=height, uirevision=urev,
                            title=title)
    layout = _layout(height, urev, title=title, xtitle=_X_TITLES[x], ytitle=ytitle, log_y=log_y,
                     annotations=annotations)
    return _figure(traces, layout)


# What the "lr" a run logs is, where it is not a fixed learning rate: the D-adaptation family logs
# the step it applies, its estimate d times the lr multiplier.
_STEP_NAMES = {"prodigy": "d·lr", "dadapt-adam": "d·lr"}


def step_size_figure(runs: Sequence[RunData], x: str = "step", log_y: bool = True, *,
                     max_points: int = 2000, title: str | None = None,
                     height: int = STEP_SIZE_HEIGHT) -> go.Figure:
    """AGD's automatic step size η and gradient summary G per step; baselines' lr dashed (for
    Prodigy and D-Adapt Adam the adapted step d·lr they apply).

    AGD (Algorithm 1): G = (1/L) Σ_k √(d_k/d_{k−1}) ‖∇W_k‖_F and η = log((1 + √(1+4G))/2).
    Top panel: η for AGD runs, lr for the others. Bottom panel (AGD runs only): G.
    """
    _check_x(x)
    urev = f"step_size:{x}:{log_y}"
    if _no_runs(runs):
        return empty_figure(height=height, uirevision=urev, title=title)
    styles = _styles(runs)
    top, bottom = [], []
    for run in runs:
        if not _has_rows(run.scalars):
            continue
        color, dash = styles[id(run)]
        group = str(run.run_id)
        xs, eta = _finite_xy(run.scalars, "eta", x)
        if xs is not None and len(xs):
            ex, ey = downsample(xs, eta, max_points)
            top.append(_line(ex, ey, name=f"{run.label} η", color=color, dash=dash, group=group))
            gx, gy = _finite_xy(run.scalars, "G", x)
            if gx is not None and len(gx):
                gx, gy = downsample(gx, gy, max_points)
                bottom.append(_line(gx, gy, name=f"{run.label} G", color=color, dash=dash,
                                    group=group, showlegend=False, xaxis="x2", yaxis="y2"))
            continue
        xs, lr = _finite_xy(run.scalars, "lr", x)
        if xs is not None and len(xs):
            lx, ly = downsample(xs, lr, max_points)
            what = _STEP_NAMES.get(_parse_optimizer(run.optimizer)[0], "lr")
            top.append(_line(lx, ly, name=f"{run.label} {what}", color=color, dash="dash",
                             group=group))
    if not top and not bottom:
        return empty_figure("no step sizes recorded yet", height=height, uirevision=urev,
                            title=title)
    ytitle = "η (AGD) · lr (others)"
    layout = _layout(height, urev, title=title, ytitle=ytitle, log_y=log_y,
                     xtitle=None if bottom else _X_TITLES[x])
    if bottom:
        layout["yaxis"]["domain"] = [0.42, 1.0]
        layout["xaxis"].update(anchor="y", showticklabels=False)
        layout["xaxis2"] = dict(anchor="y2", matches="x", title=dict(text=_X_TITLES[x]))
        layout["yaxis2"] = dict(domain=[0.0, 0.32], anchor="x2", title=dict(text="G"),
                                type="log" if log_y else "linear", hoverformat=".4g",
                                exponentformat="power" if log_y else "B")
    return _figure(top + bottom, layout)


def _layer_selection(layers, L: int) -> list[int]:
    if layers is None:
        return list(range(L))
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    return [int(k) for k in layers if 0 <= int(k) < L]


def _layer_summary(M: np.ndarray):
    """Mean, min and max over layers per step of a (T, L) matrix, skipping NaN layers."""
    total = M.sum(axis=1)
    mean = total / M.shape[1]
    bad = ~np.isfinite(total)
    if bad.any():  # only the few rows with gaps pay for the NaN-aware path
        sub = M[bad]
        count = np.isfinite(sub).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[bad] = np.where(count > 0, np.where(np.isfinite(sub), sub, 0).sum(axis=1) / count,
                                 np.nan)
    return mean, np.fmin.reduce(M, axis=1), np.fmax.reduce(M, axis=1)


def rel_update_figure(runs: Sequence[RunData], layer: int | Iterable[int] | None = None,
                      x: str = "step", log_y: bool = True, *, max_points: int = 2000,
                      title: str | None = None, height: int = LINE_HEIGHT) -> go.Figure:
    """Relative update ‖ΔW_l‖_F / ‖W_l‖_F per step: the step size comparable across optimisers.

    layer=None: per run, the mean over layers as a line inside a band spanning min..max over
    layers. layer=k (or a list): one line per run and chosen layer.
    """
    _check_x(x)
    urev = f"rel_update:{layer}:{x}:{log_y}"
    if _no_runs(runs, "layers"):
        return empty_figure(height=height, uirevision=urev, title=title)
    styles = _styles(runs)
    traces = []
    for run in runs:
        view = _layer_view(run)
        M = view.matrix("rel_update") if view else None
        if M is None:
            continue
        color, dash = styles[id(run)]
        group = str(run.run_id)
        xs = view.x(x)
        if layer is None:
            mean, lo, hi = _layer_summary(M)
            keep = np.isfinite(mean)
            if not keep.any():
                continue
            if not keep.all():
                xk, mean, lo, hi = xs[keep], mean[keep], lo[keep], hi[keep]
            else:
                xk = xs
            bx, by = _envelope(xk, lo, hi, max_points)
            band = _line(bx, by, name=f"{run.label} min–max over layers", color=color,
                         width=0, group=group, showlegend=False, hover=False,
                         fill="toself", fillcolor=_rgba(color, 0.15))
            band["line"]["color"] = _rgba(color, 0.0)
            traces.append(band)
            mx, my = downsample(xk, mean, max_points)
            traces.append(_line(mx, my, name=run.label, color=color, dash=dash, group=group))
        else:
            chosen = _layer_selection(layer, view.L)
            for i, k in enumerate(chosen):
                ok = np.isfinite(M[:, k])
                lx, ly = downsample(xs[ok], M[ok, k], max_points)
                name = f"{run.label} · layer {k}" if len(chosen) > 1 else run.label
                traces.append(_line(lx, ly, name=name, color=color, dash=dash, group=group,
                                    showlegend=len(chosen) > 1 or i == 0))
    if not traces:
        return empty_figure("no relative updates recorded yet", height=height, uirevision=urev,
                            title=title)
    # Kept short: the page shows this chart half-width, where a longer note would hit the legend.
    what = "layer mean" if layer is None else (
        f"layer {layer}" if isinstance(layer, (int, np.integer)) else "per layer")
    layout = _layout(height, urev, title=title, xtitle=_X_TITLES[x],
                     ytitle=f"{metric_name('rel_update')} ({what})", log_y=log_y)
    return _figure(traces, layout)


def layer_lines_figure(runs: Sequence[RunData], metric: str = "w_spec_scaled",
                       layers: int | Iterable[int] | None = None, x: str = "step",
                       log_y: bool = False, *, max_points: int = 400, title: str | None = None,
                       height: int = LINE_HEIGHT) -> go.Figure:
    """One line per layer and run of a per-layer metric; layer 0 lightest, last layer full colour.

    Made for ‖W_l‖_* / √(d_l/d_{l−1}), which AGD's update keeps near 1 (a dotted reference line
    marks 1 for that metric). Hover is per point: 32 layers × runs would swamp a unified tooltip.
    """
    _check_x(x)
    urev = f"layers:{metric}:{x}:{log_y}"
    if _no_runs(runs, "layers"):
        return empty_figure(height=height, uirevision=urev, title=title)
    styles = _styles(runs)
    traces = []
    for run in runs:
        view = _layer_view(run)
        M = view.matrix(metric) if view else None
        if M is None:
            continue
        chosen = _layer_selection(layers, view.L)
        if not chosen:
            continue
        color, dash = styles[id(run)]
        group = str(run.run_id)
        xs = view.x(x)
        sub = M if len(chosen) == view.L else M[:, chosen]
        X, Y = _downsample_columns(xs, sub, max_points)
        X, Y = _compact(X), Y.astype(np.float32)
        last = max(len(chosen) - 1, 1)
        for i, k in enumerate(chosen):
            shade = _mix_white(color, 0.6 * (1 - i / last)) if len(chosen) > 1 else color
            traces.append(dict(
                type="scattergl" if X.shape[1] > GL_THRESHOLD else "scatter",
                x=X[i], y=Y[i], mode="lines", name=run.label,
                line=dict(color=shade, dash=dash, width=1.2),
                legendgroup=group, showlegend=i == len(chosen) - 1,
                hovertemplate=f"{run.label} · layer {view.layer_ids[k]}: %{{y:.4g}}"
                              "<extra></extra>",
            ))
    if not traces:
        return empty_figure(f"no {metric_name(metric)} recorded yet", height=height,
                            uirevision=urev, title=title)
    shapes = []
    if metric == "w_spec_scaled":
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=0 if log_y else 1,
                           y1=0 if log_y else 1, line=dict(color="#888", width=1, dash="dot")))
    layout = _layout(height, urev, title=title, xtitle=_X_TITLES[x], ytitle=metric_name(metric),
                     log_y=log_y, hovermode="closest", shapes=shapes)
    return _figure(traces, layout)


# --------------------------------------------------------------------------------------------------
# Heatmaps


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


def _finite_range(arrays) -> tuple[float, float]:
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


# --------------------------------------------------------------------------------------------------
# Toy data, sweeps, explainer


_CLASS_COLORS = ["#e15759", "#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948",
                 "#ff9da7", "#9c755f", "#bab0ac"]


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


def _sweep_grid(df: pd.DataFrame, value: str, depth: str, width: str):
    grid = df.pivot_table(index=depth, columns=width, values=value, aggfunc="mean",
                          dropna=False).sort_index().sort_index(axis=1)
    return grid


def _sweep_trace(grid: pd.DataFrame, value: str, zmin: float, zmax: float, fmt: str,
                 showscale: bool, xaxis="x", yaxis="y") -> dict:
    z = grid.to_numpy(dtype=np.float64)
    text = np.where(np.isfinite(z), np.vectorize(lambda v: format(v, fmt), otypes=[str])(
        np.nan_to_num(z)), "—")
    lower_is_better = "loss" in value
    return dict(
        type="heatmap", x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
        z=z.astype(np.float32), zmin=zmin, zmax=zmax, zauto=False, text=text,
        texttemplate="%{text}", colorscale="Viridis", reversescale=lower_is_better,
        showscale=showscale, xaxis=xaxis, yaxis=yaxis, xgap=1, ygap=1,
        colorbar=dict(title=dict(text=metric_name(value), side="right"), thickness=14),
        hovertemplate=f"depth %{{y}}, width %{{x}}<br>{metric_name(value)}: %{{z:.4g}}"
                      "<extra></extra>",
    )


def sweep_heatmap(df: pd.DataFrame, value: str = "final_train_acc", *, optimizer: str | None = None,
                  depth: str = "depth", width: str = "width", zmin: float | None = None,
                  zmax: float | None = None, fmt: str = ".3g", title: str | None = None,
                  height: int = SWEEP_HEIGHT) -> go.Figure:
    """Depth × width heatmap of a sweep result (rows depth, columns width), the value in each cell.

    Several rows for one cell (seeds) are averaged. `optimizer` filters the `optimizer` column.
    """
    urev = f"sweep:{value}:{optimizer}"
    if df is None or len(df) == 0:
        return empty_figure(height=height, uirevision=urev, title=title)
    if optimizer is not None:
        df = df[df["optimizer"] == optimizer]
    if value not in df or depth not in df or width not in df or len(df) == 0:
        return empty_figure(f"no {metric_name(value)} in this sweep yet", height=height,
                            uirevision=urev, title=title)
    grid = _sweep_grid(df, value, depth, width)
    lo, hi = _finite_range([grid.to_numpy(dtype=np.float64)])
    trace = _sweep_trace(grid, value, lo if zmin is None else zmin, hi if zmax is None else zmax,
                         fmt, True)
    layout = _layout(height, urev, title=title, hovermode="closest", legend=False,
                     xtitle="width", ytitle="depth")
    layout["xaxis"]["type"] = "category"
    layout["yaxis"]["type"] = "category"
    return _figure([trace], layout)


def sweep_heatmaps(df: pd.DataFrame, value: str = "final_train_acc",
                   optimizers: Sequence[str] | None = None, *, depth: str = "depth",
                   width: str = "width", fmt: str = ".3g", title: str | None = None,
                   height: int = SWEEP_HEIGHT) -> go.Figure:
    """One depth × width heatmap per optimiser side by side with ONE colour scale (the same
    zmin/zmax everywhere), so a cell's colour means the same value in every panel."""
    urev = f"sweeps:{value}"
    if df is None or len(df) == 0 or "optimizer" not in df:
        return empty_figure(height=height, uirevision=urev, title=title)
    if optimizers is None:
        optimizers = list(pd.unique(df["optimizer"]))
    optimizers = list(optimizers)
    if value not in df or depth not in df or width not in df or not optimizers:
        return empty_figure(f"no {metric_name(value)} in this sweep yet", height=height,
                            uirevision=urev, title=title)
    sub = df[df["optimizer"].isin(optimizers)]
    zmin, zmax = _finite_range([sub[value].to_numpy(dtype=np.float64)])
    # Every panel shows the full grid of the sweep so cells line up across panels.
    depths = sorted(pd.unique(sub[depth]))
    widths = sorted(pd.unique(sub[width]))
    n = len(optimizers)
    gap = 0.06 if n > 1 else 0.0
    w = (1.0 - gap * (n - 1)) / n
    traces, annotations = [], []
    layout = _layout(height, urev, title=title, hovermode="closest", legend=False)
    for i, opt in enumerate(optimizers):
        suffix = "" if i == 0 else str(i + 1)
        part = sub[sub["optimizer"] == opt]
        grid = (_sweep_grid(part, value, depth, width) if len(part) else pd.DataFrame())
        grid = grid.reindex(index=depths, columns=widths)
        traces.append(_sweep_trace(grid, value, zmin, zmax, fmt, i == n - 1,
                                   xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
        left = i * (w + gap)
        layout[f"xaxis{suffix}"] = dict(domain=[left, min(left + w, 1.0)], anchor=f"y{suffix}",
                                        type="category", title=dict(text="width"))
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", type="category",
                                        title=dict(text="depth" if i == 0 else None),
                                        showticklabels=i == 0)
        if i:
            layout[f"yaxis{suffix}"]["matches"] = "y"
        annotations.append(dict(text=str(opt), xref="paper", yref="paper", x=left + w / 2,
                                y=1.0, xanchor="center", yanchor="bottom", showarrow=False,
                                font=dict(size=13, color=color_for(str(opt)))))
    layout["annotations"] = annotations
    return _figure(traces, layout)


def eta_of_G(G):
    """AGD's step size as a function of the gradient summary: η = log((1 + √(1+4G)) / 2).

    Small G: η ≈ G. Large G: η ≈ ½·log G, so the step grows only logarithmically.
    """
    G = np.asarray(G, dtype=np.float64)
    return np.log((1.0 + np.sqrt(1.0 + 4.0 * G)) / 2.0)


def eta_curve_figure(G_max: float = 10.0, marks: Mapping[str, float] | None = None, *,
                     n: int = 400, title: str | None = None,
                     height: int = ETA_HEIGHT) -> go.Figure:
    """The curve η(G) = log((1 + √(1+4G))/2) for 0 ≤ G ≤ G_max, with labelled marks at given G
    and the small-G approximation η ≈ G dotted for comparison."""
    marks = dict(marks or {})
    top = max([float(G_max)] + [float(g) * 1.05 for g in marks.values() if np.isfinite(g)])
    G = np.linspace(0.0, top, n)
    eta = eta_of_G(G)
    traces = [
        dict(type="scatter", x=G.astype(np.float32), y=eta.astype(np.float32), mode="lines",
             name="η(G)", line=dict(color=color_for("agd"), width=3),
             hovertemplate="G = %{x:.3g}<br>η = %{y:.3g}<extra></extra>"),
    ]
    small = G <= eta.max()
    traces.append(dict(type="scatter", x=G[small].astype(np.float32),
                       y=G[small].astype(np.float32), mode="lines", name="η ≈ G (small G)",
                       line=dict(color="#999", width=1, dash="dot"), hoverinfo="skip"))
    if marks:
        mg = np.array([float(g) for g in marks.values()])
        traces.append(dict(type="scatter", x=mg, y=eta_of_G(mg), mode="markers+text",
                           name="marks", text=list(marks), textposition="top left",
                           marker=dict(size=10, color="#d62728"), showlegend=False,
                           hovertemplate="%{text}: G = %{x:.3g}, η = %{y:.3g}<extra></extra>"))
    layout = _layout(height, f"eta:{top}", title=title, hovermode="closest",
                     xtitle="G = (1/L) Σ<sub>k</sub> √(d<sub>k</sub>/d<sub>k−1</sub>) "
                            "‖∇W<sub>k</sub>‖<sub>F</sub>", ytitle="η")
    return _figure(traces, layout)


# --------------------------------------------------------------------------------------------------
# The live page's set


LIVE_FIGURES = ("loss", "acc", "step_size", "rel_update", "w_spec_scaled", "w_srank", "g_srank")


def all_live_figures(runs: Sequence[RunData], *, smoothing: float = 0.6, x: str = "step",
                     split: str = "batch", log_loss: bool = False, max_points: int = 800,
                     layer_points: int = 100, heatmap_cols: int = 120) -> dict[str, go.Figure]:
    """Every figure the Live page shows, keyed by name (see LIVE_FIGURES).

    The point budgets keep 4 runs × 20k steps × 32 layers near 0.7 MB of figure JSON per refresh
    (0.8 MB with x="time"): lines ≤800 points (SVG, so no WebGL context is used), per-layer lines
    ≤100 points, heatmaps ≤120 step bins. Plotly escapes every "/" of its base64 arrays as
    "\\u002f", which costs ~30% on values near 1, hence the margin.
    """
    return {
        "loss": loss_figure(runs, "loss", split, smoothing, log_loss, x, max_points=max_points),
        "acc": loss_figure(runs, "acc", split, smoothing, False, x, max_points=max_points),
        "step_size": step_size_figure(runs, x, max_points=max_points),
        "rel_update": rel_update_figure(runs, None, x, max_points=max_points),
        "w_spec_scaled": layer_lines_figure(runs, "w_spec_scaled", None, x,
                                            max_points=layer_points),
        "w_srank": layer_heatmaps(runs, "w_srank", max_cols=heatmap_cols),
        "g_srank": layer_heatmaps(runs, "g_srank", max_cols=heatmap_cols),
    }


# --------------------------------------------------------------------------------------------------
# Any scalar metric (the Runs page's overlay)


def scalar_figure(runs: Sequence[RunData], metric: str = "loss", smoothing: float = 0.0,
                  log_y: bool = False, x: str = "step", *, max_points: int = 2000,
                  title: str | None = None, height: int = LINE_HEIGHT) -> go.Figure:
    """One line per run of any scalar column of the run store (loss, acc, train_loss, ..., eta,
    G, lr), EMA-smoothed over the raw line drawn faint when `smoothing` > 0. On a log axis,
    values ≤ 0 are left out (they have no place on it)."""
    _check_x(x)
    ytitle = metric_name(metric) + (f" (EMA {smoothing:g})" if smoothing > 0 else "")
    urev = f"scalar:{metric}:{x}:{log_y}"
    if _no_runs(runs):
        return empty_figure(height=height, uirevision=urev, title=title)
    styles = _styles(runs)
    traces = []
    for run in runs:
        if not _has_rows(run.scalars):
            continue
        xs, ys = _finite_xy(run.scalars, metric, x)
        if xs is not None and log_y:
            xs, ys = xs[ys > 0], ys[ys > 0]
        if xs is None or len(xs) == 0:
            continue
        color, dash = styles[id(run)]
        group = str(run.run_id)
        if smoothing > 0:
            rx, ry = downsample(xs, ys, max_points)
            traces.append(_line(rx, ry, name=run.label, color=color, dash=dash, width=1.0,
                                group=group, showlegend=False, opacity=0.25, hover=False))
            ys = ema(ys, smoothing)
        sx, sy = downsample(xs, ys, max_points)
        traces.append(_line(sx, sy, name=run.label, color=color, dash=dash, group=group))
    if not traces:
        return empty_figure(f"no {metric_name(metric)} recorded", height=height, uirevision=urev,
                            title=title)
    layout = _layout(height, urev, title=title, xtitle=_X_TITLES[x], ytitle=ytitle, log_y=log_y)
    return _figure(traces, layout)
