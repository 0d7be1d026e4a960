"""The training loop: a `RunSpec` in, a stream of metric records out.

It knows no UI and no database. Several optimisers in one spec are trained side by side: one model
each, the same initial weights where their init kinds agree, the same minibatches in the same order.

Cost discipline (DESIGN.md, "What is measured each step"): per-step values stay on the device as
tensors and are copied to the host in one batch every few steps, so a GPU run does not stall on a
sync per step; per-layer metrics use multi-tensor ops and a warm-started power iteration.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterator

import torch

from agd_viz import data as data_mod
from agd_viz import nets, spectra
from agd_viz.optim import AGD, eval_mode, make_optimizer, step_size_tensor, train_mode
# The spec, its ranges and its checks live in agd_viz.spec (no torch there, so pages can check a
# form without it); re-exported so `from agd_viz.train import RunSpec` keeps working.
from agd_viz.spec import ARCHS, DEVICES, LIMITS, METRICS_MODES, RunSpec, SpecError  # noqa: F401

SCALARS = ("loss", "acc", "train_loss", "train_acc", "test_loss", "test_acc", "eta", "G", "lr")
LAYER_METRICS = ("w_fro", "w_spec", "w_srank", "w_spec_scaled", "g_fro", "g_srank", "rel_update")

# Host copies happen at most this often (steps) and at least this often (seconds), so live charts
# refresh several times a second without a per-step sync.
SYNC_EVERY_STEPS = 64
SYNC_EVERY_S = 0.2

# The automatic cadences keep the cost of per-layer metrics and of evaluations within these shares
# of the training time (benchmarks/instrumentation.py measures the total; docs/performance.md).
LAYER_BUDGET = 0.05
EVAL_BUDGET = 0.04


def resolved_eval_every(spec: RunSpec, n_eval: int | None = None) -> int:
    """`eval_every`, else about 25 evaluations per run but none more often than keeps their
    cost within EVAL_BUDGET: the forward pass over the `n_eval` evaluated examples costs about
    n_eval / (3 batch_size) training steps (a forward pass is a third of forward-backward).
    With metrics="none" the automatic cadence evaluates only at step 0 and the last step,
    which is all a run's summary (and a sweep's heatmap) needs."""
    if spec.eval_every:
        return spec.eval_every
    if spec.metrics == "none":
        return spec.steps
    every = max(1, spec.steps // 25)
    if n_eval:
        every = max(every, math.ceil(n_eval / (3 * spec.batch_size) / EVAL_BUDGET))
    return every


def resolved_layer_every(spec: RunSpec) -> int:
    """`layer_every`, else the smallest gap at which per-layer metrics cost at most
    LAYER_BUDGET of the training time (and at most ~1000 records per run). One probe costs
    about 1 + 128/batch_size training steps on a CPU: its spectral estimates read every weight
    and gradient matrix 10-14 times (memory-bound, like a step's forward-backward over
    ~128 examples) plus ~2 ms of small ops (measured at depth 8-32, width 128-1024, batch
    32-512). Steps 1 and the last are always logged."""
    if spec.layer_every:
        return spec.layer_every
    probe_steps = 1 + 128 / spec.batch_size
    return max(1, spec.steps // 1000, math.ceil(probe_steps / LAYER_BUDGET))


def probe_iters(layer_every: int) -> int:
    """Block Lanczos steps per probe call. Called every few steps, the warm start is close and
    the default keeps stable ranks within ~0.01%; tens of steps apart it can be stale (Adam moves
    every weight by about lr per step, so early in a run the top singular direction may be new),
    where one step more brings the worst error along a 1,000-step run from ~0.8% to well under 1%
    (benchmarks/stable_rank.py)."""
    return spectra.DEFAULT_ITERS if layer_every < 10 else spectra.DEFAULT_ITERS + 1


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


class _LayerProbe:
    """Per-layer metrics of one model, computed with multi-tensor ops and no host sync."""

    def __init__(self, weights: list[torch.Tensor], layer_every: int = 1):
        self.weights = weights
        self.prev = [w.detach().clone() for w in weights]
        # One estimator for weights and gradients (positions 0..L-1 and L..2L-1): a weight and a
        # gradient of equal shape share one batched block Lanczos call, which halves the calls.
        self.power = spectra.PowerIteration(iters=probe_iters(layer_every))
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
        """Returns a (7, L) tensor in the order of LAYER_METRICS."""
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
        spec = self.power([spectra.as_matrix(w) for w in ws] + [spectra.as_matrix(g) for g in gs])
        w_spec, g_spec = spec[:L], spec[L:]
        w_srank = spectra.stable_rank_from(w_fro, w_spec)
        g_srank = spectra.stable_rank_from(g_fro, g_spec)
        rel = d_fro / w_fro.clamp_min(torch.finfo(w_fro.dtype).tiny)
        out = torch.stack([w_fro, w_spec, w_srank, w_spec / self.target, g_fro, g_srank, rel])
        assert out.shape == (7, L)
        return out

    def at_init(self) -> torch.Tensor:
        """Weight metrics before the first step; gradient and update columns are NaN."""
        ws = [w.detach() for w in self.weights]
        w_fro = torch.stack(torch._foreach_norm(ws))
        w_spec = self.power([spectra.as_matrix(w) for w in ws])
        nan = torch.full_like(w_fro, float("nan"))
        srank = spectra.stable_rank_from(w_fro, w_spec)
        return torch.stack([w_fro, w_spec, srank, w_spec / self.target, nan, nan, nan])


EVAL_MAX = 8192  # examples evaluated per split


@torch.no_grad()
def _evaluate(model, x, y, loss_fn, task, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy over (a capped subset of) a split, as 0-d tensors."""
    n = min(x.shape[0], EVAL_MAX)  # a fixed prefix keeps evaluation cheap on large datasets
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


def run(spec: RunSpec, stop: Callable[[int], bool] | None = None,
        snapshot: Callable[[int, int, torch.nn.Module], None] | None = None) -> Iterator[dict]:
    """Train every optimiser of `spec` side by side and yield metric records.

    Records: {"type": "step", "opt": i, "step": k, "t": s, <scalars>, ["layers": {...}]},
    {"type": "sync"} after each batch of host copies (a natural point to write to a store), and one
    {"type": "end", "opt": i, "status": ..., "step": k, "error": ..., "summary": {...}} per optimiser.
    `stop(i)` is polled at every sync; returning True ends optimiser i with status "cancelled".
    `snapshot(i, step, model)`, if given, is called after every sync for each optimiser still
    training (the caller decides how often to act; the worker saves small 2-D models with it).
    A non-finite loss ends that optimiser with status "diverged"; the others carry on.
    """
    spec.validate()
    torch.manual_seed(spec.seed)
    device = resolve_device(spec.device)
    ds = load_dataset(spec).to(device)
    loss_fn = data_mod.loss_fn(ds.task)
    models = build_models(spec, ds, device)
    opt_specs = spec.opt_specs
    optimizers = [make_optimizer(o, m.parameters()) for o, m in zip(opt_specs, models)]
    weights = [[p for p in m.parameters()] for m in models]
    full = spec.metrics == "full"
    n_eval = min(ds.x_train.shape[0], EVAL_MAX) + min(ds.x_test.shape[0], EVAL_MAX)
    eval_every, layer_every = spec.resolved_eval_every(n_eval), spec.resolved_layer_every()
    probes = [_LayerProbe(w, layer_every) for w in weights] if full else [None] * len(models)
    batches = _Batches(ds.n_train, spec.batch_size, spec.seed, device)
    n_params = sum(p.numel() for p in models[0].parameters())

    active = list(range(len(models)))
    last_eval: list[dict] = [{} for _ in models]
    last_step = [0] * len(models)
    eta_sum = [0.0] * len(models)
    eta_count = [0] * len(models)
    nan = torch.tensor(float("nan"), device=device)
    # pending[i]: list of (step, t, scalars tensor, eval tensor or None, layers tensor or None)
    pending: list[list[tuple]] = [[] for _ in models]
    start = time.perf_counter()
    last_sync = start

    def evaluate(i):
        m = models[i]
        with eval_mode(optimizers[i]):  # schedule-free: evaluate the averaged iterate x, not y
            tl, ta = _evaluate(m, ds.x_train, ds.y_train, loss_fn, ds.task)
            vl, va = _evaluate(m, ds.x_test, ds.y_test, loss_fn, ds.task)
        return torch.stack([tl, ta, vl, va])

    def end_record(i, status, error=None):
        summary = {
            "steps": last_step[i],
            "elapsed_s": round(time.perf_counter() - start, 4),
            "final_train_loss": last_eval[i].get("train_loss"),
            "final_train_acc": last_eval[i].get("train_acc"),
            "final_test_loss": last_eval[i].get("test_loss"),
            "final_test_acc": last_eval[i].get("test_acc"),
            "mean_eta": (eta_sum[i] / eta_count[i]) if eta_count[i] else None,
            "params": n_params,
            "device": str(device),
        }
        return {"type": "end", "opt": i, "status": status, "step": last_step[i], "error": error, "summary": summary}

    def flush() -> Iterator[dict]:
        """Copy every pending value to the host in one go and turn them into records."""
        tensors = []
        for rows in pending:
            for _, _, sc, ev, ly in rows:
                tensors.append(sc)
                if ev is not None:
                    tensors.append(ev)
                if ly is not None:
                    tensors.append(ly.flatten())
        host = torch.cat([t.reshape(-1).float() for t in tensors]).cpu().tolist() if tensors else []
        pos = 0
        for i, rows in enumerate(pending):
            diverged = False
            for step, t, sc, ev, ly in rows:
                loss, acc, eta, G, lr = host[pos : pos + 5]
                pos += 5
                rec = {"type": "step", "opt": i, "step": step, "t": t, "loss": loss, "acc": acc}
                if opt_specs[i].is_agd:
                    rec["eta"], rec["G"] = eta, G
                else:
                    rec["lr"] = lr
                if ev is not None:
                    ev_rec = dict(zip(("train_loss", "train_acc", "test_loss", "test_acc"), host[pos : pos + 4]))
                    pos += 4
                    rec.update(ev_rec)
                if ly is not None:
                    n = ly.numel()
                    flat = host[pos : pos + n]
                    pos += n
                    L = n // len(LAYER_METRICS)
                    rec["layers"] = {name: flat[k * L : (k + 1) * L] for k, name in enumerate(LAYER_METRICS)}
                if diverged:
                    continue  # values after the divergence are noise; keep the offsets moving only
                if ev is not None:
                    last_eval[i] = ev_rec
                if opt_specs[i].is_agd and math.isfinite(eta):
                    eta_sum[i] += eta
                    eta_count[i] += 1
                last_step[i] = step
                yield rec
                bad = step > 0 and not math.isfinite(loss)
                bad = bad or (ev is not None and not math.isfinite(ev_rec["train_loss"]))
                if bad and i in active:
                    diverged = True
                    active.remove(i)
                    yield end_record(i, "diverged", f"loss became non-finite at step {step}")
            rows.clear()
        yield {"type": "sync"}

    def take_snapshots(step):
        if snapshot is not None:
            for i in active:
                with eval_mode(optimizers[i]):  # schedule-free: save the averaged iterate
                    snapshot(i, step, models[i])

    # Step 0: the state at initialisation, so charts start where training starts.
    for i in active:
        ly = probes[i].at_init() if full else None
        sc = torch.stack([nan, nan, nan, nan, nan])
        pending[i].append((0, 0.0, sc, evaluate(i), ly))
    yield from flush()
    take_snapshots(0)

    for opt in optimizers:
        train_mode(opt)  # schedule-free optimisers refuse to step in eval mode
    for step in range(1, spec.steps + 1):
        if not active:
            break
        idx = batches.next()
        xb, yb = ds.x_train[idx], ds.y_train[idx]
        t = time.perf_counter() - start
        for i in active:
            model, opt = models[i], optimizers[i]
            log_layers = full and (step % layer_every == 0 or step == spec.steps or step == 1)
            if log_layers:
                probes[i].before_step()
            # set_to_none: backward then stores each gradient as computed, instead of zeroing
            # the old one and adding to it (two passes per step, ~7% of a step at width 256).
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            if isinstance(opt, AGD):
                eta, G = opt.step_tensors()
                lr = nan
            else:
                # Read before stepping: Prodigy and D-Adapt move d inside step(), after applying it.
                lr = step_size_tensor(opt, device)
                opt.step()
                eta = G = nan
            acc = data_mod.accuracy(out.detach(), yb, ds.task)
            sc = torch.stack([loss.detach(), acc, eta, G, lr])
            ev = evaluate(i) if (step % eval_every == 0 or step == spec.steps) else None
            ly = probes[i].after_step() if log_layers else None
            pending[i].append((step, t, sc, ev, ly))
        now = time.perf_counter()
        # Step 1 too: the first loss reaches a live chart at once, not a sync period later.
        if (step == spec.steps or step == 1 or len(pending[active[0]]) >= SYNC_EVERY_STEPS
                or now - last_sync >= SYNC_EVERY_S):
            last_sync = now
            yield from flush()
            take_snapshots(step)
            if stop is not None:
                for i in list(active):
                    if stop(i):
                        active.remove(i)
                        yield end_record(i, "cancelled")

    for i in list(active):
        yield end_record(i, "finished")
