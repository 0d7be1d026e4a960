"""The numbers behind the "How AGD works" page (numpy only; its figures: `agd_viz.charts.explain`).

Follows Bernstein, Mingard, Huang, Azizan & Yue (2023), "Automatic Gradient Descent: Deep Learning
without Hyperparameters" (`agd_viz.paper.PAPER`). Equations are written in this project's notation:
W_k is layer k's weight, shape (d_k, d_{k-1}); L is the number of layers; ||.||_* is the operator
(spectral) norm and ||.||_F the Frobenius norm. AGD's formulas come from `agd_viz.theory`.

No streamlit and no torch (docs/architecture.md): the page only turns widget values into calls to
these functions, so every number it shows can be tested without a browser, and the depth demo
runs its network, gradient and first steps in numpy inside the server.
"""

from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np
import pandas as pd

from agd_viz import datasets, optspec, paper, shapes
from agd_viz.paper import PAPER, PAPER_URL
from agd_viz.theory import MUON_NS_COEFFICIENTS, G_of, agd_scale, eta_of_G, layer_step

__all__ = ["PAPER", "PAPER_URL", "SECTIONS", "SPLIT_DIMS", "optimiser_table", "vector_norms",
           "norm_ball", "norm_balls", "MATRIX_KINDS", "build_matrix", "matrix_summary", "eta_of_G",
           "check_G", "mm_bound", "mm_curve", "layer_split", "SPLIT_COLUMNS", "DEMO_DATA", "DEMO_NORMS",
           "NORM_LABELS", "NORM_SYMBOLS", "agd_init", "depth_demo", "depth_totals", "in_norm",
           "latest_agd_point", "latest_agd_curve", "relative_counterexample", "newton_schulz", "OPTIMISERS"]

# Where each idea lives in the paper: read from its one table (agd_viz.paper.ITEMS).
SECTIONS = {
    "comparison_table": paper.ref("table1"),
    "functional_expansion": f"{paper.ref('prop1')}, {paper.ref('assumption1')}, {paper.ref('theorem1')}",
    "deep_relative_trust": f"{paper.ref('lemma4')}, {paper.ref('sec3')}",
    "majorise_minimise": f"{paper.ref('lemma5')}, {paper.ref('theorem2')}, {paper.ref('sec3_1')}",
    "algorithm": paper.ref("alg1"),
}
# The first steps the depth demo compares, in the order of its charts.
OPTIMISERS = ("adam", "agd", "muon")

# Caps keep a public demo from being asked for a matrix or network that stalls the server.
MAX_MATRIX_DIM = 1024
MAX_DEPTH = 256
MAX_WIDTH = 4096

_DIGITS = datasets.DATASETS["digits"]
# Input and output sizes of the layer-split table: the digits data's, the app's default.
SPLIT_DIMS = (_DIGITS.d_in, _DIGITS.d_out)


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {value}")
    return int(value)


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
    columns = ["Optimiser", "Hyperparameter-free", "Width scaling", "Depth scaling", "Automatic schedule",
               "Memory cost"]
    return pd.DataFrame(rows, columns=columns)


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


def norm_balls(v) -> dict:
    """What the norm-ball picture draws for a 2-D vector v: {"v", "norms" (vector_norms),
    "balls": {p: (x, y)}}, the ball of radius ||v||_p through v's tip for p = 1, 2, inf."""
    v = np.asarray(v, dtype=float).ravel()
    if v.shape != (2,):
        raise ValueError(f"the norm-ball picture draws 2-D vectors; got shape {v.shape}")
    norms = vector_norms(v)
    return {"v": v, "norms": norms, "balls": {p: norm_ball(p, norms[key]) for p, key in _NORM_KEYS.items()}}


# --------------------------------------------------------------------------------------------
# 2. Measuring size: matrices

MATRIX_KINDS = ("orthogonal", "gaussian", "rank-one", "low-rank+noise")


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


# --------------------------------------------------------------------------------------------
# 3-4. The step size: η(G) is `theory.eta_of_G`


def check_G(G) -> float:
    """G as a float; ValueError unless it is finite and >= 0 (a gradient summary is a sum of norms)."""
    g = float(G)
    if not math.isfinite(g) or g < 0:
        raise ValueError(f"G must be finite and >= 0; got {G!r}")
    return g


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


def mm_curve(G: float, points: int = 300) -> dict:
    """The majorise-minimise picture for G: the bound, its gain -ηG and penalty ½(e^η − 1)² on a
    grid of η (arrays "eta", "bound", "gain", "penalty"), and its minimum ("best_eta", "best_bound")."""
    G = check_G(G)
    best = eta_of_G(G)
    grid = np.linspace(0.0, max(1.5, 2.0 * best), points)
    return {"G": G, "eta": grid, "bound": mm_bound(grid, G), "gain": -grid * G,
            "penalty": 0.5 * np.expm1(grid) ** 2, "best_eta": best, "best_bound": mm_bound(best, G)}


def layer_split(depth: int, width: int, d_in: int, d_out: int, G: float) -> pd.DataFrame:
    """How AGD shares eta = eta_of_G(G) among L = depth layers (paper, Algorithm 1).

    Layer k moves by ||dW_k||_F = (eta/L) * sqrt(d_k/d_{k-1}). At AGD's initialisation
    ||W_k||_* = sqrt(d_k/d_{k-1}) and ||W_k||_F = sqrt(d_k/d_{k-1}) * sqrt(min(d_k, d_{k-1})), so the
    relative update is (eta/L) / sqrt(min(d_k, d_{k-1})) in Frobenius norm and at most eta/L in
    operator norm ("rel_bound"); the rel_bound column sums to eta.
    """
    eta = eta_of_G(check_G(G))
    dims = shapes.layer_dims(_check_int("d_in", d_in, 1, MAX_WIDTH), _check_int("d_out", d_out, 1, MAX_WIDTH),
                             _check_int("depth", depth, 1, MAX_DEPTH), _check_int("width", width, 1, MAX_WIDTH))
    L = len(dims)
    rows = []
    for k, (dk, dk1) in enumerate(dims, start=1):
        scale = agd_scale(dk, dk1)
        update = layer_step(eta, L, scale)
        weight_fro = scale * math.sqrt(min(dk, dk1))
        rows.append({"layer": k, "shape": f"{dk} × {dk1}", "scale": scale, "update_fro": update,
                     "weight_fro": weight_fro, "weight_spec": scale, "rel_update": update / weight_fro,
                     "rel_bound": eta / L})
    return pd.DataFrame(rows)


# The layer-split table as the page shows it: column -> (title, number format; None for text).
SPLIT_COLUMNS = {
    "layer": ("k", None),
    "shape": ("d_k × d_(k−1)", None),
    "scale": ("√(d_k/d_(k−1))", "%.3f"),
    "update_fro": ("‖ΔW_k‖_F", "%.4f"),
    "weight_fro": ("‖W_k‖_F", "%.3f"),
    "rel_update": ("‖ΔW_k‖_F/‖W_k‖_F", "%.5f"),
    "rel_bound": ("η/L", "%.5f"),
}


# --------------------------------------------------------------------------------------------
# 5. Why depth breaks a fixed learning rate

DEMO_DATA = ("digits", "random")
DEMO_NORMS = ("operator", "frobenius")
NORM_LABELS = {"operator": "operator ‖·‖*", "frobenius": "Frobenius ‖·‖_F"}
NORM_SYMBOLS = {"operator": "*", "frobenius": "F"}
_ADAM = optspec.OPTIMIZERS["adam"].defaults
_AGD = optspec.OPTIMIZERS["agd"].defaults
_MUON = optspec.OPTIMIZERS["muon"].defaults
_SQRT2 = math.sqrt(2.0)


def agd_init(sizes: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    """AGD's initialisation of the MLP with layer sizes `sizes`: each W_k (d_k, d_{k-1}) semi-orthogonal
    (QR of a Gaussian with the sign fix) with every singular value sqrt(d_k/d_{k-1})."""
    weights = []
    for d_prev, d_k in zip(sizes[:-1], sizes[1:]):
        if d_k >= d_prev:
            w = _orthonormal_columns(rng, d_k, d_prev)
        else:
            w = _orthonormal_columns(rng, d_prev, d_k).T
        weights.append(w * agd_scale(d_k, d_prev))
    return weights


def _demo_batch(data: str, rng: np.random.Generator, seed: int, batch_size: int):
    if data not in DEMO_DATA:
        raise ValueError(f"unknown demo data {data!r}; valid: {', '.join(DEMO_DATA)}")
    if data == "digits":
        arrays = datasets.load_arrays("digits", seed=seed)
        idx = rng.permutation(arrays.n_train)[:batch_size]
        return arrays.x_train[idx].astype(np.float64), arrays.y_train[idx], arrays.d_out
    # Inputs the size of the digits data's, prepared as every dataset is: rows of norm sqrt(d_in).
    d_in, d_out = _DIGITS.d_in, _DIGITS.d_out
    x = rng.standard_normal((batch_size, d_in))
    x *= math.sqrt(d_in) / np.linalg.norm(x, axis=1, keepdims=True)
    return x, rng.integers(0, d_out, batch_size), d_out


def _gradients(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """Mean cross-entropy of f(x) = W_L φ(… φ(W_1 x)), φ(z) = sqrt(2)·relu(z), and its gradient
    with respect to every W_k, by backpropagation."""
    L = len(weights)
    inputs, pre = [], []  # each layer's input, and each hidden layer's pre-activation
    h = x
    for k, w in enumerate(weights):
        inputs.append(h)
        z = h @ w.T
        if k < L - 1:
            pre.append(z)
            h = np.maximum(z, 0.0) * _SQRT2
        else:
            h = z
    shifted = h - h.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    loss = float(-log_p[rows, y].mean())
    d = np.exp(log_p)  # d loss / d output = (softmax − one-hot) / batch
    d[rows, y] -= 1.0
    d /= len(y)
    grads: list[np.ndarray] = [np.empty(0)] * L
    for k in reversed(range(L)):
        grads[k] = d.T @ inputs[k]
        if k:
            d = (d @ weights[k]) * (_SQRT2 * (pre[k - 1] > 0))
    return loss, grads


def newton_schulz(g: np.ndarray, steps: int = 5, coefficients=MUON_NS_COEFFICIENTS) -> np.ndarray:
    """Muon's orthogonalisation of g: the quintic Newton–Schulz iteration X ← aX + (bA + cA²)X,
    A = XXᵀ, from X = g/‖g‖_F on the short side (torch.optim.Muon's coefficients). It does not
    converge to UVᵀ exactly: the singular values it returns spread around 1 (roughly 0.7–1.2)."""
    a, b, c = coefficients
    tall = g.shape[0] > g.shape[1]
    x = g.T if tall else g
    norm = np.linalg.norm(x)
    x = x / max(norm, 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def _muon_first_step(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    """torch.optim.Muon's first update of w: the momentum buffer is g, Nesterov reads g + μg,
    decoupled weight decay −lr·λ·w, then −lr·√max(1, d_out/d_in)·NS(·)."""
    mu = _MUON["momentum"]
    direction = g * (1 + mu) if _MUON["nesterov"] else g
    adjust = math.sqrt(max(1.0, w.shape[0] / w.shape[1]))
    return -lr * _MUON["weight_decay"] * w - lr * adjust * newton_schulz(direction, _MUON["ns_steps"])


def _srank(a: np.ndarray) -> float:
    s = np.linalg.norm(a, 2)
    return float(np.linalg.norm(a) ** 2 / s**2) if s > 0 else math.nan


def _demo_one(x, y, weights: list[np.ndarray], adam_lr: float, muon_lr: float = _MUON["lr"]) -> pd.DataFrame:
    loss, grads = _gradients(weights, x, y)
    L = len(weights)
    # Adam's first step: its moments are (1−β1)g and (1−β2)g², and bias correction undoes both
    # factors, so the step is lr·g/(|g| + eps) whatever β1, β2.
    adam = [-adam_lr * g / (np.abs(g) + _ADAM["eps"]) for g in grads]
    norms = [float(np.linalg.norm(g)) for g in grads]
    scales = [agd_scale(*w.shape) for w in weights]
    G = G_of(norms, scales, L)
    eta = eta_of_G(G)
    agd = [-layer_step(eta, L, s, _AGD["gain"]) * g / n if n > 0 else np.zeros_like(g)
           for g, n, s in zip(grads, norms, scales)]
    muon = [_muon_first_step(w, g, muon_lr) for w, g in zip(weights, grads)]

    def fro(a):
        return float(np.linalg.norm(a))

    def op(a):
        return float(np.linalg.norm(a, 2))

    rows = []
    for k, (w, da, dg, dm) in enumerate(zip(weights, adam, agd, muon), start=1):
        wf, wo = fro(w), op(w)
        rows.append({"layer": k, "shape": f"{w.shape[0]} × {w.shape[1]}",
                     "adam_rel": fro(da) / wf, "agd_rel": fro(dg) / wf, "muon_rel": fro(dm) / wf,
                     "adam_rel_op": op(da) / wo, "agd_rel_op": op(dg) / wo, "muon_rel_op": op(dm) / wo,
                     "adam_srank": _srank(da), "agd_srank": _srank(dg), "muon_srank": _srank(dm),
                     "full_rank": min(w.shape)})
    df = pd.DataFrame(rows)
    for name in OPTIMISERS:
        df[f"{name}_bound"] = np.cumprod(1.0 + df[f"{name}_rel"].to_numpy()) - 1.0
        df[f"{name}_bound_op"] = np.cumprod(1.0 + df[f"{name}_rel_op"].to_numpy()) - 1.0
    df["G"] = G
    df["eta"] = eta
    df["loss"] = loss
    return df


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the batch and the weights (one seed would correlate them)."""
    batch, init = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(batch), np.random.default_rng(init)


def depth_demo(
    depth: int,
    width: int = 64,
    seed: int = 0,
    data: str = "digits",
    batch_size: int = 128,
    adam_lr: float = _ADAM["lr"],
) -> pd.DataFrame:
    """First-step relative update per layer for Adam and AGD on the same network, batch and gradient.

    Builds the bias-free MLP (relu·sqrt(2) hidden activations, linear output, as agd_viz.nets) with
    AGD's initialisation (`agd_init`), takes one gradient of the mean cross-entropy on one batch,
    and lets each optimiser take its first step from it. Adam's first step is lr * g / (|g| + eps),
    i.e. about lr * sign(g) whatever the layer; AGD's is (eta/L) * sqrt(d_k/d_{k-1}) * g / ||g||_F.

    Columns per layer k: adam_rel, agd_rel (||dW_k||_F / ||W_k||_F, the `rel_update` the app logs),
    adam_rel_op, agd_rel_op (the same in operator norm, the quantity in the deep relative trust
    bound, paper Sec. 3), and the running product bounds prod_{j<=k}(1 + rel_j) - 1 as
    adam_bound, agd_bound, adam_bound_op, agd_bound_op; the last row is the whole network's bound.
    Constant columns G, eta (AGD's step) and loss (at init).
    """
    depth = _check_int("depth", depth, 1, MAX_DEPTH)
    width = _check_int("width", width, 1, MAX_WIDTH)
    batch_size = _check_int("batch_size", batch_size, 1, 100_000)
    batch_rng, init_rng = _streams(seed)
    x, y, d_out = _demo_batch(data, batch_rng, seed, batch_size)
    weights = agd_init(shapes.mlp_sizes(x.shape[1], d_out, depth, width), init_rng)
    return _demo_one(x, y, weights, adam_lr)


def depth_totals(
    depths: Iterable[int], width: int = 64, seed: int = 0, data: str = "digits", batch_size: int = 128
) -> pd.DataFrame:
    """The whole-network bounds prod_k(1 + rel_k) - 1 of `depth_demo`, one row per depth (one batch
    for all; each depth's network from the same seed)."""
    width = _check_int("width", width, 1, MAX_WIDTH)
    batch_size = _check_int("batch_size", batch_size, 1, 100_000)
    batch_rng, _ = _streams(seed)
    x, y, d_out = _demo_batch(data, batch_rng, seed, batch_size)
    rows = []
    for depth in depths:
        depth = _check_int("depth", depth, 1, MAX_DEPTH)
        weights = agd_init(shapes.mlp_sizes(x.shape[1], d_out, depth, width), _streams(seed)[1])
        last = _demo_one(x, y, weights, _ADAM["lr"]).iloc[-1]
        rows.append({"depth": depth, **{f"{o}_total": last[f"{o}_bound"] for o in OPTIMISERS},
                     **{f"{o}_total_op": last[f"{o}_bound_op"] for o in OPTIMISERS},
                     "eta": last["eta"], "G": last["G"]})
    return pd.DataFrame(rows)


def in_norm(frame: pd.DataFrame, norm: str) -> pd.DataFrame:
    """A `depth_demo` or `depth_totals` frame with the columns of one measure under plain names
    (adam_rel, agd_bound, adam_total, …: operator norm from the *_op columns)."""
    if norm not in DEMO_NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(DEMO_NORMS)}")
    suffix = "_op"
    plain = [c for c in frame.columns if f"{c}{suffix}" in frame.columns]
    if norm == "frobenius":
        return frame.drop(columns=[f"{c}{suffix}" for c in plain])
    return frame.drop(columns=plain).rename(columns={f"{c}{suffix}": c for c in plain})


def relative_counterexample() -> dict:
    """Why Lemma 4 bounds ‖Δf‖ and not ‖Δf‖/‖f‖: one layer, W = diag(1, 10⁻³), x = e₂ (‖x‖ = 1),
    ΔW = 0.01·e₁e₂ᵀ. Then f = Wx = 10⁻³·e₂ and Δf = ΔW·x = 0.01·e₁: the relative change is 10,
    while ∏(1 + ‖ΔW‖_*/‖W‖_*) − 1 = 0.01. Lemma 4's absolute bound ‖W‖_*·‖x‖·0.01 = 0.01 holds."""
    W = np.diag([1.0, 1e-3])
    dW = np.zeros((2, 2))
    dW[0, 1] = 0.01
    x = np.array([0.0, 1.0])
    f, df = W @ x, dW @ x
    factor = (1 + np.linalg.norm(dW, 2) / np.linalg.norm(W, 2)) - 1
    return {"relative_change": float(np.linalg.norm(df) / np.linalg.norm(f)), "factor": float(factor),
            "change": float(np.linalg.norm(df)), "lemma4_bound": float(np.linalg.norm(W, 2) * np.linalg.norm(x) * factor)}


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


def latest_agd_curve(db_path: str | os.PathLike | None = None, max_runs: int = 20,
                     min_steps: int = 20) -> dict | None:
    """η per step of the most recent AGD run in the run store with at least `min_steps` steps,
    with its train accuracy where evaluated: {"run_id", "name", "setting", "step", "eta",
    "acc_step", "train_acc"} (arrays), or None. What the page sets beside the paper's account of
    how η moves in training; like `latest_agd_point`, never a reason for the page to fail."""
    try:
        from agd_viz.spec import describe
        from agd_viz.store import Store, default_db_path

        path = os.fspath(db_path) if db_path is not None else default_db_path()
        if not os.path.exists(path):
            return None
        with Store(path, verify=False) as store:
            for run in store.list_runs(optimizer="agd", limit=max_runs):
                if (run.get("step") or 0) < min_steps:
                    continue
                df = store.metrics(run["id"])
                eta = df[np.isfinite(df["eta"])]
                acc = df[np.isfinite(df["train_acc"])]
                if len(eta) < min_steps:
                    continue
                return {"run_id": run["id"], "name": run.get("name") or f"run {run['id']}",
                        "setting": describe(run.get("spec") or {}), "step": eta["step"].to_numpy(),
                        "eta": eta["eta"].to_numpy(), "acc_step": acc["step"].to_numpy(),
                        "train_acc": acc["train_acc"].to_numpy()}
    except Exception:
        return None
    return None
