"""Matrix norms for watching training: Frobenius, spectral, stable rank.

AGD's analysis (Bernstein et al. 2023) is phrased in the spectral norm ||W||_* = σ_max(W); its updates
are sized by the cheap Frobenius norm, and the stable rank  srank(W) = ||W||_F² / ||W||_*²
(1 <= srank <= rank) says how far apart the two are. An SVD per layer per step is too slow to log
(and syncs with the host on CUDA), so `PowerIteration` keeps a small warm-started block of vectors
per layer and refines it with a block Lanczos step or two per call; `exact_spectral_norms` is the
SVD reference for checks.

Cost. Every matrix of a call on one device shares one chain of small batched ops (a deep MLP's
layers, its first and last included, cost one set of kernel launches per step, not one per layer
or per shape); only the products M·V see the matrices, one pass over each matrix per product, with
thin blocks kept as rows (fast on the CPU). The training loop's probe (train._LayerProbe) tracks
weights with small blocks and few steps, since a weight moves little between probes, and
gradients, new every step, with wider blocks (cost.probe_iters, train.WEIGHT_BLOCK).

Nothing here calls `.item()` or otherwise waits for the device: on a GPU no eigh/svd/qr (they
synchronise on CUDA), only matmuls, `cholesky_ex` and triangular solves. Estimates stay on the
device, and the training loop moves them to the host in one batch. (A new set of shapes copies its
start blocks and masks to the device once.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_ITERS",
    "DEFAULT_WARMUP_ITERS",
    "PowerIteration",
    "as_matrix",
    "exact_spectral_norms",
    "fro_norm",
    "spectral_norm_exact",
    "stable_rank",
    "stable_rank_from",
]

# Block Lanczos steps per call once a layer is warm, and vectors per block. Measured along 200 steps
# of minibatch training of a bias-free depth-4 width-64 MLP on random data, estimate vs SVD at every
# step for every layer (tests/test_spectra.py repeats some of the cases), max relative error over
# Adam lr 1e-3 and 1e-2, SGD lr 0.1 and AGD-style steps, from PyTorch-default or orthogonal init
# (CPU path / sync-free path):
#                        weights           gradients
#   iters=1              0.45%             2.4-9.3%
#   iters=2 (default)    0.06% / 0.15%     0.12% / 0.11%
#   iters=3              0.003%            0.001%
# With iters=2 and one call every 10 steps: 0.14% / 0.39% (weights), 0.04% (gradients); at width
# 256: 0.23% / 0.38% and 0.33% / 0.29%. The hard case is not init itself but the first ~30 steps
# after an orthogonal init, when the top singular value climbs out of a bulk flat to a few per cent.
# (The training loop's probe picks its own blocks and steps per kind of matrix: train.WEIGHT_BLOCK.)
DEFAULT_ITERS = 2
DEFAULT_BLOCK = 8
# Extra steps the first time a layer is seen (or its shape changes), from a random block. Paid once.
DEFAULT_WARMUP_ITERS = 8
# On the CPU, equal-shape matrices larger than this (elements) are not stacked into one batch: from
# 256 x 256 up a stacked copy costs about what the per-matrix matmul calls it saves, and its fresh
# pages slow the training step that follows (measured at 16 x 256: 0.69 against 0.60 steps a probe).
STACK_MAX_ELEMENTS = 1 << 14
# A chain pads its matrices to one shape when that adds at most this share of multiply-adds.
PAD_WASTE = 1.3


def as_matrix(w: Tensor) -> Tensor:
    """The matrix whose norms we report: 2-D as is; a conv kernel (out, in, kh, kw) -> (out, in·kh·kw).

    The reshape is the matrix of the convolution acting on one image patch (im2col view).
    """
    if w.dim() == 2:
        return w
    if w.dim() == 4:
        return w.reshape(w.shape[0], -1)
    raise ValueError(f"expected a 2-D weight or a 4-D conv kernel, got shape {tuple(w.shape)}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half precision loses the 1% accuracy we promise; float64 is kept for exact checks.
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def fro_norm(m: Tensor) -> Tensor:
    """||M||_F = sqrt(Σ_ij M_ij²) as a 0-d tensor (any number of dims; a conv kernel's = its matrix's)."""
    return torch.linalg.vector_norm(m.to(_compute_dtype(m.dtype)))


def spectral_norm_exact(m: Tensor) -> Tensor:
    """||M||_* = σ_max(M) via SVD (`torch.linalg.matrix_norm(ord=2)`), a 0-d tensor. For checks only."""
    a = as_matrix(m)
    return torch.linalg.matrix_norm(a.to(_compute_dtype(a.dtype)), ord=2)


def exact_spectral_norms(mats: Sequence[Tensor]) -> Tensor:
    """σ_max of each matrix by SVD, shape (L,), float32. The reference `PowerIteration` is checked against."""
    if len(mats) == 0:
        return torch.zeros(0)
    return torch.stack([spectral_norm_exact(m.detach()).float() for m in mats])


def stable_rank_from(fro: Tensor, spec: Tensor) -> Tensor:
    """srank = ||M||_F² / ||M||_*², elementwise over tensors of norms; 0 where spec == 0 (a zero matrix)."""
    fro = torch.as_tensor(fro)
    spec = torch.as_tensor(spec, device=fro.device)
    nonzero = spec > 0
    safe = torch.where(nonzero, spec, torch.ones_like(spec))
    return torch.where(nonzero, (fro / safe) ** 2, torch.zeros_like(fro / safe))


def stable_rank(m: Tensor) -> Tensor:
    """Exact srank(M) = ||M||_F² / σ_max(M)² (SVD); 0 for a zero matrix."""
    return stable_rank_from(fro_norm(m), spectral_norm_exact(m))


def _lower_inverse(gram: Tensor, eps: Tensor) -> Tensor:
    """L⁻¹ for L Lᵀ = gram + εI (B, r, r), by Cholesky and a triangular solve against I. Adds εI
    to `gram` in place.

    Applying L⁻¹ as a matrix product afterwards is 3-4x faster on the CPU than a triangular solve
    against a long right-hand side (r × n), which LAPACK runs matrix by matrix."""
    gram.diagonal(dim1=1, dim2=2).add_(eps[:, None])  # in place: the callers' grams are their own
    chol, _ = torch.linalg.cholesky_ex(gram)
    eye = _eye(gram.shape[-1], gram.dtype, gram.device)
    return torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)


_EYES: dict[tuple, Tensor] = {}


def _eye(r: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """I (r × r), made once per size, dtype and device."""
    key = (r, dtype, device)
    if key not in _EYES:
        _EYES[key] = torch.eye(r, dtype=dtype, device=device)
    return _EYES[key]


def _orthonormalize(y: Tensor, scale: Tensor | None = None) -> Tensor:
    """Cholesky-QR of a batch of row blocks y (B, k, n): Q = L⁻¹y with L Lᵀ = yyᵀ + εI, rows orthonormal.

    QR and eigh on CUDA synchronise with the host; Cholesky (the `_ex` form, which reports failure
    in a tensor instead of raising) and a triangular solve do not. The jitter ε keeps rank-deficient
    blocks (a gradient of rank < k, a zero matrix) factorable, and it makes QQᵀ = I − εL⁻¹L⁻ᵀ ≼ I, so
    ||Q|| <= 1 and the Ritz values below can only underestimate σ_max, never overshoot.
    ε is relative to `scale` (B,), the squared size of the block before anything was projected out
    of it (default: y's own), so a residual that is pure rounding noise stays small instead of being
    blown up to unit length. Cholesky-QR keeps the order of the rows: row 1 of Q is row 1 of y,
    normalised, so a block whose first rows are its best directions keeps them first.
    """
    gram = y @ y.transpose(1, 2)
    k = gram.shape[-1]
    if scale is None:
        scale = gram.diagonal(dim1=1, dim2=2).sum(-1)
    eps = 1e-6 * scale / k + torch.finfo(gram.dtype).tiny ** 0.5
    return _lower_inverse(gram, eps) @ y


def _top_eigenvalue_psd(h: Tensor, squarings: int = 12) -> Tensor:
    """λ_max of a batch of small PSD matrices h (B, k, k) without eigh (which syncs on CUDA).

    P = h^(2^s) / tr(h^(2^s)) by repeated squaring; then tr(hP) = Σ_i λ_i w_i with weights
    w_i ∝ λ_i^(2^s). That is a weighted mean of the eigenvalues, so it never exceeds λ_max, and an
    eigenvalue x·λ_max pulls it down by at most max_x (1−x)x^(2^s) ≈ 1/(e·2^s) = 9e-5 for s = 12.
    """
    tiny = torch.finfo(h.dtype).tiny
    p = h / h.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(tiny)[:, None, None]
    for _ in range(squarings):
        p = p @ p
        p = p / p.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(tiny)[:, None, None]
    return (h * p).sum((1, 2)).clamp_min(0)


def _ritz(h: Tensor, k: int, sync_free: bool) -> tuple[Tensor, Tensor]:
    """λ_max of the projected matrices h (B, r, r) and k coefficient rows (B, k, r) for a warm start.

    On the CPU `eigh` is exact, one call, and there is no device to wait for: λ_max and the top-k
    eigenvectors. Elsewhere (`sync_free`) eigh would synchronise, so λ_max comes from repeated
    squaring and the start block from the filtered old coordinates orth(E_kᵀH⁸) (E_k = the first k
    coordinates, those of V_0): the old directions re-weighted towards the top.
    """
    if not sync_free:
        # eigh raises on NaN. (A non-finite matrix still gets a NaN estimate: its scale is NaN.)
        evals, evecs = torch.linalg.eigh(torch.nan_to_num(h, nan=0.0, posinf=0.0, neginf=0.0))
        return evals[:, -1].clamp_min(0), evecs[:, :, -k:].flip(-1).transpose(1, 2)  # largest first
    tiny = torch.finfo(h.dtype).tiny
    filt = h / h.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(tiny)[:, None, None]
    for _ in range(3):
        filt = filt @ filt
        filt = filt / filt.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(tiny)[:, None, None]
    return _top_eigenvalue_psd(h), _orthonormalize(filt[:, :k, :])


@dataclass
class _Layout:
    """How the matrices of one chain (one device and dtype) line up, fixed while their shapes are.

    Matrices (rows_i, cols_i) of any shapes share one chain of small ops: their blocks are rows of
    length N = max cols_i, zero beyond cols_i (zeros stay zero under every row combination the
    chain makes, so padding changes no estimate), and their images M V rows of length R = max
    rows_i. `order` lists the positions by shape, so equal shapes sit side by side (`runs`).
    `spans[i]`: the Lanczos steps after which a block of k rows has spanned matrix i's columns;
    its later blocks are zeroed (`step_mask`), as would be rounding noise.
    """

    order: list[int]
    shapes: list[tuple[int, int]]
    k: int
    rows: int
    cols: int
    runs: list[tuple[slice, tuple[int, int]]]
    spans: list[int]
    device: torch.device
    dtype: torch.dtype
    _masks: dict = field(default_factory=dict)

    @classmethod
    def of(cls, order, shapes, block: int, device, dtype) -> "_Layout":
        rows, cols = max(m for m, _ in shapes), max(n for _, n in shapes)
        k = min(block, cols)
        if cls.pads(shapes):
            # Every matrix zero-padded to (rows, cols): one batch of products per pass instead of a
            # slice, a product and a pad per shape (a first and a last layer of an MLP, 2-3 small
            # ops each per pass), for a few per cent more multiply-adds.
            runs = [(slice(0, len(shapes)), (rows, cols))]
        else:
            runs, start = [], 0
            while start < len(shapes):
                end = start
                while end < len(shapes) and shapes[end] == shapes[start]:
                    end += 1
                runs.append((slice(start, end), shapes[start]))
                start = end
        spans = [-(-n // min(k, n)) - 1 for _, n in shapes]
        return cls(order, shapes, k, rows, cols, runs, spans, device, dtype)

    @staticmethod
    def pads(shapes) -> bool:
        """Whether matrices of these shapes are padded to one (then their order does not matter)."""
        rows, cols = max(m for m, _ in shapes), max(n for _, n in shapes)
        return rows * cols * len(shapes) <= PAD_WASTE * sum(m * n for m, n in shapes)

    def step_mask(self, j: int) -> Tensor | None:
        """(B, 1, 1): 1 for the matrices whose space is not yet spanned at Lanczos step j, else None
        when that is all of them. Built once per layout: a tensor made from a list is a copy to
        the device, which on a GPU waits for its queue."""
        if j <= min(self.spans):
            return None
        if j not in self._masks:
            keep = [float(j <= q) for q in self.spans]
            self._masks[j] = torch.tensor(keep, dtype=self.dtype).to(self.device)[:, None, None]
        return self._masks[j]

    def spanned(self) -> Tensor | None:
        """(B,) True for the matrices with no more columns than a block has rows: their start block
        (drawn with min(k, cols) random rows, the rest zero) spans their space, so it is kept for
        good. Ritz vectors would not do: the ones beyond the matrix's rank are arbitrary and could
        drop a direction no later step brings back. None if there are none."""
        if min(n for _, n in self.shapes) > self.k:
            return None
        if "spanned" not in self._masks:
            full = [n <= self.k for _, n in self.shapes]
            self._masks["spanned"] = torch.tensor(full).to(self.device)
        return self._masks["spanned"]


class _Operands:
    """The matrices of one chain, in layout order, for products with its padded row blocks.

    Equal shapes are multiplied as one batch (`stack`: on a GPU, and small matrices on the CPU,
    where a stacked copy costs less than a matmul call per matrix), the rest one matrix at a time,
    with no copy. Thin blocks are kept as rows (k, n), so each product is (k × n)·(n × m): on the
    CPU that is 3-4x faster for k = 8 than the same product in column form (n × m)·(m × k), which
    falls on a slow path for narrow right-hand sides (measured at 256 × 256, torch 2.13, one thread).
    """

    def __init__(self, layout: _Layout, mats: list[Tensor]):
        self.layout = layout
        cpu = layout.device.type == "cpu"
        self.parts = []
        for where, (rows, cols) in layout.runs:
            run = [m if m.shape == (rows, cols) else
                   torch.nn.functional.pad(m, (0, cols - m.shape[1], 0, rows - m.shape[0])) for m in mats[where]]
            stack = len(run) > 1 and (not cpu or rows * cols <= STACK_MAX_ELEMENTS)
            self.parts.append((where, rows, cols, torch.stack(run) if stack else run))

    def times(self, v: Tensor, transpose: bool = False) -> Tensor:
        """Rows of M V (v: (B, k, N) -> (B, k, R)), or of Mᵀ V (`transpose`: (B, k, R) -> (B, k, N))."""
        full = self.layout.cols if transpose else self.layout.rows
        out = []
        for where, rows, cols, ops in self.parts:
            size, width = (rows, self.layout.rows) if transpose else (cols, self.layout.cols)
            blk = v[where, :, :size] if size < width else v[where]
            if isinstance(ops, Tensor):
                got = torch.bmm(blk, ops if transpose else ops.transpose(1, 2))
            else:
                got = torch.stack([b @ (m if transpose else m.T) for b, m in zip(blk, ops)])
            if got.shape[2] < full:
                got = torch.nn.functional.pad(got, (0, full - got.shape[2]))
            out.append(got)
        return out[0] if len(out) == 1 else torch.cat(out)


def _block_lanczos(m: _Operands, v: Tensor, iters: int, sync_free: bool) -> tuple[Tensor, Tensor]:
    """Block Lanczos estimate of σ_max(M) = sqrt(λ_max(MᵀM)) from a start block v, `iters` steps.

    m: B matrices (`_Operands`), v: (B, k, N), their blocks as rows, zero-padded to a common N.
    Builds a basis Q = [V_0 … V_q] of the block Krylov space span[V, AV, …, A^q V], A = MᵀM, each
    new block being A V_j with the earlier blocks projected out (twice, for float32) before it is
    normalised — so the small differences between successive powers, which carry the information,
    are not lost to rounding as they are when powers are normalised first. A Krylov space
    separates a top singular value only a few per cent above the rest (a layer shortly after
    orthogonal init) far faster than powers of A do (Chebyshev filtering; Musco & Musco 2015).
    A step costs 2 passes over M (A V_j = Mᵀ(M V_j)) and the Ritz step one more (M V_q).
    Rayleigh-Ritz: σ² ≈ λ_max(Q̂AQ̂ᵀ) with Q̂ = L⁻¹Q, L Lᵀ = QQᵀ + εI (Q's rows are the basis). Q is
    only nearly orthonormal (blocks that are rounding noise, once the space is exhausted or M has
    low rank, are short and not orthogonal to each other); the Cholesky re-weighting gives
    ||Q̂|| <= 1 regardless (see _orthonormalize), so the estimate is a lower bound and can never
    overshoot. The next call's start block is the top-k Ritz vectors of H = Q̂AQ̂ᵀ (see _ritz),
    best first.

    A zero or non-finite matrix gives σ = 0 or NaN and keeps the old block, so estimates recover
    once the matrix is nonzero and finite again.
    """
    layout = m.layout
    k = v.shape[1]
    iters = min(iters, max(layout.spans))
    basis = [_orthonormalize(v)]
    y = m.times(basis[0])
    # Gram matrices square the entries: float32 overflows for σ above ~1e19 and underflows below
    # ~1e-19. Working with M/s, s = max|M V_0| (<= σ, and near σ once V_0 is warm), fixes both; the
    # factor is applied to the thin (k, n) blocks, never to M, which costs no pass over the matrix.
    s = y.abs().amax(dim=(1, 2)).clamp_min(torch.finfo(y.dtype).tiny)
    inv = s.reciprocal()[:, None, None]
    y = y * inv
    images = []  # (M/s) V_j, as rows
    for j in range(1, iters + 1):
        images.append(y)
        z = m.times(y, transpose=True) * inv  # A V_j with A = (M/s)ᵀ(M/s)
        mask = layout.step_mask(j)
        if mask is not None:
            z = z * mask
        scale = z.square().sum((1, 2))
        q = torch.cat(basis, dim=1)
        for _ in range(2):
            z = z - (z @ q.transpose(1, 2)) @ q
        basis.append(_orthonormalize(z, scale))
        y = m.times(basis[-1]) * inv
    images.append(y)
    q = torch.cat(basis, dim=1)
    my = torch.cat(images, dim=1)
    gram = q @ q.transpose(1, 2)
    eps = 1e-5 * gram.diagonal(dim1=1, dim2=2).sum(-1) / gram.shape[-1] + torch.finfo(gram.dtype).tiny ** 0.5
    linv = _lower_inverse(gram, eps)
    x = linv @ my  # rows of (M/s) Q̂ᵀ
    sigma2, coeffs = _ritz(x @ x.transpose(1, 2), k, sync_free)
    v_new = (coeffs @ linv) @ q  # C Q̂ = (C L⁻¹) Q
    sigma = sigma2.sqrt() * s  # NaN for a non-finite matrix, through s
    ok = torch.isfinite(sigma) & (sigma > 0)  # then v_new is finite too
    spanned = layout.spanned()
    if spanned is not None:  # a block that spans its matrix's space already is kept as it is
        ok = ok & ~spanned
    return sigma, torch.where(ok[:, None, None], v_new, v)


class PowerIteration:
    """Warm-started estimates of σ_max for a list of layers; a block of `block` vectors kept per layer.

    `pi = PowerIteration(); sigmas = pi([W1, W2, ...])` returns a float32 tensor (L,) on the layers'
    device with no host sync. Each call runs `iters` block Lanczos steps (`_block_lanczos`) from the
    block kept from the previous call. Layer i is identified by its position in the list; its block
    is re-seeded (from a generator seeded by `seed` and i, so runs are reproducible and CPU and CUDA
    start alike) when the shape, device or dtype at that position changes, and that call runs
    `warmup_iters` extra steps (for every layer of its chain). All layers on one device form one
    chain (`_Layout`): their small ops are batched whatever their shapes.

    Why a block and Lanczos rather than one warm vector and the power method: between two calls
    the top singular direction can jump (one Adam step moves every entry by ±lr, a change of
    spectral norm up to lr·sqrt(mn)), and shortly after orthogonal init all singular values sit
    within a few per cent of each other, so a new top direction emerges from a flat bulk. One warm
    vector has converged onto the old direction and has almost no component along the new one; the
    power method then needs tens of iterations. In the runs described at DEFAULT_ITERS, one warm
    vector with 1 power iteration per call was off by up to 3-20% on weights and 60-70% on
    gradients; with 12 iterations per call, still up to 0.2-5% and 10-18%.
    Keep one instance per kind of matrix (weights, gradients): each tracks its own blocks.
    `sync_free` (default: on for any device but the CPU) avoids `eigh` in the small Rayleigh-Ritz
    problem; on the CPU eigh is exact, and cheaper than the ~60 tiny ops of its replacement.
    """

    def __init__(
        self,
        iters: int = DEFAULT_ITERS,
        block: int = DEFAULT_BLOCK,
        warmup_iters: int = DEFAULT_WARMUP_ITERS,
        seed: int = 0,
        sync_free: bool | None = None,
    ):
        self.iters = _check_int(iters, "iters", minimum=1)
        self.block = _check_int(block, "block", minimum=1)
        self.warmup_iters = _check_int(warmup_iters, "warmup_iters", minimum=0)
        self.seed = int(seed)
        self.sync_free = sync_free
        # Per device and dtype: the chain's layout and its blocks (B, k, N), kept between calls.
        self._chains: dict[tuple, tuple[_Layout, Tensor]] = {}
        self._perm: tuple[tuple, Tensor] | None = None  # chain rows -> the callers' order

    def reset(self) -> None:
        """Forget all blocks; the next call starts cold."""
        self._chains = {}

    def _fresh(self, i: int, k: int, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        # Drawn on the CPU so CPU and CUDA runs start alike; the copy to the device waits for the
        # device queue, but only on a cold call.
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        v = torch.randn(min(k, n), n, generator=gen, dtype=torch.float64)
        if n < k:  # rows beyond the matrix's space stay zero (see _Layout.spanned)
            v = torch.cat([v, v.new_zeros(k - n, n)])
        return v.to(dtype=dtype, device=device)

    def _start(self, key: tuple, order: list[int], shapes: list[tuple[int, int]]) -> tuple[_Layout, Tensor, bool]:
        """The layout of one chain, the blocks to start from (B, k, N), and whether any is new."""
        old = self._chains.get(key)
        if old is not None and old[0].order == order and old[0].shapes == shapes:
            return old[0], old[1], False
        layout = _Layout.of(order, shapes, self.block, *key)
        kept = {}
        if old is not None and old[0].k == layout.k:  # positions whose shape stays keep their block
            for row, (i, shape) in enumerate(zip(old[0].order, old[0].shapes)):
                kept[i] = (shape, old[1][row, :, : shape[1]])
        blocks, cold = [], False
        for i, shape in zip(order, shapes):
            prev = kept.get(i)
            if prev is not None and prev[0] == shape:
                v = prev[1]
            else:
                v, cold = self._fresh(i, layout.k, shape[1], layout.dtype, layout.device), True
            blocks.append(torch.nn.functional.pad(v, (0, layout.cols - shape[1])) if shape[1] < layout.cols else v)
        return layout, torch.stack(blocks), cold

    def __call__(self, mats: Sequence[Tensor], iters: int | None = None) -> Tensor:
        """σ_max of each matrix, float32 (L,), after `iters` block Lanczos steps (default: the
        instance's)."""
        iters = self.iters if iters is None else _check_int(iters, "iters", minimum=1)
        # σ(M) = σ(Mᵀ): iterate on the narrow side, where a block spans more of the space (a 10×64
        # output layer is solved exactly by a block of 8 plus one step).
        mats = [m.mT if m.shape[0] < m.shape[1] else m for m in (as_matrix(w.detach()) for w in mats)]
        if not mats:
            return torch.zeros(0)
        chains: dict[tuple, list[int]] = defaultdict(list)
        for i, m in enumerate(mats):
            chains[(m.device, _compute_dtype(m.dtype))].append(i)
        for key in list(self._chains):
            if key not in chains:
                del self._chains[key]

        out = []
        for key, idx in chains.items():
            device, dtype = key
            order = idx if _Layout.pads([tuple(mats[i].shape) for i in idx]) else \
                sorted(idx, key=lambda i: (tuple(mats[i].shape), i))
            layout, v, cold = self._start(key, order, [tuple(mats[i].shape) for i in order])
            sync_free = device.type != "cpu" if self.sync_free is None else self.sync_free
            ops = _Operands(layout, [mats[i] if mats[i].dtype == dtype else mats[i].to(dtype) for i in order])
            sigma, v = _block_lanczos(ops, v, iters + (self.warmup_iters if cold else 0), sync_free)
            self._chains[key] = (layout, v)
            out.append((order, sigma.float()))
        if len(out) == 1 and out[0][0] == list(range(len(mats))):
            return out[0][1]  # one chain, in order (an MLP's layers, padded to one shape)
        # Back in the callers' order, by a permutation made once per layout (a tensor made from a
        # list is a copy to the device).
        orders = tuple(tuple(order) for order, _ in out)
        if self._perm is None or self._perm[0] != orders:
            flat = [i for order in orders for i in order]
            perm = sorted(range(len(flat)), key=flat.__getitem__)
            self._perm = (orders, torch.tensor(perm).to(mats[0].device))
        return torch.cat([sigma.to(mats[0].device) for _, sigma in out])[self._perm[1]]


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
