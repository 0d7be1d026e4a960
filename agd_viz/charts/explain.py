"""The How AGD works page's figures: numbers from `agd_viz.views.explain` in, Plotly figures out.

Plotly, numpy and pandas only, plus AGD's η(G) from `agd_viz.theory` (docs/architecture.md): no
torch, no streamlit, and nothing of `views` (the page hands each figure its numbers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from agd_viz import paper
from agd_viz.charts.palette import color_for
from agd_viz.theory import eta_of_G

__all__ = ["ADAM_COLOR", "AGD_COLOR", "MUON_COLOR", "fig_norm_balls", "fig_singular_values", "fig_matrix",
           "fig_eta_curve", "fig_mm_bound", "fig_layer_split", "fig_depth_layers", "fig_depth_bound",
           "fig_depth_totals", "fig_update_srank", "fig_eta_history", "depth_bound_title"]

ADAM_COLOR = "#d62728"
AGD_COLOR = "#1f77b4"
MUON_COLOR = color_for("muon")
_DEMO = (("adam", "Adam (lr = 1e-3)", ADAM_COLOR), ("agd", "AGD", AGD_COLOR), ("muon", "Muon (lr = 0.02)", MUON_COLOR))
_FIG_HEIGHT = 340
# Ticks at 1, 2 and 5 per decade: the default crowds every digit into a short chart.
_LOG_AXIS = dict(type="log", dtick="D2", minorloglabels="complete")
# Below the x-axis title rather than on top of it.
_LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.28)


def _line(x, y, name, color, dash=None, width=2, markers=False) -> go.Scatter:
    mode = "lines+markers" if markers else "lines"
    return go.Scatter(x=x, y=y, mode=mode, name=name, line=dict(color=color, dash=dash, width=width))


def _point(x, y, name, color="black", size=12, symbol="circle") -> go.Scatter:
    marker = dict(size=size, color=color, symbol=symbol)
    return go.Scatter(x=[x], y=[y], mode="markers", name=name, marker=marker)


def _style(fig: go.Figure, title: str, **layout) -> go.Figure:
    fig.update_layout(
        title=title, height=_FIG_HEIGHT, margin=dict(l=10, r=10, t=40, b=10), legend=_LEGEND_BELOW
    )
    fig.update_layout(**layout)
    return fig


# --------------------------------------------------------------------------------------------
# 2. Measuring size


def fig_norm_balls(picture: Mapping) -> go.Figure:
    """The vector v with, for each norm, the ball of radius ||v||_p that passes through its tip
    (`picture`: views.explain.norm_balls(v))."""
    v, norms, balls = picture["v"], picture["norms"], picture["balls"]
    fig = go.Figure()
    styles = [
        (1, "l1", "Manhattan ℓ1", "#2ca02c"),
        (2, "l2", "Euclidean ℓ2", "#1f77b4"),
        (math.inf, "linf", "infinity ℓ∞", "#ff7f0e"),
    ]
    for p, key, label, color in styles:
        fig.add_trace(_line(*balls[p], f"{label} = {norms[key]:.3g}", color))
    fig.add_trace(_line([0.0, v[0]], [0.0, v[1]], "v", "black", width=3))
    fig.add_trace(_point(v[0], v[1], "tip of v", size=10))
    lim = max(1.0, 1.15 * norms["l1"])
    return _style(
        fig, "The same vector, three sizes", legend=dict(orientation="v"),
        xaxis=dict(range=[-lim, lim], zeroline=True),
        yaxis=dict(range=[-lim, lim], scaleanchor="x", scaleratio=1, zeroline=True),
    )


def fig_singular_values(summary: Mapping) -> go.Figure:
    """The singular values of views.explain.matrix_summary, with the spectral norm marked."""
    s = np.asarray(summary["singular_values"])
    fig = go.Figure(go.Bar(x=np.arange(1, s.size + 1), y=s, marker_color=AGD_COLOR, name="σᵢ"))
    fig.add_hline(
        y=summary["spectral"], line_dash="dot", annotation_text="‖M‖* = σ₁", annotation_position="top right"
    )
    return _style(fig, "Singular values σᵢ", xaxis_title="i", yaxis_title="σᵢ", showlegend=False, bargap=0.1)


def fig_matrix(M) -> go.Figure:
    a = np.asarray(M, dtype=float)
    lim = float(np.abs(a).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=a, colorscale="RdBu", zmin=-lim, zmax=lim, zmid=0.0))
    fig.update_layout(
        title=f"The matrix ({a.shape[0]} × {a.shape[1]})", height=_FIG_HEIGHT,
        margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(autorange="reversed"),
    )
    return fig


# --------------------------------------------------------------------------------------------
# 3-4. The step size


def fig_eta_curve(G: float, stored: Mapping | None = None, G_max: float = 10.0) -> go.Figure:
    """eta(G) with the chosen G marked, and the latest stored AGD run's G if there is one
    (`stored`: views.explain.latest_agd_point())."""
    G = float(G)
    top = max(G_max, G * 1.1, (stored["G"] * 1.1) if stored else 0.0)
    grid = np.linspace(0.0, top, 400)
    small, big = grid[grid <= 1.0], grid[grid >= 1.0]
    fig = go.Figure()
    fig.add_trace(_line(grid, eta_of_G(grid), "η(G)", AGD_COLOR, width=3))
    fig.add_trace(_line(small, small, "η ≈ G (small G)", "gray", dash="dot"))
    fig.add_trace(_line(big, 0.5 * np.log(big), "η ≈ ½ log G (large G)", "gray", dash="dash"))
    fig.add_trace(_point(G, eta_of_G(G), f"your G = {G:.3g}"))
    if stored:
        name = f"run {stored['run_id']} (step {stored['step']}): G = {stored['G']:.3g}"
        fig.add_trace(_point(stored["G"], stored["eta"], name, ADAM_COLOR, size=16, symbol="star"))
    return _style(
        fig, "AGD's step size η(G)",
        xaxis_title="G (architecture-weighted gradient size)", yaxis_title="η",
        yaxis=dict(range=[0, float(eta_of_G(top)) * 1.15 + 0.05]),
    )


def fig_mm_bound(curve: Mapping) -> go.Figure:
    """The bound -eta*G + (e^eta - 1)^2 / 2 as a function of eta, with its minimiser marked
    (`curve`: views.explain.mm_curve(G))."""
    grid, best = curve["eta"], curve["best_eta"]
    fig = go.Figure()
    fig.add_trace(_line(grid, curve["bound"], "bound", AGD_COLOR, width=3))
    fig.add_trace(_line(grid, curve["gain"], "gain −ηG", "gray", dash="dot"))
    fig.add_trace(_line(grid, curve["penalty"], "penalty ½(e<sup>η</sup> − 1)²", "gray", dash="dash"))
    fig.add_trace(_point(best, curve["best_bound"], f"minimum at η = {best:.3g}"))
    low = min(curve["best_bound"], float(curve["gain"][-1]))
    return _style(
        fig, "Majorise, then minimise: the bound against η",
        xaxis_title="η", yaxis_title="change in loss (upper bound)",
        yaxis=dict(range=[low * 1.1 - 0.05, max(1.0, -low)]),
    )


def fig_layer_split(split: pd.DataFrame) -> go.Figure:
    """Each layer's share of η (views.explain.layer_split), absolute and relative to its weights."""
    fig = go.Figure()
    fig.add_trace(go.Bar(x=split["layer"], y=split["update_fro"], name="‖ΔW_k‖_F", marker_color=AGD_COLOR))
    fig.add_trace(
        go.Bar(x=split["layer"], y=split["rel_update"], name="‖ΔW_k‖_F / ‖W_k‖_F", marker_color="#9467bd")
    )
    return _style(fig, "η shared across layers", barmode="group", xaxis_title="layer k", yaxis=_LOG_AXIS)


# --------------------------------------------------------------------------------------------
# 5. Why depth breaks a fixed learning rate: frames of views.explain.in_norm(depth_demo(…), norm)


def fig_depth_layers(df: pd.DataFrame, symbol: str = "*") -> go.Figure:
    """Per-layer relative update of each optimiser's first step (log scale); `symbol` names the
    norm in the title ("*" operator, "F" Frobenius)."""
    fig = go.Figure()
    for key, name, color in _DEMO:
        if f"{key}_rel" in df:
            fig.add_trace(_line(df["layer"], df[f"{key}_rel"], name, color, markers=True))
    title = f"Relative update per layer ‖ΔW_k‖{symbol} / ‖W_k‖{symbol}"
    return _style(fig, title, xaxis_title="layer k", yaxis=_LOG_AXIS)


def depth_bound_title(symbol: str = "*", whole: bool = False) -> str:
    """In the operator norm the product is the bracket of Lemma 4 (deep relative trust); in the
    Frobenius norm it is only a like-for-like product of the relative updates the app logs, not a
    bound the paper proves, and the title says so."""
    where = "against depth" if whole else "through the layers"
    if symbol == "*":
        return f"{paper.ref('lemma4')}'s factor ∏(1 + ‖ΔW_k‖*/‖W_k‖*) − 1 {where}"
    return f"∏(1 + ‖ΔW_k‖_F/‖W_k‖_F) − 1 {where} (Frobenius: not the paper's bound)"


def fig_depth_bound(df: pd.DataFrame, symbol: str = "*") -> go.Figure:
    """Running product prod_{j<=k}(1 + rel_j) - 1 through the layers; in the operator norm (the
    bracket of Lemma 4) with AGD's cap e^eta - 1."""
    fig = go.Figure()
    for key, name, color in _DEMO:
        if f"{key}_bound" in df:
            fig.add_trace(_line(df["layer"], df[f"{key}_bound"], name.split(" (")[0], color, markers=True))
    if symbol == "*":
        eta = float(df["eta"].iloc[0])
        fig.add_hline(y=math.expm1(eta), line_dash="dot", annotation_text="AGD's cap e<sup>η</sup> − 1",
                      annotation_position="top left")
    return _style(fig, depth_bound_title(symbol), xaxis_title="through layer k", yaxis=_LOG_AXIS)


def fig_depth_totals(totals: pd.DataFrame, depth: int | None = None, symbol: str = "*") -> go.Figure:
    """The whole-network product against depth: Adam's and Muon's compound (a fixed step per
    layer), AGD's stays under e^eta - 1 (operator norm)."""
    d = totals["depth"]
    fig = go.Figure()
    for key, name, color in _DEMO:
        if f"{key}_total" in totals:
            fig.add_trace(_line(d, totals[f"{key}_total"], name.split(" (")[0], color, markers=True))
    if symbol == "*":
        fig.add_trace(_line(d, np.expm1(totals["eta"]), "AGD's cap e<sup>η</sup> − 1", AGD_COLOR, dash="dot"))
    if depth is not None:
        fig.add_vline(x=depth, line_dash="dot", line_color="gray")
    return _style(
        fig, depth_bound_title(symbol, whole=True),
        xaxis=dict(title="depth L", type="log", tickvals=list(d)), yaxis=_LOG_AXIS,
    )


def fig_update_srank(df: pd.DataFrame) -> go.Figure:
    """Stable rank ‖ΔW_k‖_F²/‖ΔW_k‖_*² of each optimiser's first update, per layer, against the
    layer's full rank min(d_k, d_{k−1})."""
    fig = go.Figure()
    for key, name, color in _DEMO:
        fig.add_trace(go.Bar(x=df["layer"], y=df[f"{key}_srank"], name=name, marker_color=color))
    fig.add_trace(_line(df["layer"], df["full_rank"], "full rank min(d_k, d_k−1)", "gray", dash="dot"))
    return _style(fig, "Stable rank of each optimiser's first update", barmode="group", xaxis_title="layer k",
                  yaxis=dict(_LOG_AXIS, title="‖ΔW‖_F² / ‖ΔW‖*²"))


def fig_eta_history(curve: Mapping) -> go.Figure:
    """η per step of a stored AGD run (views.explain.latest_agd_curve), its train accuracy on a
    second axis where it was evaluated."""
    fig = go.Figure()
    fig.add_trace(_line(curve["step"], curve["eta"], "η", AGD_COLOR))
    if len(curve["acc_step"]):
        fig.add_trace(go.Scatter(x=curve["acc_step"], y=curve["train_acc"], mode="lines+markers", name="train accuracy",
                                 yaxis="y2", line=dict(color="gray", dash="dot")))
    return _style(fig, f"η in run {curve['run_id']}", xaxis_title="step", yaxis=dict(title="η"),
                  yaxis2=dict(title="train accuracy", overlaying="y", side="right", range=[0, 1.02], tickformat=".0%"))
