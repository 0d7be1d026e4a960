"""Automatic Gradient Descent (Bernstein et al. 2023, Algorithm 1) and a factory for baselines.

For weights W_1..W_L (W_k of shape d_k x d_{k-1}, PyTorch's (out, in)) with scale_k = sqrt(d_k/d_{k-1}):

    init:    W_k semi-orthogonal, every singular value = scale_k        (Alg. 1, initialisation)
    summary: G = (1/L) sum_k scale_k ||grad W_k||_F                      (Alg. 1, "get gradient summary")
    step:    eta = log((1 + sqrt(1 + 4G)) / 2)                          (Alg. 1, "set automatic learning rate")
    update:  W_k <- W_k - gain * (eta/L) * scale_k * grad W_k / ||grad W_k||_F   (Alg. 1, "update weights")

The formulas themselves are written once, in agd_viz.theory; this module applies them to tensors.

A 4-D conv kernel (out, in, kh, kw) is treated as kh*kw matrices W[:, :, i, j], each with
scale = sqrt(out/in) / sqrt(kh*kw): every slice adds scale*||grad slice||_F to the sum in G and is
normalised by its own gradient norm. L counts weight tensors, not slices.

`make_optimizer` builds any optimiser of the vocabulary in agd_viz.optspec from its spec string
("adam:lr=1e-3"), through `FACTORIES`; the learning-rate-free baselines come from their maintained
packages, optional at runtime (optspec.available says whether one can be built here). `step_size` reads
the learning rate an optimiser applies at its next step (d * lr for the D-adaptation family), and
`eval_mode` / `train_mode` handle schedule-free AdamW's switch between its two iterates.

`AGD` follows the layout of torch/optim/adam.py: a thin Optimizer over the functional `agd_update`,
which has a readable per-parameter loop and a multi-tensor (foreach) path. Neither path copies a
number to the host, so a training loop can call `step_tensors()` every step without a sync.
"""

from __future__ import annotations

import contextlib
import io
import math
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

# Not `from agd_viz import ...`: the package's __init__ imports this module (for `from agd_viz
# import AGD`), so importing the package from here would close an import cycle.
import agd_viz.optspec as optspec
import agd_viz.theory as theory

__all__ = [
    "AGD",
    "agd_update",
    "agd_scale",
    "init_agd_",
    "FACTORIES",
    "register_optimizer",
    "make_optimizer",
    "optimizer_lr",
    "optimizer_state_bytes",
    "step_size",
    "step_size_tensor",
    "eval_mode",
    "train_mode",
]


# --------------------------------------------------------------------------------------------------
# Shapes, scales and initialisation
# --------------------------------------------------------------------------------------------------


def _check_weight(p: Tensor) -> None:
    """Refuse tensors AGD has no scale for; biases are the usual culprit."""
    shape = tuple(p.shape)
    if p.dim() == 1:
        raise ValueError(
            f"AGD got a 1-D parameter of shape {shape}: AGD networks are bias-free; "
            "build layers with bias=False"
        )
    if p.dim() not in (2, 4):
        raise ValueError(
            f"AGD got a {p.dim()}-D parameter of shape {shape}: AGD handles 2-D weight matrices "
            "(out, in) and 4-D conv kernels (out, in, kh, kw) only"
        )
    if not p.is_floating_point():
        raise ValueError(f"AGD got a parameter of dtype {p.dtype}; weights must be floating point")
    if p.numel() == 0:
        raise ValueError(f"AGD got an empty parameter of shape {shape}")


def agd_scale(p: Tensor) -> float:
    """scale = sqrt(d_out/d_in) for a matrix; sqrt(out/in)/sqrt(kh*kw) per slice of a conv kernel."""
    _check_weight(p)
    return theory.agd_scale(p.shape[0], p.shape[1], p.shape[2] * p.shape[3] if p.dim() == 4 else 1)


def _semi_orthogonal(
    batch: int, rows: int, cols: int, generator: torch.Generator | None, device, dtype
) -> Tensor:
    """`batch` random (rows, cols) matrices with every singular value 1, via QR of a Gaussian.

    QR of a tall Gaussian gives orthonormal columns; the sign fix by diag(R) makes the draw
    Haar-distributed rather than biased by the QR convention. Wide matrices are transposed tall ones.
    """
    tall, short = max(rows, cols), min(rows, cols)
    # float32 QR is accurate to ~1e-6, enough for init; float64 params keep float64.
    work = torch.float64 if dtype == torch.float64 else torch.float32
    gauss = torch.randn(batch, tall, short, generator=generator, device=device, dtype=work)
    q, r = torch.linalg.qr(gauss)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    q = q * torch.where(signs == 0, torch.ones_like(signs), signs).unsqueeze(-2)
    return q if rows >= cols else q.transpose(-2, -1)


@torch.no_grad()
def init_agd_(p: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """AGD init in place: W semi-orthogonal with all singular values = agd_scale(W) (per conv slice).

    The Gaussian is drawn on the generator's device (the param's device without one), so a seed
    gives the same weights whatever device the model later lives on.
    """
    _check_weight(p)
    scale = agd_scale(p)
    device = generator.device if generator is not None else p.device
    out_f, in_f = p.shape[0], p.shape[1]
    if p.dim() == 2:
        w = _semi_orthogonal(1, out_f, in_f, generator, device, p.dtype)[0]
    else:
        kh, kw = p.shape[2], p.shape[3]
        slices = _semi_orthogonal(kh * kw, out_f, in_f, generator, device, p.dtype)
        w = slices.reshape(kh, kw, out_f, in_f).permute(2, 3, 0, 1)
    p.copy_(w * scale)
    return p


# --------------------------------------------------------------------------------------------------
# The functional update
# --------------------------------------------------------------------------------------------------


def _inverse_or_zero(norm: Tensor) -> Tensor:
    """1/norm, but 0 where norm is 0: a zero gradient then moves nothing instead of making NaN."""
    return torch.where(norm > 0, norm.reciprocal(), torch.zeros_like(norm))


def _slice_norms(g: Tensor) -> Tensor:
    """||g||_F for a matrix (0-d), ||g[:, :, i, j]||_F for a conv kernel (shape (kh, kw))."""
    return torch.linalg.vector_norm(g, dim=(0, 1))


def _agd_update_loop(params, grads, scales, gains, L):
    """Reference path, one parameter at a time: read it next to Algorithm 1.

    G   = (1/L) sum_k scale_k ||grad_k||_F          (conv: summed over slices)
    eta = log((1 + sqrt(1 + 4G)) / 2)
    W_k -= gain_k * (eta/L) * scale_k * grad_k / ||grad_k||_F   (conv: per-slice norm)
    """
    norms = [_slice_norms(g) for g in grads]
    G = sum(scale * norm.sum() for scale, norm in zip(scales, norms)) / L
    eta = theory.eta_of_G(G)
    for p, g, norm, scale, gain in zip(params, grads, norms, scales, gains):
        # For a conv kernel the (kh, kw) factor broadcasts over the trailing dims: one norm per slice.
        p.sub_(g * (eta * _inverse_or_zero(norm)) * (gain * scale / L))
    return eta, G


def _agd_update_foreach(params, grads, scales, gains, L):
    """Same equations as `_agd_update_loop`, batched with torch._foreach_* ops.

    Matrix gradient norms come from one _foreach_norm; every coefficient stays a 0-d device tensor,
    so a step is a handful of kernel launches and never waits on the device.
    """
    mat = [i for i, g in enumerate(grads) if g.dim() == 2]
    conv = [i for i, g in enumerate(grads) if g.dim() == 4]
    norms: list[Tensor | None] = [None] * len(grads)
    if mat:
        for i, n in zip(mat, torch._foreach_norm([grads[i] for i in mat])):
            norms[i] = n
    for i in conv:
        norms[i] = _slice_norms(grads[i])

    terms = []
    if mat:
        terms.append(torch.stack(torch._foreach_mul([norms[i] for i in mat], [scales[i] for i in mat])))
    terms += [norms[i].sum().unsqueeze(0) * scales[i] for i in conv]
    G = torch.cat(terms).sum() / L
    eta = theory.eta_of_G(G)

    coef: list[Tensor] = [None] * len(grads)  # type: ignore[list-item]
    if mat:
        inv = _inverse_or_zero(torch.stack([norms[i] for i in mat]))
        for i, c in zip(mat, (eta * inv).unbind(0)):
            coef[i] = c
    for i in conv:
        coef[i] = eta * _inverse_or_zero(norms[i])
    coef = torch._foreach_mul(coef, [-gain * scale / L for gain, scale in zip(gains, scales)])
    # W += grad * coef in place: no update tensors to allocate (on the CPU a fresh tensor per layer
    # per step costs page faults as large as the arithmetic), one pass over grads and params.
    torch._foreach_addcmul_(params, grads, coef)
    return eta, G


def _foreach_ok(params: list[Tensor]) -> bool:
    return len({(p.device, p.dtype) for p in params}) <= 1


def agd_update(
    params: list[Tensor],
    grads: list[Tensor | None],
    scales: list[float],
    gains: list[float],
    L: int,
    foreach: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """One AGD step in place over `params`; returns (eta, G) as 0-d tensors on the params' device.

    G = (1/L) sum_k scale_k ||grad W_k||_F,  eta = log((1 + sqrt(1+4G))/2),
    W_k <- W_k - gain_k * (eta/L) * scale_k * grad W_k / ||grad W_k||_F   (conv: per spatial slice).

    A None grad skips its param, which still counts in L (the caller passes L). foreach=None picks
    the multi-tensor path whenever every param shares one device and dtype.
    """
    if not (len(params) == len(grads) == len(scales) == len(gains)):
        raise ValueError("agd_update: params, grads, scales and gains must have equal length")
    if L < 1:
        raise ValueError(f"agd_update: L must be >= 1, got {L}")
    live = [i for i, g in enumerate(grads) if g is not None]
    if not live:
        device = params[0].device if params else None
        dtype = params[0].dtype if params else torch.float32
        G = torch.zeros((), device=device, dtype=dtype)
        return theory.eta_of_G(G), G
    p_live = [params[i] for i in live]
    g_live = [grads[i] for i in live]
    s_live = [float(scales[i]) for i in live]
    k_live = [float(gains[i]) for i in live]
    if foreach is None:
        foreach = _foreach_ok(p_live + g_live)
    elif foreach and not _foreach_ok(p_live + g_live):
        raise ValueError("AGD foreach=True needs every parameter on one device with one dtype")
    impl = _agd_update_foreach if foreach else _agd_update_loop
    with torch.no_grad():
        return impl(p_live, g_live, s_live, k_live, L)


# --------------------------------------------------------------------------------------------------
# The optimiser
# --------------------------------------------------------------------------------------------------


class AGD(torch.optim.Optimizer):
    """Automatic Gradient Descent: a learning-rate-free optimiser for bias-free deep networks.

    Every parameter must be a 2-D weight (out, in) or a 4-D conv kernel. `gain` (per param group)
    scales the update, not eta; L counts weight tensors over all groups, and G sums over all of them,
    because the paper's bound is a property of the whole network. AGD keeps no per-parameter state.
    """

    def __init__(self, params, gain: float = 1.0, foreach: bool | None = None):
        _check_gain(gain)
        super().__init__(params, {"gain": gain, "foreach": foreach})
        self.last_eta: Tensor | None = None
        self.last_G: Tensor | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("gain", 1.0)
            group.setdefault("foreach", None)
        self.__dict__.setdefault("last_eta", None)
        self.__dict__.setdefault("last_G", None)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Validate here, not in __init__, so groups added later are held to the same rules.
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif not isinstance(params, set):  # the base class explains why sets are refused
            params = list(params)  # a generator would be spent by the checks below
        for p in params:
            p = p[1] if isinstance(p, tuple) and len(p) == 2 else p  # named parameters
            if isinstance(p, Tensor):
                _check_weight(p)
        if "gain" in param_group:
            _check_gain(param_group["gain"])
        super().add_param_group({**param_group, "params": params})

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """AGD init of every parameter, in param-group order, from `generator`."""
        for group in self.param_groups:
            for p in group["params"]:
                init_agd_(p, generator)

    def _foreach(self) -> bool | None:
        flags = [g["foreach"] for g in self.param_groups]
        if any(f is False for f in flags):
            return False
        return True if any(f for f in flags) else None

    def step_tensors(self, closure: Callable[[], Any] | None = None) -> tuple[Tensor, Tensor]:
        """One AGD step; returns (eta, G) as 0-d tensors without a host sync."""
        if closure is not None:
            with torch.enable_grad():
                closure()
        params, grads, scales, gains = [], [], [], []
        for group in self.param_groups:
            for p in group["params"]:
                params.append(p)
                grads.append(p.grad)
                scales.append(agd_scale(p))
                gains.append(group["gain"])
        eta, G = agd_update(params, grads, scales, gains, L=len(params), foreach=self._foreach())
        self.last_eta, self.last_G = eta, G
        return eta, G

    def step(self, closure: Callable[[], Any] | None = None) -> float:  # type: ignore[override]
        """One AGD step; returns eta as a float (one host sync; use `step_tensors` in hot loops)."""
        eta, _ = self.step_tensors(closure)
        return float(eta)


def _check_gain(gain) -> None:
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0:
        raise ValueError(f"AGD gain must be a finite number > 0, got {gain!r}")


# --------------------------------------------------------------------------------------------------
# Factories: how each optimiser of the vocabulary (agd_viz.optspec) is built
# --------------------------------------------------------------------------------------------------


def _adam(params, lr, beta1, beta2, eps, weight_decay):
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


def _adamw(params, lr, beta1, beta2, eps, weight_decay):
    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


def _nadam(params, lr, beta1, beta2, eps, weight_decay, momentum_decay):
    return torch.optim.NAdam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                             momentum_decay=momentum_decay)


def _muon(params, lr, weight_decay, momentum, nesterov, ns_steps):
    """torch.optim.Muon, refusing with one sentence what it cannot train (torch's own check names
    only the first bad shape, deep in a traceback)."""
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    bad = [tuple(p.shape) for p in tensors if isinstance(p, Tensor) and p.dim() != 2]
    if bad:
        raise ValueError(f"Muon trains 2-D weight matrices only, not conv kernels or biases; this model has "
                         f"{len(bad)} parameter(s) of other shapes, e.g. {bad[0]}: use an MLP (arch mlp)")
    return torch.optim.Muon(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                            ns_steps=ns_steps)


def _sgd(params, lr, momentum, nesterov, weight_decay):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


@contextlib.contextmanager
def _quiet_stdout(active: bool) -> Iterator[None]:
    # Prodigy and D-Adapt print "Using decoupled weight decay" on stdout, which would corrupt the
    # CLI's --json output.
    if not active:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _prodigy(params, lr, beta1, beta2, eps, weight_decay, decouple, use_bias_correction, safeguard_warmup,
             d0, d_coef):
    from prodigyopt import Prodigy

    with _quiet_stdout(decouple and weight_decay > 0):
        return Prodigy(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                       decouple=decouple, use_bias_correction=use_bias_correction,
                       safeguard_warmup=safeguard_warmup, d0=d0, d_coef=d_coef)


def _dadapt_adam(params, lr, beta1, beta2, eps, weight_decay, decouple, use_bias_correction, d0):
    from dadaptation import DAdaptAdam

    with _quiet_stdout(decouple):
        return DAdaptAdam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                          decouple=decouple, use_bias_correction=use_bias_correction, d0=d0)


def _schedulefree_adamw(params, lr, beta1, beta2, eps, weight_decay, warmup_steps, r, weight_lr_power):
    from schedulefree import AdamWScheduleFree

    return AdamWScheduleFree(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                             warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power)


# name -> factory(params, **options): one per optimiser of agd_viz.optspec.OPTIMIZERS, whose
# options (with their defaults) it takes as keyword arguments.
FACTORIES: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "agd": lambda params, gain: AGD(params, gain=gain),
    "adam": _adam,
    "adamw": _adamw,
    "nadam": _nadam,
    "muon": _muon,
    "sgd": _sgd,
    "prodigy": _prodigy,
    "dadapt-adam": _dadapt_adam,
    "schedulefree-adamw": _schedulefree_adamw,
}


def register_optimizer(name: str, factory: Callable[..., torch.optim.Optimizer], defaults: dict, *,
                       title: str | None = None, requires: str | None = None, install: str | None = None,
                       **info) -> None:
    """Add an optimiser from your own code in one call: its vocabulary entry (agd_viz.optspec, so
    specs like "name:key=value" parse everywhere) and its factory. `defaults` fixes each option's
    type and default; `requires` names a module the factory imports (an optional package) and
    `install` the command that provides it."""
    optspec.register(optspec.OptimizerInfo(
        name, title or name, defaults, kind=info.pop("kind", "options"),
        requires=(requires, install or f"pip install {requires}") if requires else None, **info))
    FACTORIES[name] = factory


def make_optimizer(spec: str | optspec.OptSpec, params: Iterable[Tensor] | Iterable[dict]) -> torch.optim.Optimizer:
    """Build the optimiser a spec names over `params` (the "init" option is not passed on)."""
    parsed = optspec.parse(spec)
    return FACTORIES[parsed.name](params, **parsed.factory_kwargs)


def optimizer_lr(opt: torch.optim.Optimizer) -> float:
    """Current learning rate of the first param group, or nan for optimisers without one (AGD)."""
    if not opt.param_groups or "lr" not in opt.param_groups[0]:
        return math.nan
    return float(opt.param_groups[0]["lr"])


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes held in tensors of the optimiser's per-parameter state (Adam: ~2x the weights; AGD: 0)."""

    def walk(obj) -> int:
        if isinstance(obj, Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, Mapping):
            return sum(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(walk(v) for v in obj)
        return 0

    return sum(walk(s) for s in opt.state.values())


# --------------------------------------------------------------------------------------------------
# Step size per step, and the train/eval switch of schedule-free optimisers
# --------------------------------------------------------------------------------------------------


def _d_adapted_step_size(opt: torch.optim.Optimizer):
    """Prodigy and D-Adapt Adam: the step applied is dlr = d * lr * bias_correction(k), with d the
    group's current estimate of the distance to a solution (both packages compute exactly this at the
    top of step(); bias_correction = sqrt(1 - beta2^(k+1)) / (1 - beta1^(k+1)) only when enabled)."""
    group = opt.param_groups[0]
    lr = max(g["lr"] for g in opt.param_groups)
    if group.get("use_bias_correction"):
        k = group["k"]
        beta1, beta2 = group["betas"]
        lr = lr * ((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1))
    return group["d"] * lr


def _schedule_free_step_size(opt: torch.optim.Optimizer):
    """Schedule-free AdamW: lr * min(1, (k+1)/warmup_steps), the value step k stores as
    group["scheduled_lr"] (linear warmup over warmup_steps, then constant)."""
    group = opt.param_groups[0]
    k, warmup = group["k"], group["warmup_steps"]
    return group["lr"] * ((k + 1) / warmup if k < warmup else 1.0)


# Keyed by "module.Class" so the optional packages are never imported just to ask.
_STEP_SIZE_RULES: dict[str, Callable[[torch.optim.Optimizer], Any]] = {
    "prodigyopt.prodigy.Prodigy": _d_adapted_step_size,
    "dadaptation.dadapt_adam.DAdaptAdam": _d_adapted_step_size,
    "schedulefree.adamw_schedulefree.AdamWScheduleFree": _schedule_free_step_size,
}


def step_size(opt: torch.optim.Optimizer) -> float | Tensor:
    """The learning rate the optimiser's *next* `step()` applies (read it just before stepping).

    Adam/SGD/AdamW: the first group's lr. Prodigy, D-Adapt Adam: d * lr (times Adam's bias correction
    when enabled). Schedule-free AdamW: lr times its warmup factor. AGD: nan (its step size is eta).
    Read after a step instead, Prodigy's value would already be the next step's: d moves inside step().
    A Python float, or a tensor where the optimiser keeps one (no host sync either way).
    """
    if isinstance(opt, AGD):
        return math.nan
    for cls in type(opt).__mro__:
        rule = _STEP_SIZE_RULES.get(f"{cls.__module__}.{cls.__qualname__}")
        if rule is not None:
            return rule(opt)
    if not opt.param_groups or "lr" not in opt.param_groups[0]:
        return math.nan
    return opt.param_groups[0]["lr"]


# Last (value, device) -> tensor per optimiser, so a constant learning rate costs no kernel per step.
_STEP_SIZE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def step_size_tensor(opt: torch.optim.Optimizer, device: torch.device | str | None = None) -> Tensor:
    """`step_size(opt)` as a 0-d float32 tensor on `device` (default: the first parameter's), built
    without a host sync: a Python float goes in through torch.full (a kernel argument, not a copy)."""
    if device is None:
        first = next((p for g in opt.param_groups for p in g["params"]), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    value = step_size(opt)
    if isinstance(value, Tensor):
        return value.detach().reshape(()).to(device=device, dtype=torch.float32)
    value = float(value)
    cached = _STEP_SIZE_CACHE.get(opt)
    if cached is not None:
        old, old_device, tensor = cached
        if old_device == device and (old == value or (math.isnan(old) and math.isnan(value))):
            return tensor
    tensor = torch.full((), value, dtype=torch.float32, device=device)
    _STEP_SIZE_CACHE[opt] = (value, device, tensor)
    return tensor


def _has_modes(opt: torch.optim.Optimizer) -> bool:
    # torch.optim.Optimizer has no train()/eval(); schedule-free optimisers add both.
    return callable(getattr(opt, "train", None)) and callable(getattr(opt, "eval", None))


def train_mode(opt: torch.optim.Optimizer) -> None:
    """Put a schedule-free optimiser in train mode (parameters hold the gradient point y); no-op else.

    Schedule-free AdamW keeps z and, in train mode, y = (1 - beta1) z + beta1 x in the parameters;
    step() refuses to run in eval mode.
    """
    if _has_modes(opt):
        opt.train()


@contextlib.contextmanager
def eval_mode(opt: torch.optim.Optimizer) -> Iterator[None]:
    """Within the block a schedule-free optimiser's parameters hold the averaged iterate x, the point
    its theory evaluates; on exit the previous mode is restored. No-op for other optimisers."""
    switch = _has_modes(opt) and bool(opt.param_groups and opt.param_groups[0].get("train_mode", True))
    if switch:
        opt.eval()
    try:
        yield
    finally:
        if switch:
            opt.train()
