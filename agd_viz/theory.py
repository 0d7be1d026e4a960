"""The formulas of Automatic Gradient Descent (Bernstein et al. 2023, Algorithm 1), written once.

Every function works on Python floats, numpy arrays and torch tensors alike (it uses only
arithmetic and the `log1p`/`sqrt` of the array's own library), and imports neither numpy's nor
torch's heavy parts at import: `agd_viz.optim` applies them to tensors on the device, the charts
and the How AGD works page to numpy arrays.

For W_k of shape d_k × d_{k−1} (k = 1..L):

    scale_k = √(d_k / d_{k−1})            (conv kernel: per kh×kw slice, further divided by √(kh·kw))
    G       = (1/L) Σ_k scale_k ‖∇W_k‖_F    "get gradient summary"
    η       = log((1 + √(1 + 4G)) / 2)      "set automatic learning rate"
    W_k    ← W_k − gain · (η/L) · scale_k · ∇W_k / ‖∇W_k‖_F   "update weights"
"""

from __future__ import annotations

import math
import sys

__all__ = ["agd_scale", "eta_of_G", "G_of", "layer_step", "lemma8_bound_sq", "LEMMA8_CONSTANT",
           "MUON_NS_COEFFICIENTS"]

# torch.optim.Muon's quintic Newton-Schulz coefficients (a, b, c), as its defaults.
MUON_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

# Lemma 8 of the paper: for T steps of AGD on an FCN with square loss, under Assumptions 1-2 and
# Prescription 1, min over t <= T of G_t^2 <= 11/T.
LEMMA8_CONSTANT = 11.0


def _lib(x):
    """The array library of `x`: torch for a tensor (already imported by whoever made it), else numpy."""
    if type(x).__module__.startswith("torch"):
        return sys.modules["torch"]
    import numpy

    return numpy


def agd_scale(d_out: int, d_in: int, kernel: int = 1) -> float:
    """√(d_out/d_in), divided by √(kh·kw) for a conv kernel with kh·kw = `kernel` slices."""
    return math.sqrt(d_out / d_in) / math.sqrt(kernel)


def eta_of_G(G):
    """AGD's step size η = log((1 + √(1 + 4G)) / 2), the minimiser of its majorisation.

    Computed as log1p(2G / (1 + √(1 + 4G))), the same number without the cancellation that loses
    digits at small G: η(0) = 0, η ≈ G for small G and ≈ ½·log G for large G. A float in, a
    float out; an array or tensor in, the same kind out.
    """
    if isinstance(G, (int, float)):
        return math.log1p(2.0 * G / (1.0 + math.sqrt(1.0 + 4.0 * G)))
    lib = _lib(G)
    return lib.log1p(2 * G / (1 + lib.sqrt(1 + 4 * G)))


def G_of(grad_norms, scales, L: int):
    """G = (1/L) Σ_k scale_k ‖∇W_k‖_F from per-layer gradient norms (a sequence or array)."""
    if isinstance(grad_norms, (list, tuple)):
        return sum(s * n for s, n in zip(scales, grad_norms)) / L
    return (grad_norms * scales).sum() / L


def layer_step(eta, L: int, scale: float, gain: float = 1.0):
    """‖ΔW_k‖_F of AGD's update of layer k: gain · (η/L) · scale_k (per slice for a conv kernel)."""
    return gain * eta / L * scale


def lemma8_bound_sq(T):
    """11/T: Lemma 8's bound on min over t ≤ T of G_t² (a float, array or tensor of step counts)."""
    return LEMMA8_CONSTANT / T
