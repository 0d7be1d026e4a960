"""Line charts of runs: loss and accuracy, step size, relative update, per-layer lines, and any
scalar metric of the run store. One line per run in its optimiser's colour (`palette`), long
lines min/max-downsampled to a point budget (`common.downsample`)."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

from agd_viz import optspec, paper, theory
from agd_viz.charts.common import (
    _X_TITLES,
    GL_THRESHOLD,
    LINE_HEIGHT,
    _SPLIT_NAMES,
    _SPLIT_NOTES,
    RunData,
    _check_x,
    _clip_note,
    _compact,
    _downsample_columns,
    _envelope,
    _figure,
    _finite_xy,
    _has_rows,
    _layer_view,
    _layout,
    _line,
    _no_runs,
    _robust_y,
    downsample,
    ema,
    empty_figure,
    metric_name,
)
from agd_viz.charts.palette import _mix_white, _rgba, _styles

__all__ = ["loss_figure", "step_size_figure", "rel_update_figure", "layer_lines_figure",
           "scalar_figure", "STEP_SIZE_HEIGHT"]

STEP_SIZE_HEIGHT = 420


def _diverged_at(run: RunData) -> int | None:
    if run.diverged_step is not None:
        return int(run.diverged_step)
    if run.status == "diverged" and _has_rows(run.scalars) and "step" in run.scalars:
        return int(run.scalars["step"].iloc[-1])
    return None


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
    ytitle = f"{_SPLIT_NAMES[split]} {metric_name(metric)}{_SPLIT_NOTES[split]}"
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
    _tame_spikes(layout, traces, log_y or metric == "acc")
    return _figure(traces, layout)


def _tame_spikes(layout: dict, traces: list[dict], skip: bool) -> None:
    """Cut the y axis at the bulk of the lines when one run spikes (`common._robust_y`)."""
    if skip:
        return
    robust = _robust_y([np.asarray(t["y"], dtype=np.float64) for t in traces if t.get("mode") == "lines"])
    if robust is not None:
        layout["yaxis"]["range"] = robust[0]
        layout.setdefault("annotations", []).append(_clip_note(robust[1]))


def step_size_figure(runs: Sequence[RunData], x: str = "step", log_y: bool = True, *,
                     max_points: int = 2000, title: str | None = None,
                     height: int = STEP_SIZE_HEIGHT, lemma8: bool = True,
                     lemma8_gaps: str | None = None) -> go.Figure:
    """AGD's automatic step size η and gradient summary G per step; baselines' lr dashed (for
    Prodigy and D-Adapt Adam the adapted step d·lr they apply).

    AGD (Algorithm 1): G = (1/L) Σ_k √(d_k/d_{k−1}) ‖∇W_k‖_F and η = log((1 + √(1+4G))/2).
    Top panel: η for AGD runs, lr for the others. Bottom panel (AGD runs only): G, and with
    `lemma8` (x = "step") the curve √(11/t) of Lemma 8, min over t ≤ T of G_t² ≤ 11/T, which the
    paper proves for the square loss on the full objective under its Assumptions 1–2: drawn as a
    reference, with those conditions in its hover text; `lemma8_gaps` names the ones these runs do
    not meet (views.live_panel.lemma8_gaps), written under the curve.
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
            # What the logged "lr" is: the D-adaptation family logs the step it applies, d·lr.
            info = optspec.OPTIMIZERS.get(optspec.family(run.optimizer or run.label))
            what = info.step_name if info is not None else "lr"
            top.append(_line(lx, ly, name=f"{run.label} {what}", color=color, dash="dash",
                             group=group))
    if not top and not bottom:
        return empty_figure("no step sizes recorded yet", height=height, uirevision=urev,
                            title=title)
    annotations = []
    if bottom and lemma8 and x == "step":
        bottom.append(_lemma8_trace(max(float(np.nanmax(t["x"])) for t in bottom), lemma8_gaps))
        if lemma8_gaps:
            annotations.append(dict(text=f"√(11/t) is a reference here: {lemma8_gaps}", xref="paper", yref="paper",
                                    x=1, y=0.34, xanchor="right", yanchor="bottom", showarrow=False,
                                    font=dict(size=10, color="#888")))
    ytitle = "η (AGD) · lr (others)"
    layout = _layout(height, urev, title=title, ytitle=ytitle, log_y=log_y,
                     xtitle=None if bottom else _X_TITLES[x], annotations=annotations)
    if bottom:
        layout["yaxis"]["domain"] = [0.42, 1.0]
        layout["xaxis"].update(anchor="y", showticklabels=False)
        layout["xaxis2"] = dict(anchor="y2", matches="x", title=dict(text=_X_TITLES[x]))
        layout["yaxis2"] = dict(domain=[0.0, 0.32], anchor="x2", title=dict(text="G"),
                                type="log" if log_y else "linear", hoverformat=".4g",
                                exponentformat="power" if log_y else "B")
    return _figure(top + bottom, layout)


LEMMA8_NAME = f"√(11/t): {paper.ref('lemma8')}'s bound on min G"


def _lemma8_trace(last_step: float, gaps: str | None = None, points: int = 200) -> dict:
    """√(11/t) on the G panel: min over t ≤ T of G_t ≤ √(11/T) (Lemma 8), for t = 1 … last_step."""
    t = np.unique(np.geomspace(1.0, max(last_step, 1.0), points).round())
    hover = (f"{paper.ref('lemma8')}: min over t ≤ T of G_t² ≤ 11/T, proved for a fully-connected network "
             f"with the square loss on the full objective under {paper.ref('assumption1')}, "
             f"{paper.ref('assumption2')} (gradient stable rank 1) and {paper.ref('prescription1')}. "
             + (f"Not met here: {gaps}." if gaps else "The assumptions are not checked: a reference, not a guarantee."))
    line = _line(t, np.sqrt(theory.lemma8_bound_sq(t)), name=LEMMA8_NAME, color="#888", dash="dot",
                 width=1.5, xaxis="x2", yaxis="y2", hover=False)
    line["hoverinfo"] = "text"
    line["hovertext"] = hover
    return line


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

    Made for ‖W_l‖_* / √(d_l/d_{l−1}). AGD starts it at 1 (a dotted line; a first conv layer with
    more outputs than inputs starts lower) and each step moves it by at most gain·η/L (Weyl's
    inequality: ‖ΔW_l‖_* ≤ ‖ΔW_l‖_F = gain·(η/L)·√(d_l/d_{l−1})); AGD does not pull it back. For
    each AGD run a band shows every value its steps could have reached: the layers' starting range
    widened by Σ gain·η_t/L up to each step. Hover is per point: 32 layers × runs would swamp a
    unified tooltip.
    """
    _check_x(x)
    urev = f"layers:{metric}:{x}:{log_y}"
    if _no_runs(runs, "layers"):
        return empty_figure(height=height, uirevision=urev, title=title)
    styles = _styles(runs)
    traces, bands, lows, highs = [], [], [], []
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
        finite = M[:, chosen][np.isfinite(M[:, chosen])]
        if finite.size:
            lows.append(float(finite.min()))
            highs.append(float(finite.max()))
        if metric == "w_spec_scaled" and not log_y:  # the band reaches 0, which a log axis cannot show
            band = _agd_reach_band(run, view, M[:, chosen], xs, color, group, max_points)
            if band is not None:
                bands.append(band)
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
    layout_extra = {}
    if metric == "w_spec_scaled":
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=0 if log_y else 1,
                           y1=0 if log_y else 1, line=dict(color="#888", width=1, dash="dot")))
        layout_extra["annotations"] = [dict(
            text="1: AGD's initial value (a first conv layer 3→64: about 0.5)", xref="paper", x=1,
            xanchor="right", yref="y", y=0 if log_y else 1, yanchor="bottom", showarrow=False,
            font=dict(size=11, color="#888"))]
    layout = _layout(height, urev, title=title, xtitle=_X_TITLES[x], ytitle=metric_name(metric),
                     log_y=log_y, hovermode="closest", shapes=shapes, **layout_extra)
    if bands and lows and not log_y:
        # The band widens without end; the lines, not the band, set the axis range.
        lo, hi = min(lows + [1.0]), max(highs + [1.0])
        pad = 0.15 * max(hi - lo, 0.05)
        layout["yaxis"]["range"] = [max(lo - pad, 0.0), hi + pad]
    return _figure(bands + traces, layout)


def _agd_reach_band(run: RunData, view, M: np.ndarray, xs: np.ndarray, color: str, group: str,
                    max_points: int) -> dict | None:
    """For an AGD run: the values of ‖W_l‖_*/√(d_l/d_{l−1}) its steps could have reached, the
    layers' range at the first logged step widened by Σ_{τ ≤ t} gain·η_τ/L (Weyl's inequality),
    as a filled band over the logged steps; None for other optimisers or without η."""
    parsed = optspec.try_parse(run.optimizer or run.label)
    if parsed is None or not parsed.is_agd or not _has_rows(run.scalars) or "eta" not in run.scalars:
        return None
    start = M[0][np.isfinite(M[0])]
    if not start.size:
        return None
    steps = run.scalars["step"].to_numpy()
    eta = np.nan_to_num(run.scalars["eta"].to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)
    reach = np.cumsum(eta) * float(parsed.kwargs.get("gain", 1.0)) / max(view.L, 1)
    at = np.clip(np.searchsorted(steps, view.steps, side="right") - 1, 0, len(steps) - 1)
    widen = reach[at] - reach[at[0]]  # from the first logged step, where the band starts
    lo, hi = np.maximum(start.min() - widen, 0.0), start.max() + widen
    bx, by = _envelope(xs, lo, hi, 2 * max_points)
    band = _line(bx, by,
                 name=f"{run.label}: reach of its steps (start ± Σ η/L)", color=color, width=0, group=f"{group}:reach",
                 showlegend=True, hover=False, fill="toself", fillcolor=_rgba(color, 0.10))
    band["line"]["color"] = _rgba(color, 0.0)
    return band


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
    _tame_spikes(layout, traces, log_y or metric.endswith("acc"))
    return _figure(traces, layout)
