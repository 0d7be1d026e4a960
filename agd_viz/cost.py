"""What a run will cost, before it runs: memory, time, and how often it logs. One model of each,
shared by the command line, the job manager and every page (no torch here).

Fields are read from a `RunSpec` or from a mapping of its fields (a form's), so a page can cost a
form on every rerun.

Memory (`estimate_memory_bytes`). A run holds, in float32 (4 bytes per number):
    weights P, gradients P, optimiser state s·P (AGD 0, SGD 0 or 1 with momentum, Adam/AdamW 2,
    ...: `optspec`), a copy of the weights P for the per-layer relative update (metrics "full"),
    about 2P more of temporaries while the update is computed (multi-tensor ops build whole new
    lists), activations ≈ ACTIVATION_FACTOR · batch · Σ_l n_l (n_l: numbers out of layer l per
    example; the forward pass keeps each layer's input, output and activation for the backward
    pass, which builds as many gradients again), and one evaluation chunk of EVAL_CHUNK examples
    through the widest layer,
where P = Σ_k d_k·d_{k−1} (a conv layer: out·in·3·3). The optimisers of one spec train side by
side, one model each, so the spec needs n_opt times a run, plus the dataset held on the device
once. Python and torch themselves (a few hundred MB per worker) are not counted: the budget is
about what the user's choice of network adds. Checked against the peak resident memory of real
CPU runs (tests/test_spec.py): for networks of a few hundred MB, the estimate lies within 0.8-1.2x
of what a run adds.

Time (`run_seconds`). One optimiser-step on a batch of B costs about 6·B·M floating-point
operations (M the network's multiply-adds per example: 2 for the forward pass, 4 for the
backward pass), each evaluation 2·N·M over the N examples evaluated. Small networks are
dominated by fixed costs instead: Python and kernel dispatch, about STEP_S per step plus LAYER_S
per layer (twice that with per-layer metrics). So

    t_run ≈ steps·(STEP_S + LAYER_S·L·m) + FLOPs / R,

with R the speed of this machine on small matrix products, timed once per process
(`matmul_flops_per_s`) and taken at MATMUL_EFFICIENCY of it. The constants were measured on a
2-core laptop-class CPU. Where the run store holds finished runs, their measured times correct the
model (`calibrate`: the median of measured/modelled time over the most recent ones), which also
adapts it to a GPU. Each cell of a sweep the app runs is a worker process of its own, which adds
its start-up (a Python process importing torch, reading the data, building the networks, warming
up its kernels): STARTUP_S until the store holds finished sweeps, then what they measured
(`Speed.cell_s`: per cell, wall time × workers at once, less training, as a median over the most
recent sweeps). On a busy 2-core machine it was 4-10 s a cell while the cell trained for 1 s,
which is how a sweep estimated at 1 min 15 s once took 237 s (benchmarks/sweep_estimate.py).

Cadence. Per-layer metrics and evaluations are logged as often as their cost allows
(`resolved_layer_every`, `resolved_eval_every`), within LAYER_BUDGET and EVAL_BUDGET of the
training time (benchmarks/instrumentation.py measures it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agd_viz import datasets, fmt, optspec, shapes

__all__ = [
    "estimate_params", "estimate_memory_bytes", "layer_sizes", "network_macs", "run_flops",
    "run_seconds", "Speed", "calibrate", "matmul_flops_per_s", "resolved_eval_every",
    "resolved_layer_every", "resolved_boundary_every", "probe_iters", "probe_steps", "STARTUP_S", "metric_bytes",
    "cell_overhead",
]

FLOAT_BYTES = 4
ACTIVATION_FACTOR = 6
TRANSIENT = 2  # update temporaries (multi-tensor norms, Adam's denominators), in units of P
EVAL_CHUNK = 4096  # examples per forward pass of an evaluation (train reads it)
EVAL_MAX = 8192  # training examples evaluated (train reads it); the test split is evaluated whole

# Time model (module docstring).
STEP_S = 2.0e-3
LAYER_S = 1.5e-4
STARTUP_S = 4.0  # a fresh worker on a 2-core machine: ~2 s to start_run, ~1.6 s of warm-up
MATMUL_EFFICIENCY = 0.5
FALLBACK_FLOPS = 1e10
CALIBRATION_RUNS = 20  # recent finished runs the correction is the median over
CALIBRATION_SWEEPS = 5  # recent sweeps the start-up per cell is the median over

# The automatic cadences keep the cost of per-layer metrics and of evaluations within these shares
# of the training time.
LAYER_BUDGET = 0.05
EVAL_BUDGET = 0.04
MAX_LAYER_RECORDS = 1000  # per-layer records per run at most (a long run thins them out)
LAYER_COLUMNS = 100  # per-layer records of a run of up to 2,000 steps, at least (resolved_layer_every)
LAYER_MIN_EVERY = 5  # the smallest automatic gap between them
PROBE_FIXED_STEPS = 0.2  # a probe's cost in training steps: this + PROBE_BATCH_STEPS · 128 / batch
PROBE_BATCH_STEPS = 0.3
PROBE_ITERS = 2  # = spectra.DEFAULT_ITERS
WEIGHT_SETTLE_STEPS = 50  # before this step weights are probed as closely as gradients (probe_iters)
# Decision-boundary pictures of 2-D sets (a forward pass over a grid): the Live page's replay steps
# through them. A 2-D run trains in a second or two, so even half its training time in pictures
# (one every ~50 steps for the spirals preset, 17 where 0.10 gave 5) is little beside its worker's
# start-up.
BOUNDARY_BUDGET = 0.5
BOUNDARY_FRAMES = 50  # pictures per run at most, about (plus the first and the last)


def _get(spec: Any, key: str, default=None):
    if isinstance(spec, Mapping):
        return spec.get(key, default)
    return getattr(spec, key, default)


def _optimizers(spec: Any) -> tuple[str, ...]:
    opts = _get(spec, "optimizers", ("agd",)) or ("agd",)
    return (opts,) if isinstance(opts, str) else tuple(opts)


# -------------------------------------------------------------------------------------------------
# The network


def layer_sizes(spec: Any) -> tuple[list[int], list[int], datasets.DataShape]:
    """(weights per layer, numbers out of each layer per example, the dataset's shape)."""
    shape = datasets.shape(_get(spec, "dataset", "digits"), _get(spec, "data_options", ()) or ())
    depth, width = int(_get(spec, "depth", 8)), int(_get(spec, "width", 128))
    if _get(spec, "arch", "mlp") == "cnn" and shape.input_shape is not None:
        c, h, w = shape.input_shape
        n_conv = max(depth - 1, 1)
        weights = [c * width * 9] + [width * width * 9] * (n_conv - 1) + [width * shape.d_out]
        pools = shapes.pools_before(n_conv, min(h, w))
        outs = [width * (h >> p) * (w >> p) for p in pools] + [shape.d_out]
        return weights, outs, shape
    dims = shapes.layer_dims(shape.d_in, shape.d_out, depth, width)
    return [a * b for a, b in dims], [a for a, _ in dims], shape


def estimate_params(spec: Any) -> int:
    """Parameters of one model of `spec`: Σ_k d_k·d_{k−1} (bias-free; a 3×3 conv layer out·in·9)."""
    weights, _, _ = layer_sizes(spec)
    return int(sum(weights))


def network_macs(spec: Any) -> float:
    """Multiply-adds of one forward pass per example: Σ_k d_k·d_{k−1} for an MLP; a conv layer
    counts once per output position."""
    weights, outs, _ = layer_sizes(spec)
    if _get(spec, "arch", "mlp") != "cnn":
        return float(sum(weights))
    width = max(int(_get(spec, "width", 128)), 1)
    conv = sum(w * (o / width) for w, o in zip(weights[:-1], outs[:-1]))
    return float(conv + weights[-1])


# -------------------------------------------------------------------------------------------------
# Memory


def estimate_memory_bytes(spec: Any) -> int:
    """Bytes `spec` needs on its device: every optimiser's model, gradients, optimiser state and
    activations, plus the dataset (module docstring)."""
    weights, outs, shape = layer_sizes(spec)
    params = sum(weights)
    batch = min(int(_get(spec, "batch_size", 128)), shape.n_train)
    probe = 1 if _get(spec, "metrics", "full") == "full" else 0
    activations = ACTIVATION_FACTOR * batch * (sum(outs) + shape.d_in)
    evaluation = 2 * min(EVAL_CHUNK, max(shape.n_train, shape.n_test)) * (max(outs) + shape.d_in)
    total = 0
    for opt in _optimizers(spec):
        numbers = params * (2 + TRANSIENT + probe + optspec.state_buffers(opt)) + activations + evaluation
        total += FLOAT_BYTES * numbers
    data = shape.n * shape.d_in * FLOAT_BYTES + shape.n * max(shape.d_out * FLOAT_BYTES, 8)
    return int(total + data)


# -------------------------------------------------------------------------------------------------
# Cadence of evaluations and per-layer metrics


def resolved_eval_every(spec: Any, n_eval: int | None = None) -> int:
    """`eval_every`, else about 25 evaluations per run but none more often than keeps their
    cost within EVAL_BUDGET: the forward pass over the `n_eval` evaluated examples costs about
    n_eval / (3 batch_size) training steps (a forward pass is a third of forward-backward).
    With metrics="none" the automatic cadence evaluates only at step 0 and the last step,
    which is all a run's summary (and a sweep's heatmap) needs."""
    steps, batch = int(_get(spec, "steps", 300)), int(_get(spec, "batch_size", 128))
    if _get(spec, "eval_every", 0):
        return int(_get(spec, "eval_every"))
    if _get(spec, "metrics", "full") == "none":
        return steps
    if n_eval is None:
        shape = datasets.shape(_get(spec, "dataset", "digits"), _get(spec, "data_options", ()) or ())
        n_eval = min(shape.n_train, EVAL_MAX) + shape.n_test
    every = max(1, steps // 25)
    if n_eval:
        every = max(every, math.ceil(n_eval / (3 * batch) / EVAL_BUDGET))
    return every


def resolved_layer_every(spec: Any) -> int:
    """`layer_every`, else the gap between per-layer records: as small as LAYER_BUDGET of the
    training time allows, and small enough for the layer charts to have resolution, whatever it
    costs, in runs short enough for that to cost seconds: at least LAYER_COLUMNS columns by step
    2,000 (a gap of steps / LAYER_COLUMNS), but no gap under LAYER_MIN_EVERY (60 columns for a
    300-step run); never more than MAX_LAYER_RECORDS records. Steps 0, 1 and the last are always
    logged.

    One probe (norms, the update's norm, warm block-Lanczos estimates of every weight's and
    gradient's spectral norm: train._LayerProbe) costs about PROBE_FIXED_STEPS + PROBE_BATCH_STEPS
    · 128 / batch_size training steps on a CPU: its products with thin blocks do a fixed amount of
    work per matrix where a step does work in proportion to the batch, and its small ops and norms
    cost a share of a step that hardly depends on the network (benchmarks/instrumentation.py,
    benchmarks/stable_rank.py)."""
    if _get(spec, "layer_every", 0):
        return int(_get(spec, "layer_every"))
    steps, batch = int(_get(spec, "steps", 300)), int(_get(spec, "batch_size", 128))
    budget = math.ceil(probe_steps(batch) / LAYER_BUDGET)
    resolution = max(LAYER_MIN_EVERY, math.ceil(steps / LAYER_COLUMNS))
    return max(1, steps // MAX_LAYER_RECORDS, min(budget, resolution))


def probe_steps(batch_size: int) -> float:
    """What one per-layer probe costs, in training steps at `batch_size` (resolved_layer_every)."""
    return PROBE_FIXED_STEPS + PROBE_BATCH_STEPS * 128 / max(1, int(batch_size))


def resolved_boundary_every(spec: Any, grid_points: int) -> int:
    """Steps between decision-boundary pictures of a 2-D run: about BOUNDARY_FRAMES per run, but
    none more often than keeps their cost within BOUNDARY_BUDGET: a picture is a forward pass over
    `grid_points` points, about grid_points / (3 batch_size) training steps. With metrics="none"
    only the first and the last picture, as for evaluations. Step 0 and the last step always draw."""
    steps, batch = int(_get(spec, "steps", 300)), int(_get(spec, "batch_size", 128))
    if _get(spec, "metrics", "full") == "none":
        return steps
    return max(1, steps // BOUNDARY_FRAMES, math.ceil(grid_points / (3 * batch) / BOUNDARY_BUDGET))


def probe_iters(layer_every: int, kind: str = "gradients", step: int | None = None) -> int:
    """Block Lanczos steps per probe call (spectra.PowerIteration) for `kind` ("weights" or
    "gradients"), probes being `layer_every` steps apart, at training step `step` (None: early).

    Measured along runs of 300-1,000 steps on digits (depth 8-16 x 256; AGD, Adam, SGD;
    benchmarks/stable_rank.py, tests/test_spectra.py):
    - A gradient is a new matrix each step, but its top directions persist enough that one step
      from the last probe's block of train.GRADIENT_BLOCK vectors keeps its stable rank within
      0.03%, at any gap.
    - A weight moves little once training has settled: one step from the last probe's block keeps
      it within 0.4% (one step of plain subspace iteration instead: up to 1% under Adam at depth
      16, 3.5% at a gap of 40). In the first WEIGHT_SETTLE_STEPS steps a new top direction can rise
      out of the initial spectrum within a few steps (Adam's first steps add a near rank-one
      lr·sign(G) to every layer): there a weight takes PROBE_ITERS steps, one more at gaps of 10 or
      more (one step: up to 2% off at step 10; two: 0.2%, but ~1% at gaps of 20-40, where three
      give 0.1%)."""
    if kind == "gradients" or (step is not None and step > WEIGHT_SETTLE_STEPS):
        return 1
    return PROBE_ITERS + 1 if layer_every >= 10 else PROBE_ITERS


# -------------------------------------------------------------------------------------------------
# Time


def run_flops(spec: Any) -> float:
    """Floating-point operations of one optimiser's run: 6·B·M per step and 2·N·M per evaluation
    of the N examples evaluated (M: multiply-adds per example)."""
    M = network_macs(spec)
    shape = datasets.shape(_get(spec, "dataset", "digits"), _get(spec, "data_options", ()) or ())
    steps, batch = int(_get(spec, "steps", 300)), int(_get(spec, "batch_size", 128))
    n_eval = min(shape.n_train, EVAL_MAX) + shape.n_test
    n_evals = steps // resolved_eval_every(spec, n_eval) + 1
    return 6.0 * min(batch, shape.n_train) * M * steps + 2.0 * n_eval * M * n_evals


_MATMUL: float | None = None


def matmul_flops_per_s(trials: int = 7, seconds: float = 0.005) -> float:
    """This machine's speed on a small float32 matrix product, timed once per process: the best
    of a few short trials, so that another process taking the core for a moment does not count."""
    global _MATMUL
    if _MATMUL is None:
        try:  # one thread, as a worker mostly has: a busy BLAS pool on a shared box times noise
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(1)
        except Exception:  # noqa: BLE001 - the estimate is rough anyway
            limits = None
        a = np.random.default_rng(0).random((128, 256), dtype=np.float32)
        b = np.random.default_rng(1).random((256, 256), dtype=np.float32)
        a @ b
        best = 0.0
        for _ in range(trials):
            n, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                a @ b
                n += 1
            best = max(best, 2.0 * 128 * 256 * 256 * n / elapsed)
        if limits is not None:
            limits.restore_original_limits()
        _MATMUL = best or FALLBACK_FLOPS
    return _MATMUL


@dataclass(frozen=True)
class Speed:
    """How fast runs go here: `flops_per_s` for the matrix products and `ratio`, measured over
    modelled time of `n_runs` recent stored runs (1.0 when there are none)."""

    flops_per_s: float = FALLBACK_FLOPS
    ratio: float = 1.0
    n_runs: int = 0
    cell_s: float = STARTUP_S  # a sweep cell's worker start-up (module docstring)
    n_sweeps: int = 0

    def describe(self) -> str:
        if self.n_runs:
            text = (f"calibrated on {fmt.plural(self.n_runs, 'finished run')} of this store "
                    f"(they took {self.ratio:.2g}× the model's time)")
        else:
            text = "from a timed matrix product on this machine; no finished runs to calibrate on yet"
        where = (f"measured on {fmt.plural(self.n_sweeps, 'sweep')} of this store" if self.n_sweeps
                 else "until a sweep here measures it")
        return f"{text}; plus {fmt.duration(self.cell_s)} per cell to start its worker ({where})"


def default_speed() -> Speed:
    return Speed(matmul_flops_per_s() * MATMUL_EFFICIENCY)


def compute_seconds(spec: Any, flops_per_s: float) -> float:
    """Modelled training time of one optimiser's run, start-up excluded (module docstring)."""
    per_layer = LAYER_S * (2.0 if _get(spec, "metrics", "full") == "full" else 1.0)
    steps = int(_get(spec, "steps", 300))
    return steps * (STEP_S + per_layer * int(_get(spec, "depth", 8))) + run_flops(spec) / max(flops_per_s, 1.0)


def run_seconds(spec: Any, speed: Speed | None = None, startup: bool = False) -> float:
    """Modelled wall time of `spec`, every optimiser in turn in one process (× the calibration
    ratio), plus a worker's start-up when `startup`."""
    speed = speed or default_speed()
    total = compute_seconds(spec, speed.flops_per_s) * len(_optimizers(spec)) * speed.ratio
    return total + (STARTUP_S if startup else 0.0)


def calibrate(rows: Sequence[Mapping], flops_per_s: float | None = None,
              limit: int = CALIBRATION_RUNS) -> Speed:
    """A `Speed` from stored runs (as `Store.list_runs` returns them, newest first).

    A run's summary `elapsed_s` is the training time of its process, which trained every run
    sharing its group, pid and shape side by side, so the modelled time of a row is that of all
    those runs.
    """
    flops = flops_per_s if flops_per_s is not None else matmul_flops_per_s() * MATMUL_EFFICIENCY

    def key(r):  # runs trained side by side: one process, one shape (a CLI sweep's pid trains many)
        spec = r.get("spec") or {}
        return (r.get("group_id"), r.get("pid"), *(spec.get(k) for k in ("depth", "width", "steps")))

    together: dict[tuple, int] = {}
    for r in rows:
        together[key(r)] = together.get(key(r), 0) + 1
    ratios = []
    for r in rows:
        summary = r.get("summary") or {}
        spec = r.get("spec") or {}
        elapsed, steps = summary.get("elapsed_s"), summary.get("steps")
        if r.get("status") != "finished" or not elapsed or not steps or steps < 10:
            continue
        try:
            model = compute_seconds({**spec, "steps": int(steps)}, flops) * together[key(r)]
        except (KeyError, TypeError, ValueError):
            continue
        if model > 0 and math.isfinite(elapsed) and elapsed > 0:
            ratios.append(float(elapsed) / model)
        if len(ratios) >= limit:
            break
    cell_s, n_sweeps = cell_overhead(rows)
    if not ratios:
        return Speed(flops, 1.0, 0, cell_s, n_sweeps)
    ratio = float(min(max(np.median(ratios), 0.02), 50.0))
    return Speed(flops, ratio, len(ratios), cell_s, n_sweeps)


def cell_overhead(rows: Sequence[Mapping], limit: int = CALIBRATION_SWEEPS) -> tuple[float, int]:
    """(seconds per cell beyond training, sweeps measured) from stored runs, newest first: for
    each group trained by several worker processes (a sweep of the app: one process per cell),
    its wall time (first run created to last ended) times the processes that ran at once, less
    their training time, per process. (STARTUP_S, 0) when there is none."""
    groups: dict[Any, list[Mapping]] = {}
    for r in rows:
        if r.get("group_id") is not None:
            groups.setdefault(r["group_id"], []).append(r)
    samples = []
    for runs in groups.values():
        jobs: dict[Any, tuple[float, float, float]] = {}
        for r in runs:
            summary = r.get("summary") or {}
            if r.get("status") != "finished" or not r.get("pid") or not r.get("started") or not r.get("ended"):
                continue
            jobs.setdefault(r["pid"], (float(r["started"]), float(r["ended"]), float(summary.get("elapsed_s") or 0.0)))
        if len(jobs) < 2:
            continue  # a comparison (one process), or a CLI sweep (every cell in one process)
        created = min(float(r["created"]) for r in runs)
        wall = max(end for _, end, _ in jobs.values()) - created
        edges = sorted([(s, 1) for s, _, _ in jobs.values()] + [(e, -1) for _, e, _ in jobs.values()])
        width, at_once = 0, 0
        for _, step in edges:
            at_once += step
            width = max(width, at_once)
        other = (wall * width - sum(t for _, _, t in jobs.values())) / len(jobs)
        if other > 0:
            samples.append(other)
        if len(samples) >= limit:
            break
    if not samples:
        return STARTUP_S, 0
    return float(np.median(samples)), len(samples)


# -------------------------------------------------------------------------------------------------
# Store size

# Bytes a run adds to the store (measured on VACUUMed files, digits and moons, depth 2-32): a row
# of scalars per step (~59 B), a per-layer record per probe (7 float32 per layer plus the row), a
# decision-boundary picture of a 2-D set (~3.4 KB compressed).
ROW_BYTES = 64
LAYER_ROW_BYTES = 64
FRAME_BYTES = 4096
BOUNDARY_GRID_POINTS = 100 * 100  # about train's grid (BOUNDARY_POINTS along the longer side)


def metric_bytes(spec: Any) -> int:
    """About how many bytes `spec`'s runs (every optimiser) add to the run store: a row per step,
    the per-layer records at `resolved_layer_every` (metrics "full"), and decision-boundary
    pictures for a 2-D set. The job manager caps what one session may have queued by it."""
    steps = int(_get(spec, "steps", 300))
    depth = int(_get(spec, "depth", 8))
    full = _get(spec, "metrics", "full") == "full"
    per_run = (steps + 1) * ROW_BYTES
    if full:
        records = steps // resolved_layer_every(spec) + 2
        per_run += records * (LAYER_ROW_BYTES + 7 * FLOAT_BYTES * depth)
    info = datasets.DATASETS.get(str(_get(spec, "dataset", "digits")))
    if info is not None and info.input_kind == "2d":
        per_run += (steps // resolved_boundary_every(spec, BOUNDARY_GRID_POINTS) + 3) * FRAME_BYTES
    return int(per_run * len(_optimizers(spec)))
