"""The mathematics behind the "How AGD works" page: plain functions and small Plotly figures.

Follows Bernstein, Mingard, Huang, Azizan & Yue (2023), "Automatic Gradient Descent: Deep Learning
without Hyperparameters", arXiv:2304.05187. Equations are written in this project's notation:
W_k is layer k's weight, shape (d_k, d_{k-1}); L is the number of layers; ||.||_* is the operator
(spectral) norm and ||.||_F the Frobenius norm.

No streamlit here: the page only turns widget values into calls to these functions, so every
number it shows can be tested without a browser. Torch is imported inside `depth_demo` only, so
the rest of this module loads fast.
"""

from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

PAPER = (
    "Bernstein, Mingard, Huang, Azizan & Yue (2023), Automatic Gradient Descent: "
    "Deep Learning without Hyperparameters, arXiv:2304.05187"
)
PAPER_URL = "https://arxiv.org/abs/2304.05187"

# Where each idea lives in the paper; one place to correct if a citation is off.
SECTIONS = {
    "comparison_table": "Table 1",
    "functional_expansion": "Sec. 2",
    "deep_relative_trust": "Sec. 3",
    "majorise_minimise": "Sec. 3",
    "algorithm": "Algorithm 1",
}

# Caps keep a public demo from being asked for a matrix or network that stalls the server.
MAX_MATRIX_DIM = 1024
MAX_DEPTH = 256
MAX_WIDTH = 4096

ADAM_COLOR = "#d62728"
AGD_COLOR = "#1f77b4"
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
# 1. The problem


def optimiser_table() -> pd.DataFrame:
    """Which optimiser needs what: our summary of Table 1 of the paper.

    Memory counts the weights plus the optimiser's own per-weight buffers (Adam keeps two running
    averages, momentum one, AGD none).
    """
    yes, no = "✓", "✗"
    rows = [
        ("Adam", no, no, no, no, "3 × #weights"),
        ("SGD + momentum", no, no, no, no, "2 × #weights"),
        ("SGD + muP", no, yes, no, no, "1 × #weights"),
        ("AGD", yes, yes, yes, yes, "1 × #weights"),
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "Optimiser",
            "Hyperparameter-free",
            "Width scaling",
            "Depth scaling",
            "Automatic schedule",
            "Memory cost",
        ],
    )


# --------------------------------------------------------------------------------------------
# 2. Measuring size: vectors


def vector_norms(v) -> dict:
    """Manhattan ||v||_1 = sum |v_i|, Euclidean ||v||_2 = sqrt(sum v_i^2), infinity ||v||_inf = max |v_i|."""
    a = np.asarray(v, dtype=float).ravel()
    if a.size == 0:
        raise ValueError("vector_norms needs at least one entry")
    if not np.all(np.isfinite(a)):
        raise ValueError("vector_norms needs finite entries")
    return {
        "l1": float(np.abs(a).sum()),
        "l2": float(np.sqrt((a * a).sum())),
        "linf": float(np.abs(a).max()),
    }


_NORM_KEYS = {1: "l1", 2: "l2", math.inf: "linf"}


def norm_ball(p: float, radius: float = 1.0, points: int = 361) -> tuple[np.ndarray, np.ndarray]:
    """Boundary of the 2-D ball {v : ||v||_p = radius} for p in {1, 2, inf}, as (x, y) arrays.

    Each direction (cos t, sin t) is rescaled to have p-norm `radius`, which traces the diamond
    (p=1), circle (p=2) or square (p=inf).
    """
    if p not in _NORM_KEYS:
        raise ValueError(f"p must be one of 1, 2, inf; got {p!r}")
    t = np.linspace(0.0, 2.0 * np.pi, points)
    d = np.stack([np.cos(t), np.sin(t)])
    size = np.linalg.norm(d, ord=p, axis=0)
    x, y = radius * d / size
    return x, y


def fig_norm_balls(v) -> go.Figure:
    """The vector v with, for each norm, the ball of radius ||v||_p that passes through its tip."""
    v = np.asarray(v, dtype=float).ravel()
    if v.shape != (2,):
        raise ValueError(f"fig_norm_balls draws 2-D vectors; got shape {v.shape}")
    norms = vector_norms(v)
    fig = go.Figure()
    styles = [
        (1, "Manhattan ℓ1", "#2ca02c"),
        (2, "Euclidean ℓ2", "#1f77b4"),
        (math.inf, "infinity ℓ∞", "#ff7f0e"),
    ]
    for p, label, color in styles:
        r = norms[_NORM_KEYS[p]]
        fig.add_trace(_line(*norm_ball(p, r), f"{label} = {r:.3g}", color))
    fig.add_trace(_line([0.0, v[0]], [0.0, v[1]], "v", "black", width=3))
    fig.add_trace(_point(v[0], v[1], "tip of v", size=10))
    lim = max(1.0, 1.15 * norms["l1"])
    return _style(
        fig, "The same vector, three sizes", legend=dict(orientation="v"),
        xaxis=dict(range=[-lim, lim], zeroline=True),
        yaxis=dict(range=[-lim, lim], scaleanchor="x", scaleratio=1, zeroline=True),
    )


# --------------------------------------------------------------------------------------------
# 2. Measuring size: matrices

MATRIX_KINDS = ("orthogonal", "gaussian", "rank-one", "low-rank+noise")


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {value}")
    return int(value)


def _orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A rows x cols matrix with orthonormal columns (QR of a Gaussian matrix; cols <= rows)."""
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    # Fixing the signs by diag(r) makes the draw uniform rather than biased by QR's convention.
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def build_matrix(kind: str, m: int, n: int, rank: int = 1, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """An m x n example matrix of a given kind, to show how norms and stable rank behave.

    - "orthogonal": semi-orthogonal U V^T, all min(m, n) singular values equal to 1 (AGD's
      initialisation before scaling), so stable rank = min(m, n).
    - "gaussian": i.i.d. N(0, 1/n) entries, the usual random initialisation.
    - "rank-one": u v^T with unit vectors u, v: one singular value 1, stable rank 1.
    - "low-rank+noise": `rank` orthonormal directions with singular value 1, plus a Gaussian
      matrix scaled by noise / (sqrt(m) + sqrt(n)) so that `noise` is roughly the noise's operator
      norm relative to the signal's. Rank jumps to full at any noise > 0; stable rank barely moves.

    `rank` and `noise` are used by "low-rank+noise" only. Raises ValueError on an unknown kind
    (listing the valid ones), sizes outside [1, MAX_MATRIX_DIM], rank outside [1, min(m, n)] or
    negative noise.
    """
    if kind not in MATRIX_KINDS:
        raise ValueError(f"unknown matrix kind {kind!r}; valid kinds: {', '.join(MATRIX_KINDS)}")
    m = _check_int("m", m, 1, MAX_MATRIX_DIM)
    n = _check_int("n", n, 1, MAX_MATRIX_DIM)
    k = min(m, n)
    rank = _check_int("rank", rank, 1, k)
    noise = float(noise)
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0; got {noise!r}")
    rng = np.random.default_rng(seed)
    if kind == "orthogonal":
        return _orthonormal_columns(rng, m, k) @ _orthonormal_columns(rng, n, k).T
    if kind == "gaussian":
        return rng.standard_normal((m, n)) / math.sqrt(n)
    if kind == "rank-one":
        return _orthonormal_columns(rng, m, 1) @ _orthonormal_columns(rng, n, 1).T
    signal = _orthonormal_columns(rng, m, rank) @ _orthonormal_columns(rng, n, rank).T
    return signal + noise * rng.standard_normal((m, n)) / (math.sqrt(m) + math.sqrt(n))


def matrix_summary(M) -> dict:
    """Singular values and the sizes built from them.

    spectral ||M||_* = sigma_1, frobenius ||M||_F = sqrt(sum sigma_i^2), numerical rank = number of
    sigma_i above sigma_1 * max(m, n) * machine epsilon (numpy's default), and
    stable_rank = ||M||_F^2 / ||M||_*^2 (0 for the zero matrix). Always 1 <= stable_rank <= rank.
    """
    a = np.asarray(M, dtype=float)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"matrix_summary needs a non-empty 2-D array; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("matrix_summary needs finite entries")
    s = np.linalg.svd(a, compute_uv=False)
    spectral = float(s[0])
    frobenius = float(np.sqrt((s * s).sum()))
    tol = spectral * max(a.shape) * np.finfo(float).eps
    rank = int((s > tol).sum()) if spectral > 0 else 0
    stable_rank = frobenius**2 / spectral**2 if spectral > 0 else 0.0
    return {
        "shape": a.shape,
        "singular_values": s,
        "frobenius": frobenius,
        "spectral": spectral,
        "rank": rank,
        "stable_rank": float(stable_rank),
    }


def fig_singular_values(summary: dict) -> go.Figure:
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


def eta_of_G(G):
    """AGD's step size eta = log((1 + sqrt(1 + 4G)) / 2) (paper, Algorithm 1).

    Computed as log1p(2G / (1 + sqrt(1 + 4G))), the same number without the cancellation that
    loses digits at small G. eta(0) = 0, eta ~ G for small G and ~ log(G)/2 for large G.
    Accepts a scalar (returns float) or an array (returns an array); G must be finite and >= 0.
    """
    g = np.asarray(G, dtype=float)
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ValueError(f"G must be finite and >= 0; got {G!r}")
    eta = np.log1p(2.0 * g / (1.0 + np.sqrt(1.0 + 4.0 * g)))
    return float(eta) if eta.ndim == 0 else eta


def mm_bound(eta, G):
    """The eta-dependent part of the loss bound AGD minimises: -eta*G + (exp(eta) - 1)^2 / 2.

    The first term is the first-order decrease along the normalised gradient (G is the
    architecture-weighted gradient size); the second is the curvature penalty once the output
    change is capped at exp(eta) - 1 by deep relative trust. Setting the derivative to zero gives
    e^{2 eta} - e^{eta} = G, i.e. eta = eta_of_G(G).
    """
    e = np.asarray(eta, dtype=float)
    out = -e * float(G) + 0.5 * np.expm1(e) ** 2
    return float(out) if out.ndim == 0 else out


def fig_eta_curve(G: float, stored: dict | None = None, G_max: float = 10.0) -> go.Figure:
    """eta(G) with the chosen G marked, and the latest stored AGD run's G if there is one."""
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


def fig_mm_bound(G: float) -> go.Figure:
    """The bound -eta*G + (e^eta - 1)^2 / 2 as a function of eta, with its minimiser marked."""
    G = float(G)
    best = eta_of_G(G)
    grid = np.linspace(0.0, max(1.5, 2.0 * best), 300)
    fig = go.Figure()
    fig.add_trace(_line(grid, mm_bound(grid, G), "bound", AGD_COLOR, width=3))
    fig.add_trace(_line(grid, -grid * G, "gain −ηG", "gray", dash="dot"))
    fig.add_trace(_line(grid, 0.5 * np.expm1(grid) ** 2, "penalty ½(e<sup>η</sup> − 1)²", "gray", dash="dash"))
    fig.add_trace(_point(best, mm_bound(best, G), f"minimum at η = {best:.3g}"))
    low = min(mm_bound(best, G), -grid[-1] * G)
    return _style(
        fig, "Majorise, then minimise: the bound against η",
        xaxis_title="η", yaxis_title="change in loss (upper bound)",
        yaxis=dict(range=[low * 1.1 - 0.05, max(1.0, -low)]),
    )


def layer_dims(depth: int, width: int, d_in: int, d_out: int) -> list[tuple[int, int]]:
    """(d_k, d_{k-1}) per layer of the bias-free MLP: d_in -> width -> ... -> width -> d_out."""
    depth = _check_int("depth", depth, 1, MAX_DEPTH)
    width = _check_int("width", width, 1, MAX_WIDTH)
    d_in = _check_int("d_in", d_in, 1, MAX_WIDTH)
    d_out = _check_int("d_out", d_out, 1, MAX_WIDTH)
    sizes = [d_in] + [width] * (depth - 1) + [d_out]
    return [(sizes[k + 1], sizes[k]) for k in range(depth)]


def layer_split(depth: int, width: int, d_in: int, d_out: int, G: float) -> pd.DataFrame:
    """How AGD shares eta = eta_of_G(G) among L = depth layers (paper, Algorithm 1).

    Layer k moves by ||dW_k||_F = (eta/L) * sqrt(d_k/d_{k-1}). At AGD's initialisation
    ||W_k||_* = sqrt(d_k/d_{k-1}) and ||W_k||_F = sqrt(d_k/d_{k-1}) * sqrt(min(d_k, d_{k-1})), so the
    relative update is (eta/L) / sqrt(min(d_k, d_{k-1})) in Frobenius norm and at most eta/L in
    operator norm ("rel_bound"); the rel_bound column sums to eta.
    """
    eta = eta_of_G(G)
    dims = layer_dims(depth, width, d_in, d_out)
    L = len(dims)
    rows = []
    for k, (dk, dk1) in enumerate(dims, start=1):
        scale = math.sqrt(dk / dk1)
        update = eta / L * scale
        weight_fro = scale * math.sqrt(min(dk, dk1))
        rows.append(
            {
                "layer": k,
                "shape": f"{dk} × {dk1}",
                "scale": scale,
                "update_fro": update,
                "weight_fro": weight_fro,
                "weight_spec": scale,
                "rel_update": update / weight_fro,
                "rel_bound": eta / L,
            }
        )
    return pd.DataFrame(rows)


def fig_layer_split(split: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Bar(x=split["layer"], y=split["update_fro"], name="‖ΔW_k‖_F", marker_color=AGD_COLOR))
    fig.add_trace(
        go.Bar(x=split["layer"], y=split["rel_update"], name="‖ΔW_k‖_F / ‖W_k‖_F", marker_color="#9467bd")
    )
    return _style(fig, "η shared across layers", barmode="group", xaxis_title="layer k", yaxis=_LOG_AXIS)


# --------------------------------------------------------------------------------------------
# 5. Why depth breaks a fixed learning rate

DEMO_DATA = ("digits", "random")
DEMO_NORMS = ("operator", "frobenius")


def _demo_batch(data: str, seed: int, batch_size: int):
    import torch

    if data not in DEMO_DATA:
        raise ValueError(f"unknown demo data {data!r}; valid: {', '.join(DEMO_DATA)}")
    gen = torch.Generator().manual_seed(seed)
    if data == "digits":
        from agd_viz.data import load

        ds = load("digits", seed=seed)
        idx = torch.randperm(ds.x_train.shape[0], generator=gen)[:batch_size]
        return ds.x_train[idx], ds.y_train[idx], ds.d_out
    # Same preprocessing contract as agd_viz.data: each input row has Euclidean norm sqrt(d_in).
    d_in, d_out = 64, 10
    x = torch.randn(batch_size, d_in, generator=gen)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(d_in)
    y = torch.randint(0, d_out, (batch_size,), generator=gen)
    return x, y, d_out


def _demo_one(x, y, d_out: int, depth: int, width: int, seed: int, adam_lr: float) -> pd.DataFrame:
    import torch
    import torch.nn.functional as F

    from agd_viz.nets import MLP, init_agd_model_
    from agd_viz.optim import make_optimizer

    model = MLP(x.shape[1], d_out, depth, width)
    init_agd_model_(model, torch.Generator().manual_seed(seed))
    weights = list(model.weights())
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, weights)
    start = [w.detach().clone() for w in weights]

    def first_step(spec: str):
        # Fresh leaf copies so both optimisers start from the very same weights and gradient.
        params = [w.clone().requires_grad_(True) for w in start]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt = make_optimizer(spec, params)
        opt.step()
        return opt, [p.detach() - w for p, w in zip(params, start)]

    _, adam_d = first_step(f"adam:lr={adam_lr}")
    agd, agd_d = first_step("agd")
    G = float(agd.last_G)
    eta = float(agd.last_eta)

    def fro(t):
        return float(torch.linalg.matrix_norm(t, ord="fro"))

    def op(t):
        return float(torch.linalg.matrix_norm(t, ord=2))

    rows = []
    for k, (w, da, dg) in enumerate(zip(start, adam_d, agd_d), start=1):
        wf, wo = fro(w), op(w)
        rows.append(
            {
                "layer": k,
                "shape": f"{w.shape[0]} × {w.shape[1]}",
                "adam_rel": fro(da) / wf,
                "agd_rel": fro(dg) / wf,
                "adam_rel_op": op(da) / wo,
                "agd_rel_op": op(dg) / wo,
            }
        )
    df = pd.DataFrame(rows)
    for name in ("adam", "agd"):
        df[f"{name}_bound"] = np.cumprod(1.0 + df[f"{name}_rel"].to_numpy()) - 1.0
        df[f"{name}_bound_op"] = np.cumprod(1.0 + df[f"{name}_rel_op"].to_numpy()) - 1.0
    df["G"] = G
    df["eta"] = eta
    df["loss"] = float(loss.detach())
    return df


def depth_demo(
    depth: int,
    width: int = 64,
    seed: int = 0,
    data: str = "digits",
    batch_size: int = 128,
    adam_lr: float = 1e-3,
) -> pd.DataFrame:
    """First-step relative update per layer for Adam and AGD on the same network, batch and gradient.

    Builds the bias-free MLP (agd_viz.nets) with AGD's initialisation, takes one gradient of the
    cross-entropy on one batch, and lets each optimiser (agd_viz.optim) take its first step from
    it. Adam's first step is lr * g / (|g| + eps), i.e. about lr * sign(g) whatever the layer; AGD's
    is (eta/L) * sqrt(d_k/d_{k-1}) * g / ||g||_F.

    Columns per layer k: adam_rel, agd_rel (||dW_k||_F / ||W_k||_F, the `rel_update` the app logs),
    adam_rel_op, agd_rel_op (the same in operator norm, the quantity in the deep relative trust
    bound, paper Sec. 3), and the running product bounds prod_{j<=k}(1 + rel_j) - 1 as
    adam_bound, agd_bound, adam_bound_op, agd_bound_op; the last row is the whole network's bound.
    Constant columns G, eta (AGD's step) and loss (at init).
    """
    depth = _check_int("depth", depth, 1, MAX_DEPTH)
    width = _check_int("width", width, 1, MAX_WIDTH)
    batch_size = _check_int("batch_size", batch_size, 1, 100_000)
    x, y, d_out = _demo_batch(data, seed, batch_size)
    return _demo_one(x, y, d_out, depth, width, seed, adam_lr)


def depth_totals(
    depths: Iterable[int], width: int = 64, seed: int = 0, data: str = "digits", batch_size: int = 128
) -> pd.DataFrame:
    """The whole-network bounds prod_k(1 + rel_k) - 1 of `depth_demo`, one row per depth."""
    width = _check_int("width", width, 1, MAX_WIDTH)
    x, y, d_out = _demo_batch(data, seed, batch_size)
    rows = []
    for depth in depths:
        df = _demo_one(x, y, d_out, _check_int("depth", depth, 1, MAX_DEPTH), width, seed, 1e-3)
        last = df.iloc[-1]
        rows.append(
            {
                "depth": int(depth),
                "adam_total": last["adam_bound"],
                "agd_total": last["agd_bound"],
                "adam_total_op": last["adam_bound_op"],
                "agd_total_op": last["agd_bound_op"],
                "eta": last["eta"],
                "G": last["G"],
            }
        )
    return pd.DataFrame(rows)


def _norm_suffix(norm: str) -> str:
    if norm not in DEMO_NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(DEMO_NORMS)}")
    return "_op" if norm == "operator" else ""


def fig_depth_layers(df: pd.DataFrame, norm: str = "operator") -> go.Figure:
    """Per-layer relative update of each optimiser's first step (log scale)."""
    sfx = _norm_suffix(norm)
    sym = "*" if norm == "operator" else "F"
    fig = go.Figure()
    fig.add_trace(_line(df["layer"], df[f"adam_rel{sfx}"], "Adam (lr = 1e-3)", ADAM_COLOR, markers=True))
    fig.add_trace(_line(df["layer"], df[f"agd_rel{sfx}"], "AGD", AGD_COLOR, markers=True))
    title = f"Relative update per layer ‖ΔW_k‖{sym} / ‖W_k‖{sym}"
    return _style(fig, title, xaxis_title="layer k", yaxis=_LOG_AXIS)


def fig_depth_bound(df: pd.DataFrame, norm: str = "operator") -> go.Figure:
    """Running product bound prod_{j<=k}(1 + rel_j) - 1 through the layers, with AGD's e^eta - 1."""
    sfx = _norm_suffix(norm)
    eta = float(df["eta"].iloc[0])
    fig = go.Figure()
    fig.add_trace(_line(df["layer"], df[f"adam_bound{sfx}"], "Adam", ADAM_COLOR, markers=True))
    fig.add_trace(_line(df["layer"], df[f"agd_bound{sfx}"], "AGD", AGD_COLOR, markers=True))
    fig.add_hline(
        y=math.expm1(eta), line_dash="dot", annotation_text="e<sup>η</sup> − 1", annotation_position="top left"
    )
    return _style(fig, "Output-change bound ∏(1 + rel_j) − 1", xaxis_title="through layer k", yaxis=_LOG_AXIS)


def fig_depth_totals(totals: pd.DataFrame, norm: str = "operator", depth: int | None = None) -> go.Figure:
    """Whole-network bound against depth: Adam's compounds, AGD's stays under e^eta - 1."""
    sfx = _norm_suffix(norm)
    d = totals["depth"]
    fig = go.Figure()
    fig.add_trace(_line(d, totals[f"adam_total{sfx}"], "Adam", ADAM_COLOR, markers=True))
    fig.add_trace(_line(d, totals[f"agd_total{sfx}"], "AGD", AGD_COLOR, markers=True))
    fig.add_trace(_line(d, np.expm1(totals["eta"]), "AGD's e<sup>η</sup> − 1", AGD_COLOR, dash="dot"))
    if depth is not None:
        fig.add_vline(x=depth, line_dash="dot", line_color="gray")
    return _style(
        fig, "Whole-network bound against depth",
        xaxis=dict(title="depth L", type="log", tickvals=list(d)), yaxis=_LOG_AXIS,
    )


# --------------------------------------------------------------------------------------------
# The run store: the last G an AGD run measured


def latest_agd_point(db_path: str | os.PathLike | None = None, max_runs: int = 20) -> dict | None:
    """The last logged (G, eta) of the most recent AGD run in the run store, or None.

    Returns {"run_id", "name", "step", "G", "eta"}. None when the store module, the database file,
    an AGD run or a finite G is missing, or the store cannot be read: this feeds an optional
    marker on an explanatory chart, never a decision. The file is not created if absent.
    """
    try:
        from agd_viz.store import Store, default_db_path

        path = os.fspath(db_path) if db_path is not None else default_db_path()
        if not os.path.exists(path):
            return None
        # verify=False: the integrity scan reads the whole file, too slow for every page rerun.
        with Store(path, verify=False) as store:
            for run in store.list_runs(optimizer="agd", limit=max_runs):  # newest first
                point = _last_G(store, run)
                if point is not None:
                    return point
    except Exception:
        return None
    return None


def _last_G(store, run: dict) -> dict | None:
    step = run.get("step")
    # Only the tail is needed; a long run's full history would make every rerun slow.
    since = int(step) - 1000 if isinstance(step, (int, np.integer)) and step > 1000 else None
    df = store.metrics(run["id"], since_step=since)
    if df is None or "G" not in df or "step" not in df:
        return None
    df = df[np.isfinite(pd.to_numeric(df["G"], errors="coerce")) & (df["G"] >= 0)]
    if df.empty:
        return None
    last = df.sort_values("step").iloc[-1]
    G = float(last["G"])
    eta = float(last["eta"]) if "eta" in last and np.isfinite(last["eta"]) else eta_of_G(G)
    return {
        "run_id": run["id"],
        "name": run.get("name") or f"run {run['id']}",
        "step": int(last["step"]),
        "G": G,
        "eta": eta,
    }
