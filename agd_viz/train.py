"""The training loop: a `RunSpec` in, a stream of typed records out (`Step`, `Sync`, `Boundary`,
`End`). It knows no UI and no database (the worker writes the records into the store).

Several optimisers in one spec are trained side by side: one model each (`_Trainer`), the same
initial weights where their init kinds agree, the same minibatches in the same order (`_Batches`).

Cost discipline (docs/architecture.md, docs/performance.md): per-step values stay on the device as
tensors (`_Pending`) and are copied to the host in one batch every few steps (SYNC_EVERY_STEPS,
SYNC_EVERY_S, and step 1 at once), so a GPU run does not stall on a sync per step; per-layer
metrics use multi-tensor ops and a warm-started block Lanczos (`_LayerProbe`); a 2-D model's
decision-boundary picture is computed and quantised on the device and copied with the batch
(`_BoundaryProbe`); how often the costly values are logged is `agd_viz.cost`'s cadence.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from torch import Tensor

from agd_viz import cost, datasets, nets, spectra
from agd_viz import data as data_mod
from agd_viz.optim import AGD, eval_mode, make_optimizer, step_size_tensor, train_mode
from agd_viz.optspec import OptSpec
from agd_viz.spec import DEVICES, RunSpec, SpecError
# The store's per-layer columns are the names of the probe's rows (the contract of train and store).
from agd_viz.store import LAYER_METRICS

__all__ = ["run", "Step", "Sync", "End", "Boundary", "BoundaryGrid", "Record", "LAYER_METRICS",
           "resolve_device", "load_dataset", "build_models", "boundary_grid"]

# Host copies happen at most this often (steps) and at least this often (seconds), so live charts
# refresh several times a second without a per-step sync.
SYNC_EVERY_STEPS = 64
SYNC_EVERY_S = 0.2

# What is packed on the device for one step of one optimiser, block by block, in this order; the
# host copy is sliced back by the same names (`_Pending.to_host`).
STEP_VALUES = ("loss", "acc", "eta", "G", "lr")  # every step (NaN where an optimiser has none)
EVAL_VALUES = ("train_loss", "train_acc", "test_loss", "test_acc")  # at an evaluation

# Decision boundaries (2-D classification sets, models small enough to evaluate on a grid often).
BOUNDARY_POINTS = 100  # grid points along the longer side of the plane
BOUNDARY_MARGIN = 0.15  # of the points' larger extent, on every side
BOUNDARY_MAX_PARAMS = 1_000_000

NAN = float("nan")


# -------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class Step:
    """The values of optimiser `opt` at step `step` (0 = at initialisation), `t` seconds after the
    run started. Minibatch `loss` and `acc`; AGD's `eta` and `G`, or another optimiser's step size
    `lr`; `train_*` / `test_*` at evaluations; `layers` ({name: one value per weight matrix}, in
    LAYER_METRICS order) where per-layer metrics were logged. NaN where not logged."""

    opt: int
    step: int
    t: float
    loss: float = NAN
    acc: float = NAN
    eta: float = NAN
    G: float = NAN
    lr: float = NAN
    train_loss: float = NAN
    train_acc: float = NAN
    test_loss: float = NAN
    test_acc: float = NAN
    layers: dict[str, list[float]] | None = None


@dataclass(frozen=True, slots=True)
class Sync:
    """Every value computed so far has been yielded: a natural point to write to a store."""


@dataclass(frozen=True, slots=True)
class End:
    """Optimiser `opt` stopped at `step`: status "finished", "diverged", "cancelled" (or, from the
    worker, "failed" / "interrupted"), an `error` sentence or None, and the run's `summary`
    (steps, elapsed_s, final_train_loss/acc, final_test_loss/acc, mean_eta, params, device)."""

    opt: int
    status: str
    step: int
    error: str | None
    summary: dict


@dataclass(frozen=True, eq=False)
class BoundaryGrid:
    """The plane a run's decision boundaries are drawn on: grid axes `x` (nx,) and `y` (ny,), the
    training points (n, 2) with their `labels` (n,), and the class names."""

    x: np.ndarray
    y: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Boundary:
    """Optimiser `opt`'s class probabilities softmax(f(x)) at every point of `grid` at `step`, as
    uint8 (0-255), shape (ny, nx, classes)."""

    opt: int
    step: int
    probs: np.ndarray
    grid: BoundaryGrid


Record = Union[Step, Sync, End, Boundary]


# -------------------------------------------------------------------------------------------------
# Setting up


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda if available, else mps, else cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("device 'cuda' was asked for but this machine has no usable CUDA GPU; use auto or cpu.")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SpecError("device 'mps' was asked for but this machine has no Apple GPU; use auto or cpu.")
    if name not in DEVICES:
        raise SpecError(f"device must be one of {', '.join(DEVICES)}, got {name!r}.")
    return torch.device(name)


def load_dataset(spec: RunSpec) -> data_mod.Dataset:
    try:
        return data_mod.load(spec.dataset, seed=spec.seed, **dict(spec.data_options))
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def build_models(spec: RunSpec, ds: data_mod.Dataset, device: torch.device) -> list[torch.nn.Module]:
    """One model per optimiser; models with the same init kind start from identical weights."""
    models = []
    for opt in spec.opt_specs:
        model = nets.build_model(spec.arch, ds.d_in, ds.d_out, spec.depth, spec.width, input_shape=ds.input_shape)
        gen = torch.Generator().manual_seed(spec.seed + 1)
        if spec.same_init or opt.init == "agd":
            nets.init_agd_model_(model, gen)
        else:
            nets.init_default_(model, gen)
        models.append(model.to(device))
    return models


def boundary_grid(points: np.ndarray, n: int = BOUNDARY_POINTS,
                  margin: float = BOUNDARY_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """Axes (x, y) of a grid of square cells over 2-D points with a margin: `n` points along the
    longer side (the charts draw x and y at one scale, so square cells fill the picture)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or not len(p):
        raise ValueError(f"expected (n, 2) points, got shape {p.shape}")
    lo, hi = p.min(axis=0), p.max(axis=0)
    span = max(float((hi - lo).max()), 1e-9)
    lo, hi = lo - margin * span, hi + margin * span
    cell = (1 + 2 * margin) * span / (n - 1)
    axes = []
    for a in range(2):
        k = max(2, int(math.ceil((hi[a] - lo[a]) / cell - 1e-9)) + 1)
        centre = (lo[a] + hi[a]) / 2
        axes.append(centre + (np.arange(k) - (k - 1) / 2) * cell)
    return axes[0], axes[1]


@dataclass(frozen=True)
class _Cadence:
    """Which steps evaluate, probe the layers and draw the boundary (`agd_viz.cost` decides how
    often); step 0 and the last step always evaluate and draw."""

    last: int
    eval_every: int
    layer_every: int  # 0: no per-layer metrics
    boundary_every: int  # 0: no boundary

    @classmethod
    def of(cls, spec: RunSpec, ds: data_mod.Dataset, grid_points: int = 0) -> "_Cadence":
        """`grid_points`: the boundary grid's size, 0 for a run without pictures."""
        n_eval = min(ds.x_train.shape[0], cost.EVAL_MAX) + ds.x_test.shape[0]
        layer_every = cost.resolved_layer_every(spec) if spec.metrics == "full" else 0
        boundary_every = cost.resolved_boundary_every(spec, grid_points) if grid_points else 0
        return cls(spec.steps, cost.resolved_eval_every(spec, n_eval), layer_every, boundary_every)

    def evaluates(self, step: int) -> bool:
        return step % self.eval_every == 0 or step == self.last

    def probes(self, step: int) -> bool:
        # Step 1 too: the first update's metrics are the ones a presenter points at.
        return bool(self.layer_every) and (step % self.layer_every == 0 or step == self.last or step == 1)

    def draws(self, step: int) -> bool:
        return bool(self.boundary_every) and (step % self.boundary_every == 0 or step == self.last)


class _Batches:
    """Minibatch indices in epochs of a seeded permutation: every optimiser sees the same order."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        self.n, self.b, self.device = n, min(batch_size, n), device
        self.gen = torch.Generator().manual_seed(seed + 2)
        self.perm, self.pos = None, n

    def next(self) -> torch.Tensor:
        if self.pos + self.b > self.n:
            perm = torch.randperm(self.n, generator=self.gen)
            if self.device.type == "cuda":  # pinned + non_blocking: no wait on the GPU's queue
                perm = perm.pin_memory().to(self.device, non_blocking=True)
            self.perm = perm.to(self.device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.b]
        self.pos += self.b
        return idx


# -------------------------------------------------------------------------------------------------
# Measuring


# Vectors per block of the spectral estimates (spectra.PowerIteration), measured along 1,000 steps
# at depth 8 x 256 (benchmarks/stable_rank.py). A gradient is new each step: one Lanczos step from
# a block of 12 (3 passes over it) kept its stable rank within 0.03%, where 8 needed two steps (5
# passes; one: up to 0.8% off); 10 costs less per probe and kept every probe of a 300-step run at
# depth 6 x 128 within 0.06% (tests/test_spectra.py). A weight is tracked from the last probe: 6
# kept it within 0.4% at the steps of cost.probe_iters, where 4 was up to 4% off under Adam.
WEIGHT_BLOCK = 6
GRADIENT_BLOCK = 10


class _LayerProbe:
    """Per-layer metrics of one model, computed with multi-tensor ops and no host sync."""

    def __init__(self, weights: list[torch.Tensor], layer_every: int = 1, update_is_gradient: bool = False):
        self.weights = weights
        # An update that is a multiple of its layer's gradient (AGD on matrices, plain SGD) has the
        # gradient's stable rank: no third spectral estimate per layer is needed for it.
        self.update_is_gradient = update_is_gradient
        self.prev = [w.detach().clone() for w in weights]
        # One estimator per kind, each with every layer in one chain of batched small ops: a
        # weight moves little between probes and is tracked from the last probe's block with few
        # steps, a gradient is a new matrix every step and needs more (cost.probe_iters).
        self.layer_every = layer_every
        self.w_power = spectra.PowerIteration(iters=cost.probe_iters(layer_every, "weights"), block=WEIGHT_BLOCK)
        self.g_power = spectra.PowerIteration(iters=cost.probe_iters(layer_every, "gradients"), block=GRADIENT_BLOCK)
        self.u_power = spectra.PowerIteration(iters=cost.probe_iters(layer_every, "gradients"), block=GRADIENT_BLOCK)
        self.probes = 0  # probes so far after init: step 1, then one every layer_every steps
        # sqrt(out/in) in channels for a conv kernel too: under AGD's init (each of the kh*kw slices
        # semi-orthogonal, scale sqrt(out/in)/sqrt(kh*kw)) the unfolded (out, in*kh*kw) matrix that
        # w_spec measures has spectral norm exactly sqrt(out/in) when out <= in.
        self.target = torch.tensor(
            [math.sqrt(w.shape[0] / w.shape[1]) for w in weights],
            device=weights[0].device,
        )

    def before_step(self):
        torch._foreach_copy_(self.prev, [w.detach() for w in self.weights])

    def after_step(self) -> torch.Tensor:
        """Returns a (len(LAYER_METRICS), L) tensor in the order of LAYER_METRICS."""
        ws = [w.detach() for w in self.weights]
        L = len(ws)
        zeros = [torch.zeros_like(w) for w in ws] if any(w.grad is None for w in self.weights) else None
        gs = [w.grad if w.grad is not None else zeros[i] for i, w in enumerate(self.weights)]
        w_fro = torch.stack(torch._foreach_norm(ws))
        g_fro = torch.stack(torch._foreach_norm(gs))
        # In place (prev becomes -ΔW; before_step refills it): a fresh tensor per layer would cost
        # page faults on the CPU as large as the subtraction itself.
        torch._foreach_sub_(self.prev, ws)
        d_fro = torch.stack(torch._foreach_norm(self.prev))
        # Which step this is, near enough for cost.probe_iters (the cadence probes step 1, then
        # every layer_every steps; training steps do not tell the probe their number).
        self.probes += 1
        step = 1 if self.probes == 1 else (self.probes - 1) * self.layer_every
        w_spec = self.w_power(ws, iters=cost.probe_iters(self.layer_every, "weights", step))
        g_spec = self.g_power(gs)
        # The update's own spectral norm too: its stable rank tells AGD's normalised gradient (the
        # gradient's) from Muon's orthogonalised one (far higher). An update is a new matrix each
        # step, like a gradient, so it is tracked as one.
        u_spec = None if self.update_is_gradient else self.u_power(self.prev)
        w_srank = spectra.stable_rank_from(w_fro, w_spec)
        g_srank = spectra.stable_rank_from(g_fro, g_spec)
        u_srank = g_srank if u_spec is None else spectra.stable_rank_from(d_fro, u_spec)
        rel = d_fro / w_fro.clamp_min(torch.finfo(w_fro.dtype).tiny)
        out = torch.stack([w_fro, w_spec, w_srank, w_spec / self.target, g_fro, g_srank, rel, u_srank])
        assert out.shape == (len(LAYER_METRICS), L)
        return out

    def at_init(self) -> torch.Tensor:
        """Weight metrics before the first step; gradient and update columns are NaN."""
        ws = [w.detach() for w in self.weights]
        w_fro = torch.stack(torch._foreach_norm(ws))
        w_spec = self.w_power(ws)
        nan = torch.full_like(w_fro, NAN)
        srank = spectra.stable_rank_from(w_fro, w_spec)
        return torch.stack([w_fro, w_spec, srank, w_spec / self.target, nan, nan, nan, nan])


@torch.no_grad()
def _evaluate(model, x, y, loss_fn, task, chunk: int = cost.EVAL_CHUNK,
              limit: int | None = cost.EVAL_MAX) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy over a split, as 0-d tensors: its first `limit` examples (None: all;
    a fixed prefix keeps evaluating the training split cheap on large datasets)."""
    n = x.shape[0] if limit is None else min(x.shape[0], limit)
    losses, accs, sizes = [], [], []
    for i in range(0, n, chunk):
        xb, yb = x[i : min(n, i + chunk)], y[i : min(n, i + chunk)]
        out = model(xb)
        losses.append(loss_fn(out, yb))
        accs.append(data_mod.accuracy(out, yb, task))
        sizes.append(xb.shape[0])
    # Python-float weights: a tensor built from a list would be a host-to-device copy, which
    # waits for the GPU's queue.
    loss = sum(v * (s / n) for v, s in zip(losses, sizes))
    acc = sum(v * (s / n) for v, s in zip(accs, sizes))
    return loss, acc


class _BoundaryProbe:
    """Class probabilities of a model over a fixed grid of the plane, quantised on the device."""

    def __init__(self, ds: data_mod.Dataset):
        gx, gy = boundary_grid(ds.raw_train)
        xx, yy = np.meshgrid(gx, gy)  # row-major over (y, x), as the charts read it
        self.inputs = ds.transform(np.stack([xx.ravel(), yy.ravel()], axis=1))
        self.shape = (len(gy), len(gx), ds.d_out)
        self.points = len(gx) * len(gy)
        self.grid = BoundaryGrid(gx, gy, np.asarray(ds.raw_train, dtype=np.float32),
                                 ds.y_train.cpu().numpy().astype(np.int64), tuple(ds.classes or ()))

    @classmethod
    def wanted(cls, spec: RunSpec, ds: data_mod.Dataset, models) -> bool:
        info = spec.data_info
        small = sum(p.numel() for p in models[0].parameters()) <= BOUNDARY_MAX_PARAMS
        return (info.input_kind == "2d" and info.task == "classification" and small
                and ds.raw_train is not None and ds.input_transform is not None)

    @torch.no_grad()
    def __call__(self, model) -> tuple[Tensor, Tensor]:
        """(uint8 probabilities (ny, nx, C), whether every output was finite), both on the device."""
        out = model(self.inputs)
        finite = torch.isfinite(out).all()
        probs = torch.softmax(out, dim=1).nan_to_num_(0.0).mul_(255).round_().to(torch.uint8)
        return probs.reshape(self.shape), finite


# -------------------------------------------------------------------------------------------------
# Values on their way to the host


@dataclass
class _Entry:
    """One step of one optimiser, still on the device: named blocks of values ("step": STEP_VALUES,
    "eval": EVAL_VALUES, "layers": (len(LAYER_METRICS), L), "finite": the boundary's check) and
    the boundary picture, if drawn."""

    step: int
    t: float
    blocks: dict[str, Tensor]
    probs: Tensor | None = None


@dataclass
class _HostEntry:
    step: int
    t: float
    values: dict[str, list[float]]
    probs: np.ndarray | None


class _Pending:
    """Every optimiser's values since the last host copy, copied in one go by `to_host`: all float
    blocks concatenated into one tensor (one copy), the boundary pictures stacked into another."""

    def __init__(self, n_opts: int):
        self.entries: list[list[_Entry]] = [[] for _ in range(n_opts)]
        self.steps = 0  # steps waiting (each holds an entry per optimiser then training)

    def add(self, opt: int, entry: _Entry) -> None:
        self.entries[opt].append(entry)

    def to_host(self) -> list[list[_HostEntry]]:
        """The entries with their values on the host, per optimiser; empties the buffer."""
        entries = [e for per_opt in self.entries for e in per_opt]
        flat = [v.reshape(-1).float() for e in entries for v in e.blocks.values()]
        host = torch.cat(flat).cpu().tolist() if flat else []
        frames = [e.probs for e in entries if e.probs is not None]
        pictures = iter(torch.stack(frames).cpu().numpy()) if frames else iter(())
        out: list[list[_HostEntry]] = []
        pos = 0
        for per_opt in self.entries:
            rows = []
            for e in per_opt:
                values = {}
                for name, v in e.blocks.items():
                    values[name] = host[pos : pos + v.numel()]
                    pos += v.numel()
                rows.append(_HostEntry(e.step, e.t, values, next(pictures) if e.probs is not None else None))
            out.append(rows)
            per_opt.clear()
        self.steps = 0
        return out


# -------------------------------------------------------------------------------------------------
# One optimiser


class _Trainer:
    """One optimiser of the spec: its model, optimiser and layer probe, and what its End record
    will say (last step, last evaluation, mean η)."""

    def __init__(self, index: int, opt: OptSpec, model: torch.nn.Module, layer_every: int):
        self.index, self.opt, self.model = index, opt, model
        self.optimizer = make_optimizer(opt, model.parameters())
        params = list(model.parameters())
        self.probe = _LayerProbe(params, layer_every, _update_is_gradient(opt, params)) if layer_every else None
        self.active = True
        self.last_step = 0
        self.last_eval: dict[str, float] = {}
        self.eta_sum, self.eta_count = 0.0, 0

    def evaluate(self, ds: data_mod.Dataset, loss_fn) -> Tensor:
        """EVAL_VALUES as one tensor."""
        with eval_mode(self.optimizer):  # schedule-free: evaluate the averaged iterate x, not y
            tl, ta = _evaluate(self.model, ds.x_train, ds.y_train, loss_fn, ds.task)
            # The whole test split, as the paper reports (10,000 images for CIFAR-10 and MNIST).
            vl, va = _evaluate(self.model, ds.x_test, ds.y_test, loss_fn, ds.task, limit=None)
        return torch.stack([tl, ta, vl, va])

    def draw(self, boundary: _BoundaryProbe) -> tuple[Tensor, Tensor]:
        with eval_mode(self.optimizer):  # schedule-free: draw the averaged iterate
            return boundary(self.model)

    def train_step(self, xb, yb, loss_fn, task: str, nan: Tensor, probe: bool) -> dict[str, Tensor]:
        """One optimiser step on (xb, yb); the "step" block, and "layers" if `probe`."""
        if probe:
            self.probe.before_step()
        # set_to_none: backward then stores each gradient as computed, instead of zeroing the old
        # one and adding to it (two passes per step, ~7% of a step at width 256).
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        if isinstance(self.optimizer, AGD):
            eta, G = self.optimizer.step_tensors()
            lr = nan
        else:
            # Read before stepping: Prodigy and D-Adapt move d inside step(), after applying it.
            lr = step_size_tensor(self.optimizer, nan.device)
            self.optimizer.step()
            eta = G = nan
        acc = data_mod.accuracy(out.detach(), yb, task)
        blocks = {"step": torch.stack([loss.detach(), acc, eta, G, lr])}
        if probe:
            blocks["layers"] = self.probe.after_step()
        return blocks

    def record(self, row: _HostEntry) -> Step:
        """The Step of a host row; notes it for the summary."""
        fields = dict(zip(STEP_VALUES, row.values["step"]))
        if "eval" in row.values:
            evals = dict(zip(EVAL_VALUES, row.values["eval"]))
            fields.update(evals)
            self.last_eval = evals
        layers = None
        if "layers" in row.values:
            flat = row.values["layers"]
            L = len(flat) // len(LAYER_METRICS)
            layers = {name: flat[k * L : (k + 1) * L] for k, name in enumerate(LAYER_METRICS)}
        if self.opt.is_agd and math.isfinite(fields["eta"]):
            self.eta_sum += fields["eta"]
            self.eta_count += 1
        self.last_step = row.step
        return Step(self.index, row.step, row.t, **fields, layers=layers)

    def end(self, status: str, elapsed: float, params: int, device: torch.device, error: str | None = None) -> End:
        self.active = False
        summary = {
            "steps": self.last_step,
            "elapsed_s": round(elapsed, 4),
            "final_train_loss": self.last_eval.get("train_loss"),
            "final_train_acc": self.last_eval.get("train_acc"),
            "final_test_loss": self.last_eval.get("test_loss"),
            "final_test_acc": self.last_eval.get("test_acc"),
            "mean_eta": (self.eta_sum / self.eta_count) if self.eta_count else None,
            "params": params,
            "device": str(device),
        }
        return End(self.index, status, self.last_step, error, summary)


def _update_is_gradient(opt: OptSpec, params: list[Tensor]) -> bool:
    """Whether every step of `opt` moves each parameter along its own gradient: AGD on 2-D weights
    (normalised per matrix; a conv kernel is normalised per slice, which is not), plain SGD."""
    if opt.is_agd:
        return all(p.dim() == 2 for p in params)
    kw = opt.kwargs
    return opt.name == "sgd" and not kw.get("momentum") and not kw.get("weight_decay")


def _diverged(rec: Step, evaluated: bool) -> bool:
    """A non-finite minibatch loss after step 0, or a non-finite loss at an evaluation."""
    return (rec.step > 0 and not math.isfinite(rec.loss)) or (evaluated and not math.isfinite(rec.train_loss))


# -------------------------------------------------------------------------------------------------
# The run


class _Run:
    """The state `run` shares between its pieces: data, trainers, cadence, pending values, clock."""

    def __init__(self, spec: RunSpec):
        spec.validate()
        torch.manual_seed(spec.seed)
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.ds = load_dataset(spec).to(self.device)
        self.loss_fn = data_mod.loss_fn(self.ds.task, spec.loss)
        self.augmentation = datasets.AUGMENTATIONS.get(spec.dataset) if spec.augment else None
        if self.augmentation is not None:
            self.augment_gen = torch.Generator(device=self.device).manual_seed(spec.seed + 3)
        models = build_models(spec, self.ds, self.device)
        self.params = sum(p.numel() for p in models[0].parameters())
        self.boundary = _BoundaryProbe(self.ds) if _BoundaryProbe.wanted(spec, self.ds, models) else None
        self.cadence = _Cadence.of(spec, self.ds, self.boundary.points if self.boundary else 0)
        self.trainers = [_Trainer(i, o, m, self.cadence.layer_every)
                         for i, (o, m) in enumerate(zip(spec.opt_specs, models))]
        self.batches = _Batches(self.ds.n_train, spec.batch_size, spec.seed, self.device)
        self.pending = _Pending(len(self.trainers))
        self.nan = torch.tensor(NAN, device=self.device)
        self.start = self.last_sync = time.perf_counter()

    def active(self) -> list[_Trainer]:
        return [tr for tr in self.trainers if tr.active]

    def end(self, tr: _Trainer, status: str, error: str | None = None) -> End:
        return tr.end(status, time.perf_counter() - self.start, self.params, self.device, error)

    def measure(self, tr: _Trainer, step: int, t: float, blocks: dict[str, Tensor]) -> None:
        """Add the step's evaluation and picture, where due, and queue the step for the host."""
        if self.cadence.evaluates(step):
            blocks["eval"] = tr.evaluate(self.ds, self.loss_fn)
        probs = None
        if self.cadence.draws(step):
            probs, blocks["finite"] = tr.draw(self.boundary)
        self.pending.add(tr.index, _Entry(step, t, blocks, probs))

    def at_init(self) -> None:
        """Step 0: the state at initialisation, so charts start where training starts."""
        nan5 = self.nan.expand(len(STEP_VALUES))
        for tr in self.trainers:
            blocks = {"step": nan5}
            if tr.probe is not None:
                blocks["layers"] = tr.probe.at_init()
            self.measure(tr, 0, 0.0, blocks)

    def train_step(self, step: int, trainers: list[_Trainer]) -> None:
        idx = self.batches.next()
        xb, yb = self.ds.x_train[idx], self.ds.y_train[idx]
        if self.augmentation is not None:  # once per batch: every optimiser sees the same images
            xb = data_mod.augment(xb, self.ds.input_shape, self.augmentation.pad, self.augmentation.flip,
                                  self.augment_gen)
        t = time.perf_counter() - self.start
        probe = self.cadence.probes(step)
        for tr in trainers:
            blocks = tr.train_step(xb, yb, self.loss_fn, self.ds.task, self.nan, probe)
            self.measure(tr, step, t, blocks)
        self.pending.steps += 1

    def sync_due(self, step: int) -> bool:
        now = time.perf_counter()
        # Step 1 too: the first loss reaches a live chart at once, not a sync period later.
        due = (step == self.spec.steps or step == 1 or self.pending.steps >= SYNC_EVERY_STEPS
               or now - self.last_sync >= SYNC_EVERY_S)
        if due:
            self.last_sync = now
        return due

    def flush(self) -> Iterator[Record]:
        """Copy every pending value to the host in one go and turn them into records. Values after
        an optimiser's divergence are noise: dropped."""
        for tr, rows in zip(self.trainers, self.pending.to_host()):
            for row in rows:
                if not tr.active:
                    break
                rec = tr.record(row)
                yield rec
                if row.probs is not None and row.values["finite"][0]:
                    yield Boundary(tr.index, row.step, row.probs, self.boundary.grid)
                if _diverged(rec, "eval" in row.values):
                    yield self.end(tr, "diverged", f"loss became non-finite at step {rec.step}")
        yield Sync()


def run(spec: RunSpec, stop: Callable[[int], bool] | None = None) -> Iterator[Record]:
    """Train every optimiser of `spec` side by side and yield records: `Step`s, a `Sync` after each
    batch of host copies, `Boundary` pictures (2-D classification sets, small models), and one
    `End` per optimiser. `stop(i)` is polled at every sync; True ends optimiser i "cancelled". A
    non-finite loss ends that optimiser "diverged"; the others carry on."""
    r = _Run(spec)
    r.at_init()
    yield from r.flush()
    for tr in r.trainers:
        train_mode(tr.optimizer)  # schedule-free optimisers refuse to step in eval mode
    training = r.trainers
    for step in range(1, spec.steps + 1):
        r.train_step(step, training)
        if r.sync_due(step):
            yield from r.flush()
            for tr in r.active():
                if stop is not None and stop(tr.index):
                    yield r.end(tr, "cancelled")
            training = r.active()  # those that diverged or were cancelled stop here
            if not training:
                break
    for tr in r.active():
        yield r.end(tr, "finished")
