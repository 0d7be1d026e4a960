"""Depth × width sweeps: the grid, what it will cost, and its results as heatmaps.

Used by the sweep page (pages/sweep.py) and the `sweep` command of the CLI; no streamlit here, and
no torch at import time (only `SweepConfig.specs()` imports the training code), so a page that only
shows a stored sweep stays light.

A sweep is one stored group of kind "sweep" whose spec is `SweepConfig.to_dict()`; its runs are
one per (depth, width, optimiser), each with its own self-contained `RunSpec`.

Time estimate (`estimate_seconds`). One optimiser-step of an L-layer MLP on a batch of B costs
about 6·B·Σ_k d_k·d_{k−1} floating-point operations (2 for the forward pass, 4 for the backward
pass), and each evaluation 2·N·Σ_k d_k·d_{k−1} over the N examples evaluated. Small networks are
dominated by fixed costs instead: Python and kernel dispatch, about STEP_S per step plus LAYER_S
per layer (twice that with per-layer metrics). So

    t_run ≈ steps·(STEP_S + LAYER_S·L·m) + FLOPs / R,

with R the speed of this machine on small matrix products, calibrated once per process by timing
a 128×256 by 256×256 float32 product (`matmul_flops_per_s`) and taken at MATMUL_EFFICIENCY of it
(training runs many smaller products, the backward pass included). The constants were measured
on a 2-core laptop-class CPU. Where the run store holds finished runs, their measured times
correct the model: `calibrate` takes the median of measured/modelled time over the most recent
ones, which also adapts the estimate to a GPU. A worker process adds STARTUP_S (importing torch,
loading the data); the app's queue runs `workers` runs at a time.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from agd_viz import live as live_mod
from agd_viz import paper as paper_mod
from agd_viz import spec as spec_mod

ENV_MAX_GRID = "AGD_VIZ_MAX_GRID"
DEFAULT_MAX_GRID = 200
# The spec's own ranges (agd_viz.spec has no torch, so checking a grid stays light).
DEPTH_RANGE = spec_mod.LIMITS["depth"]
WIDTH_RANGE = spec_mod.LIMITS["width"]
MAX_VALUES = 16  # depths (or widths) per sweep: past that the heatmap's cells are unreadable

DEFAULT_DEPTHS = (2, 4, 8, 16, 32)
DEFAULT_WIDTHS = (32, 64, 128)

# A run with more weights than this would need several GB (weights, gradients, Adam's two
# buffers): refused. Above WARN_WEIGHTS a run is slow on a CPU: the page says so.
MAX_WEIGHTS = 256_000_000
WARN_WEIGHTS = 16_000_000

# Time model (module docstring).
STEP_S = 2.0e-3
LAYER_S = 1.5e-4
STARTUP_S = 3.0
MATMUL_EFFICIENCY = 0.5
FALLBACK_FLOPS = 1e10
CALIBRATION_RUNS = 20  # recent finished runs the correction is the median over

STATUS_TEXT = {"pending": "·", "queued": "queued", "running": "running", "failed": "failed",
               "cancelled": "cancelled", "interrupted": "stopped", "diverged": "diverged"}
ACTIVE = ("queued", "running")
PENDING = "pending"  # a cell of the sweep's grid with no run (yet): shown, but nothing to wait for


class SweepError(ValueError):
    """A sweep that cannot be run; the message is one sentence for the user."""


# -------------------------------------------------------------------------------------------------
# The grid


def parse_sizes(text: str | Iterable[int], what: str = "depths",
                bounds: tuple[int, int] | None = None) -> tuple[int, ...]:
    """"2, 4, 8" (commas or spaces) -> (2, 4, 8): sorted, duplicates dropped, each in range."""
    lo, hi = bounds or (DEPTH_RANGE if what == "depths" else WIDTH_RANGE)
    if isinstance(text, str):
        tokens = [t for t in re.split(r"[,\s;]+", text.strip()) if t]
    else:
        tokens = list(text)
    if not tokens:
        raise SweepError(f"give at least one of the {what}, e.g. {'2, 4, 8' if what == 'depths' else '32, 64'}.")
    values = []
    for tok in tokens:
        try:
            value = int(str(tok))
        except ValueError:
            raise SweepError(f"{what}: {str(tok)[:20]!r} is not a whole number.") from None
        if not lo <= value <= hi:
            raise SweepError(f"{what} must be between {lo} and {hi:,}, got {value:,}.")
        values.append(value)
    values = sorted(set(values))
    if len(values) > MAX_VALUES:
        raise SweepError(f"at most {MAX_VALUES} {what} per sweep, got {len(values)}.")
    return tuple(values)


def format_sizes(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values)


def max_grid() -> int:
    """Runs allowed in one sweep: `$AGD_VIZ_MAX_GRID`, default 200."""
    try:
        return spec_mod.env_int(ENV_MAX_GRID, DEFAULT_MAX_GRID)
    except ValueError as exc:
        raise SweepError(str(exc)) from None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class SweepConfig:
    """Every setting of a sweep: the grid (depths × widths), the optimisers each cell trains, and
    the settings shared by all runs (those of `train.RunSpec`)."""

    depths: tuple[int, ...] = DEFAULT_DEPTHS
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    optimizers: tuple[str, ...] = ("agd", "adam:lr=1e-3")
    dataset: str = "digits"
    steps: int = 300
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    metrics: str = "none"  # heatmaps need only each run's summary; curves come from scalars
    eval_every: int = 0
    layer_every: int = 0
    same_init: bool = False
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "depths", parse_sizes(self.depths, "depths"))
        object.__setattr__(self, "widths", parse_sizes(self.widths, "widths"))
        opts = (self.optimizers,) if isinstance(self.optimizers, str) else tuple(self.optimizers)
        object.__setattr__(self, "optimizers", tuple(dict.fromkeys(str(o).strip() for o in opts)))
        d = self.data_options
        d = d.items() if isinstance(d, Mapping) else d
        object.__setattr__(self, "data_options", tuple(sorted((str(k), v) for k, v in d)))

    # -- size ------------------------------------------------------------------------------------
    def cells(self) -> list[tuple[int, int]]:
        """(depth, width) of every cell, shallow and narrow first (they finish first)."""
        return sorted(((d, w) for d in self.depths for w in self.widths),
                      key=lambda c: (weight_count(*_shape(self)[:2], c[0], c[1]), c))

    @property
    def n_cells(self) -> int:
        return len(self.depths) * len(self.widths)

    @property
    def n_runs(self) -> int:
        return self.n_cells * len(self.optimizers)

    def describe_size(self) -> str:
        """'30 runs (5 depths × 3 widths × 2 optimisers)'."""
        return (f"{_plural(self.n_runs, 'run')} ({_plural(len(self.depths), 'depth')} × "
                f"{_plural(len(self.widths), 'width')} × {_plural(len(self.optimizers), 'optimiser')})")

    def check(self, limit: int | None = None, device: str | None = None) -> list[str]:
        """Why this sweep may not start (one sentence each); empty if it may. No torch. `device`:
        what "auto" resolves to, for the memory budget (default: the config's own device)."""
        problems = []
        if not self.optimizers:
            problems.append("choose at least one optimiser.")
        limit = max_grid() if limit is None else limit
        if self.n_runs > limit:
            problems.append(
                f"This sweep has {self.describe_size()}; the limit is {limit} runs per sweep. Remove "
                f"some depths, widths or learning rates, or raise the limit with the environment "
                f"variable {ENV_MAX_GRID}.")
        d_in, d_out, _ = _shape(self)
        biggest = max(weight_count(d_in, d_out, d, w) for d, w in self.cells())
        if biggest > MAX_WEIGHTS:
            problems.append(
                f"the largest network ({max(self.depths)} layers of width {max(self.widths):,}) has "
                f"{biggest:,} weights, more than the {MAX_WEIGHTS:,} a run may have.")
        # The server's limits, in the words every page and the CLI use (agd_viz.spec).
        text = spec_mod.steps_problem(self.steps)
        if text:
            problems.append(text)
        if self.optimizers and biggest <= MAX_WEIGHTS:
            cells = [self.spec_fields(d, w) for d, w in self.cells()]
            text = spec_mod.memory_problem(max(cells, key=spec_mod.estimate_memory_bytes), device)
            if text:
                problems.append(text)
        return problems

    # -- runs ------------------------------------------------------------------------------------
    def spec_fields(self, depth: int, width: int) -> dict:
        """Keyword arguments of `train.RunSpec` for one cell (all optimisers)."""
        return dict(dataset=self.dataset, depth=int(depth), width=int(width),
                    optimizers=self.optimizers, steps=self.steps, batch_size=self.batch_size,
                    seed=self.seed, device=self.device, metrics=self.metrics,
                    eval_every=self.eval_every, layer_every=self.layer_every,
                    same_init=self.same_init, data_options=self.data_options)

    def specs(self) -> list:
        """One validated `train.RunSpec` per cell, in `cells()` order; SweepError if any is not."""
        from agd_viz.train import RunSpec, SpecError

        out = []
        for d, w in self.cells():
            try:
                out.append(RunSpec(**self.spec_fields(d, w)))
            except SpecError as exc:
                raise SweepError(str(exc)) from None
        return out

    # -- storage ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": "sweep", "depths": list(self.depths), "widths": list(self.widths),
                "optimizers": list(self.optimizers), "dataset": self.dataset, "steps": self.steps,
                "batch_size": self.batch_size, "seed": self.seed, "device": self.device,
                "metrics": self.metrics, "eval_every": self.eval_every,
                "layer_every": self.layer_every, "same_init": self.same_init,
                "data_options": dict(self.data_options)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "SweepConfig":
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**fields)


# -------------------------------------------------------------------------------------------------
# Cost


def _shape(config: SweepConfig | Mapping) -> tuple[int, int, int]:
    """(d_in, d_out, examples evaluated) of the sweep's data set."""
    get = config.get if isinstance(config, Mapping) else lambda k, v=None: getattr(config, k, v)
    shape = spec_mod.data_shape(get("dataset", "digits"), get("data_options", ()) or ())
    return shape.d_in, shape.d_out, shape.n


def layer_dims(d_in: int, d_out: int, depth: int, width: int) -> list[tuple[int, int]]:
    """(d_k, d_{k−1}) of each weight matrix: d_in → width → … → width → d_out."""
    sizes = [d_in] + [width] * (depth - 1) + [d_out]
    return [(sizes[k + 1], sizes[k]) for k in range(depth)]


def weight_count(d_in: int, d_out: int, depth: int, width: int) -> int:
    """Σ_k d_k·d_{k−1}: the weights of the network, and its multiply-adds per example."""
    return sum(a * b for a, b in layer_dims(d_in, d_out, depth, width))


def run_flops(fields: Mapping) -> float:
    """Floating-point operations of one optimiser's run: 6·B·P per step and 2·N·P per
    evaluation of the N examples evaluated, with P = Σ_k d_k·d_{k−1}."""
    d_in, d_out, n = _shape(fields)
    P = weight_count(d_in, d_out, int(fields["depth"]), int(fields["width"]))
    steps, batch = int(fields["steps"]), int(fields["batch_size"])
    every = int(fields.get("eval_every") or 0) or max(1, steps // 25)
    n_evals = steps // every + 1
    return 6.0 * batch * P * steps + 2.0 * min(n, 16384) * P * n_evals


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

    def describe(self) -> str:
        if self.n_runs:
            return (f"calibrated on {_plural(self.n_runs, 'finished run')} of this store "
                    f"(they took {self.ratio:.2g}× the model's time)")
        return "from a timed matrix product on this machine; no finished runs to calibrate on yet"


def compute_seconds(fields: Mapping, flops_per_s: float) -> float:
    """Modelled training time of one optimiser's run, start-up excluded (module docstring)."""
    per_layer = LAYER_S * (2.0 if fields.get("metrics", "full") == "full" else 1.0)
    steps = int(fields["steps"])
    return steps * (STEP_S + per_layer * int(fields["depth"])) + run_flops(fields) / max(flops_per_s, 1.0)


def calibrate(rows: Sequence[Mapping], flops_per_s: float | None = None,
              limit: int = CALIBRATION_RUNS) -> Speed:
    """A `Speed` from stored runs (as `Store.list_runs` returns them, newest first).

    A run's summary `elapsed_s` is the training time of its process, which trained every run
    sharing its group, pid and shape side by side (the CLI does; app workers train one run each),
    so the modelled time of a row is that of all those runs.
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
            fields = {**spec, "steps": int(steps)}
            model = compute_seconds(fields, flops) * together[key(r)]
        except (KeyError, TypeError, ValueError):
            continue
        if model > 0 and math.isfinite(elapsed) and elapsed > 0:
            ratios.append(float(elapsed) / model)
        if len(ratios) >= limit:
            break
    if not ratios:
        return Speed(flops, 1.0, 0)
    ratio = float(min(max(np.median(ratios), 0.02), 50.0))
    return Speed(flops, ratio, len(ratios))


def estimate_seconds(config: SweepConfig, speed: Speed | None = None, workers: int = 1,
                     per_process: bool = True) -> float:
    """Wall time of the whole sweep: every run's modelled time (× the calibration ratio), plus a
    process start-up per run (`per_process`, the app's workers) or once (the CLI), shared by
    `workers` running at a time."""
    speed = speed or Speed(matmul_flops_per_s() * MATMUL_EFFICIENCY)
    total = 0.0
    for d, w in config.cells():
        total += compute_seconds(config.spec_fields(d, w), speed.flops_per_s) * len(config.optimizers)
    total *= speed.ratio
    total += STARTUP_S * (config.n_runs if per_process else 1)
    return total / max(1, min(int(workers), config.n_runs if per_process else 1))


def format_duration(seconds: float | None) -> str:
    """As the Live page writes durations, but an estimate never reads "0 s"."""
    if seconds is not None and math.isfinite(seconds) and 0 <= seconds < 1:
        seconds = 1.0
    return live_mod.format_duration(seconds)


# -------------------------------------------------------------------------------------------------
# Results

RESULT_COLUMNS = ("run_id", "optimizer", "label", "depth", "width", "status", "final_train_loss",
                  "final_train_acc", "final_test_loss", "final_test_acc", "mean_eta", "step",
                  "steps", "elapsed_s", "error")
VALUES = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc", "mean_eta")


def _finite(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def family(optimizer: str) -> str:
    """'adam:lr=1e-3' -> 'adam'."""
    return str(optimizer).split(":", 1)[0].strip().lower()


def learning_rate(optimizer: str) -> float | None:
    m = re.search(r"(?:^|[:,\s])lr\s*=\s*([^,\s]+)", str(optimizer))
    if m:
        return _finite(m.group(1))
    try:
        from agd_viz.optim import OPTIMIZERS  # noqa: PLC0415 - only for an lr left at its default

        return float(OPTIMIZERS[family(optimizer)].defaults["lr"])
    except Exception:  # noqa: BLE001 - no registry (or no lr): unknown
        return None


def results_frame(rows: Sequence[Mapping], config: SweepConfig | None = None) -> pd.DataFrame:
    """One row per (cell, optimiser) of a sweep: each stored run's status and summary values;
    with `config`, cells not started yet appear as status "pending" (NaN values), so heatmaps
    show the whole grid from the start."""
    out = []
    labels: dict[str, str] = {}
    for r in rows:
        spec, summary = r.get("spec") or {}, r.get("summary") or {}
        opt = str(r.get("optimizer"))
        labels.setdefault(opt, r.get("label") or opt)
        out.append({
            "run_id": int(r["id"]), "optimizer": opt, "label": labels[opt],
            "depth": spec.get("depth"), "width": spec.get("width"), "status": r.get("status"),
            **{k: _finite(summary.get(k)) for k in VALUES},
            "step": r.get("step") or 0, "steps": r.get("steps") or spec.get("steps"),
            "elapsed_s": _finite(summary.get("elapsed_s")), "error": r.get("error"),
        })
    if config is not None:
        have = {(o["depth"], o["width"], o["optimizer"]) for o in out}
        for d, w in config.cells():
            for opt in config.optimizers:
                if (d, w, opt) not in have:
                    out.append({"run_id": None, "optimizer": opt, "label": labels.get(opt, _label(opt)),
                                "depth": d, "width": w, "status": PENDING,
                                **{k: math.nan for k in VALUES}, "step": 0, "steps": config.steps,
                                "elapsed_s": math.nan, "error": None})
    df = pd.DataFrame(out, columns=list(RESULT_COLUMNS))
    if len(df):
        df = df.sort_values(["depth", "width", "run_id"], na_position="last", kind="stable")
        df["depth"] = df["depth"].astype(int)
        df["width"] = df["width"].astype(int)
    return df.reset_index(drop=True)


def _label(opt: str) -> str:
    name, _, args = opt.partition(":")
    return " ".join([name.strip(), *[a.strip() for a in args.split(",") if a.strip()]])


def panel_order(df: pd.DataFrame, config: SweepConfig | None = None) -> list[str]:
    """Optimiser spec strings in display order: the sweep's own order, AGD first."""
    opts = list(config.optimizers) if config is not None else []
    opts += [o for o in pd.unique(df["optimizer"]) if o not in opts] if len(df) else []
    return sorted(opts, key=lambda o: (family(o) != "agd", opts.index(o)))


def progress(df: pd.DataFrame) -> dict[str, int]:
    """Runs per status, plus 'total' and 'done' (every final status)."""
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    counts = {str(k): int(v) for k, v in counts.items()}
    counts["total"] = len(df)
    counts["done"] = int(sum(v for k, v in counts.items() if k not in (*ACTIVE, PENDING, "total")))
    return counts


def is_active(df: pd.DataFrame) -> bool:
    return bool(len(df)) and bool(df["status"].isin(ACTIVE).any())


def best_rate_frame(df: pd.DataFrame, family_name: str = "adam",
                    value: str = "final_train_loss") -> pd.DataFrame:
    """Per cell, the best of a baseline's runs over its learning rates: columns depth, width,
    <value>, best_lr, run_id, n_rates, status. Lower is better for a loss, higher otherwise; a
    run that diverged or has no value counts as the worst. Cells where none has a value keep NaN
    (status says why: 'diverged' if they all diverged, else the furthest-behind status)."""
    cols = ["depth", "width", value, "best_lr", "run_id", "n_rates", "status"]
    sub = df[df["optimizer"].map(family) == family_name] if len(df) else df
    if not len(sub):
        return pd.DataFrame(columns=cols)
    lower = "loss" in value
    out = []
    for (d, w), cell in sub.groupby(["depth", "width"], sort=True):
        vals = cell[value].to_numpy(dtype=np.float64)
        ok = np.isfinite(vals) & (cell["status"] == "finished").to_numpy()
        if ok.any():
            idx = np.flatnonzero(ok)
            k = idx[np.argmin(vals[idx])] if lower else idx[np.argmax(vals[idx])]
            row = cell.iloc[k]
            out.append((d, w, float(vals[k]), learning_rate(row["optimizer"]), row["run_id"],
                        len(cell), "finished"))
        else:
            statuses = set(cell["status"])
            status = next((s for s in (*ACTIVE, PENDING) if s in statuses), None) or (
                "diverged" if statuses == {"diverged"} else sorted(statuses)[0])
            out.append((d, w, math.nan, None, None, len(cell), status))
    return pd.DataFrame(out, columns=cols)


def agd_vs_best(df: pd.DataFrame, family_name: str = "adam", value: str = "final_train_loss",
                agd: str | None = None) -> pd.DataFrame:
    """Per cell: AGD's value beside the baseline's best over its rates (columns depth, width,
    agd, best, best_lr, agd_run_id, best_run_id). `agd` picks the AGD variant (default: the
    first AGD optimiser of the frame)."""
    agd_rows = df[df["optimizer"].map(family) == "agd"] if len(df) else df
    if agd is None and len(agd_rows):
        agd = agd_rows["optimizer"].iloc[0]
    agd_rows = agd_rows[agd_rows["optimizer"] == agd] if len(agd_rows) else agd_rows
    best = best_rate_frame(df, family_name, value)
    cols = ["depth", "width", "agd", "best", "best_lr", "agd_run_id", "best_run_id"]
    if not len(agd_rows) or not len(best):
        return pd.DataFrame(columns=cols)
    a = agd_rows[["depth", "width", value, "run_id"]].rename(columns={value: "agd", "run_id": "agd_run_id"})
    b = best[["depth", "width", value, "best_lr", "run_id"]].rename(columns={value: "best", "run_id": "best_run_id"})
    return a.merge(b, on=["depth", "width"], how="outer").sort_values(["depth", "width"]).reset_index(drop=True)[cols]


def agd_wins(cmp: pd.DataFrame, value: str = "final_train_loss") -> tuple[int, int]:
    """(cells where AGD beats the baseline's best rate, cells where both have a value)."""
    if not len(cmp):
        return 0, 0
    a, b = cmp["agd"].to_numpy(dtype=np.float64), cmp["best"].to_numpy(dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    better = (a < b) if "loss" in value else (a > b)
    return int((both & better).sum()), int(both.sum())


def cell_options(df: pd.DataFrame) -> list[tuple[int, int]]:
    """Cells that have at least one run, by depth then width."""
    if not len(df):
        return []
    have = df[df["run_id"].notna()]
    return sorted({(int(d), int(w)) for d, w in zip(have["depth"], have["width"])})


def cell_run_ids(df: pd.DataFrame, depth: int, width: int) -> list[int]:
    sub = df[(df["depth"] == depth) & (df["width"] == width) & df["run_id"].notna()]
    return [int(r) for r in sub["run_id"]]


# -------------------------------------------------------------------------------------------------
# Figures


def _fmt(v: float, fmt: str) -> str:
    return format(v, fmt) if math.isfinite(v) else "—"


def heatmaps(df: pd.DataFrame, value: str, optimizers: Sequence[str] | None = None, *,
             fmt: str = ".3g", title: str | None = None, selected: tuple[int, int] | None = None,
             clickable: bool = True, height: int | None = None):
    """`charts.sweep_heatmaps` (one panel per optimiser, one colour scale) made for a sweep in
    progress: the whole grid is drawn from the start; a cell without a value says why (queued,
    running, diverged, ...); accuracies use a fixed 0–1 scale; every cell carries an invisible
    marker with its run id, so that clicking it selects it (plotly heatmaps emit no selection
    events); and the `selected` cell is outlined in every panel.
    """
    from agd_viz import charts

    optimizers = list(optimizers) if optimizers is not None else list(pd.unique(df["optimizer"]))
    labels = {o: (df.loc[df["optimizer"] == o, "label"].iloc[0] if (df["optimizer"] == o).any() else o)
              for o in optimizers}
    frame = df.assign(optimizer=df["optimizer"].map(lambda o: labels.get(o, o)))
    kwargs = {"height": height} if height else {}
    fig = charts.sweep_heatmaps(frame, value, [labels[o] for o in optimizers], fmt=fmt, title=title,
                                **kwargs)
    maps = [t for t in fig.data if t.type == "heatmap"]
    if not maps:
        return fig
    markers, axes = [], {}
    for i, (opt, trace) in enumerate(zip(optimizers, maps)):
        suffix = "" if i == 0 else str(i + 1)
        xs, ys = [str(v) for v in trace.x], [str(v) for v in trace.y]
        # An all-empty heatmap registers no categories: fix the grid on the axes themselves.
        axes[f"xaxis{suffix}"] = dict(categoryorder="array", categoryarray=xs, range=[-0.5, len(xs) - 0.5])
        axes[f"yaxis{suffix}"] = dict(categoryorder="array", categoryarray=ys, range=[-0.5, len(ys) - 0.5])
        z = np.asarray(trace.z, dtype=np.float64)
        trace.update(text=np.where(np.isfinite(z), np.asarray(trace.text, dtype=object), ""),
                     hoverinfo="skip", hovertemplate=None)
        if value.endswith("_acc"):
            trace.update(zmin=0.0, zmax=1.0)
        part = df[df["optimizer"] == opt]
        pts = []
        for r in part.itertuples(index=False):
            v = _finite(getattr(r, value))
            rid = -1 if r.run_id is None or pd.isna(r.run_id) else int(r.run_id)
            pts.append((str(int(r.width)), str(int(r.depth)), rid, r.status, v))
        if not pts:
            continue
        markers.append(dict(
            type="scatter", mode="markers+text", x=[p[0] for p in pts], y=[p[1] for p in pts],
            text=["" if math.isfinite(p[4]) else STATUS_TEXT.get(p[3], p[3]) for p in pts],
            textfont=dict(color="#666", size=11), textposition="middle center",
            customdata=[[p[2], int(p[1]), int(p[0])] for p in pts],
            hovertext=[f"{labels[opt]} · depth {p[1]} × width {p[0]}<br>{p[3]}: "
                       f"{charts.metric_name(value)} {_fmt(p[4], '.4g')}"
                       + (f"<br>run {p[2]}: click for its curves" if p[2] >= 0 else "") for p in pts],
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(symbol="square", size=28, color="rgba(0,0,0,0)"),
            selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
            showlegend=False, xaxis=f"x{suffix}", yaxis=f"y{suffix}", name=str(labels[opt])))
    for m in markers:
        fig.add_trace(m)
    # Room above the panel titles for plotly's modebar, which would otherwise cover the last one.
    top = (fig.layout.margin.t or 32) + 28
    fig.update_layout(hovermode="closest", clickmode="event+select" if clickable else "event",
                      dragmode=False, margin=dict(t=top), **axes)
    if selected is not None:
        shapes = []
        for i, trace in enumerate(maps):
            ys, xs = [int(v) for v in trace.y], [int(v) for v in trace.x]
            d, w = selected
            if d in ys and w in xs:
                suffix = "" if i == 0 else str(i + 1)
                xi, yi = xs.index(w), ys.index(d)
                shapes.append(dict(type="rect", xref=f"x{suffix}", yref=f"y{suffix}",
                                   x0=xi - 0.5, x1=xi + 0.5, y0=yi - 0.5, y1=yi + 0.5,
                                   line=dict(color="#d62728", width=3)))
        fig.update_layout(shapes=shapes)
    return fig


def best_rate_heatmaps(df: pd.DataFrame, family_name: str = "adam", value: str = "final_train_loss",
                       agd: str | None = None, *, selected: tuple[int, int] | None = None):
    """AGD beside the baseline's best learning rate per cell, one colour scale: the best cell's
    text also names the rate that won."""
    cmp = agd_vs_best(df, family_name, value, agd)
    if not len(cmp):
        from agd_viz import charts

        return charts.empty_figure(f"needs AGD and at least one {family_name} rate in the sweep")
    agd_name = agd or df.loc[df["optimizer"].map(family) == "agd", "optimizer"].iloc[0]
    best_name = f"{family_name} (best lr)"
    status = df.groupby(["depth", "width", "optimizer"])["status"].first().to_dict()
    best = best_rate_frame(df, family_name, value).set_index(["depth", "width"])
    rows = []
    for r in cmp.itertuples(index=False):
        rows.append({"run_id": r.agd_run_id, "optimizer": agd_name, "label": agd_name, "depth": r.depth,
                     "width": r.width, "status": status.get((r.depth, r.width, agd_name), "pending"),
                     value: r.agd})
        rows.append({"run_id": r.best_run_id, "optimizer": best_name, "label": best_name,
                     "depth": r.depth, "width": r.width,
                     "status": best.loc[(r.depth, r.width), "status"] if (r.depth, r.width) in best.index
                     else "pending", value: r.best})
    frame = pd.DataFrame(rows)
    fig = heatmaps(frame, value, [agd_name, best_name], selected=selected)
    lrs = {(int(r.depth), int(r.width)): r.best_lr for r in cmp.itertuples(index=False)}
    maps = [t for t in fig.data if t.type == "heatmap"]
    if len(maps) == 2:
        trace = maps[1]
        text = np.array(trace.text, dtype=object)
        for yi, d in enumerate(trace.y):
            for xi, w in enumerate(trace.x):
                lr = lrs.get((int(d), int(w)))
                if lr is not None and not pd.isna(lr):
                    text[yi][xi] = f"{text[yi][xi]}<br>lr {lr:g}"
        trace.update(text=text)
    return fig


# -------------------------------------------------------------------------------------------------
# The page's form

BASELINES = ("adam", "sgd", "adamw")
DEFAULT_RATES = {"adam": "1e-3", "sgd": "0.1", "adamw": "1e-3"}


def optimizer_specs(agd: bool, rates: Mapping[str, str | None], more: str = "") -> list[str]:
    """The optimisers of a sweep from the page's form: AGD (no learning rate) and each chosen
    baseline at each of its rates: ["agd", "adam:lr=0.0001", "adam:lr=0.001"]. `rates` maps a
    baseline to its rate list ("1e-4, 1e-3"), None for a baseline left out; `more` holds any
    other optimiser specs separated by spaces or semicolons ("prodigy; sgd:lr=0.1,momentum=0.9"),
    checked against the optimiser registry (which imports torch, so only when there are some).
    ValueError says which entry is wrong."""
    from agd_viz.live import parse_rates

    out = ["agd"] if agd else []
    extra = [t for t in re.split(r"[;\s]+", more or "") if t]
    if extra:
        from agd_viz.optim import parse_optimizer

        for text in extra:
            try:
                parse_optimizer(text)
            except ValueError as exc:
                raise ValueError(f"more optimisers: {exc}") from None
    for name in BASELINES:
        text = rates.get(name)
        if text is None:
            continue
        try:
            out += [f"{name}:lr={r:g}" for r in parse_rates(text)]
        except ValueError as exc:
            raise ValueError(f"{name} learning rates: {exc}") from None
    return list(dict.fromkeys(out + extra))


def baseline_families(optimizers: Iterable[str]) -> list[str]:
    """Baselines of the sweep that have learning rates to pick the best of, in form order."""
    have = {family(o) for o in optimizers}
    return [f for f in BASELINES if f in have]


# -------------------------------------------------------------------------------------------------
# The paper's sweeps (agd_viz.paper): presets for the page's form, and its numbers beside ours

PAPER_PRESETS = {key: p for key, p in paper_mod.PRESETS.items() if p.kind == "sweep"}
LR_FREE = ("prodigy", "dadapt-adam", "schedulefree-adamw")  # = agd_viz.live.LR_FREE


def paper_preset_form(key: str) -> dict[str, Any]:
    """The page's form for a sweep preset of agd_viz.paper: depths and widths (text), dataset,
    steps, batch_size, full (per-layer metrics), agd (bool), rates (baseline -> rate text, None
    when left out), lr_free (names ticked) and more (any other optimiser specs)."""
    preset = PAPER_PRESETS[key]
    spec = preset.spec
    rates: dict[str, list[str]] = {name: [] for name in BASELINES}
    agd, lr_free, more = False, [], []
    for opt in spec.get("optimizers") or ():
        text = str(opt).strip()
        fam = family(text)
        m = re.search(r"(?:^|[:,\s])lr\s*=\s*([^,\s]+)", text)
        if text == "agd":
            agd = True
        elif fam in BASELINES and set(re.findall(r"(\w+)\s*=", text.partition(":")[2])) <= {"lr"}:
            rates[fam].append(m.group(1) if m else DEFAULT_RATES[fam])
        elif text in LR_FREE:
            lr_free.append(text)
        else:
            more.append(text)
    return dict(depths=format_sizes(preset.depths), widths=format_sizes(preset.widths),
                dataset=spec.get("dataset", "digits"), steps=int(spec.get("steps", 300)),
                batch_size=int(spec.get("batch_size", 128)), full=spec.get("metrics") == "full",
                agd=agd, rates={k: ", ".join(v) if v else None for k, v in rates.items()},
                lr_free=lr_free, more="; ".join(more))


def paper_preset_note(key: str) -> str | None:
    """For a preset made for a GPU: that it is slow on a CPU."""
    preset = PAPER_PRESETS[key]
    if not preset.gpu:
        return None
    return (f"Made for a GPU: {preset.spec.get('steps', 0):,} steps per run on "
            f"{len(preset.depths) * len(preset.widths)} networks is slow on a CPU (see the estimate "
            "under New sweep). Choose device cuda if this server has one, or fewer steps for a first look.")


def paper_preset_for(config: SweepConfig | None) -> str | None:
    """The sweep preset of agd_viz.paper with paper numbers whose data set and grid this sweep
    shares (some depths and widths in common), preferring the one with the same grid."""
    if config is None:
        return None
    best, best_score = None, None
    for key, preset in PAPER_PRESETS.items():
        if not (preset.expected or preset.context) or config.dataset != preset.spec.get("dataset"):
            continue
        depths, widths = set(config.depths) & set(preset.depths), set(config.widths) & set(preset.widths)
        if not depths or not widths or "agd" not in config.optimizers:
            continue
        score = (set(config.depths) == set(preset.depths) and set(config.widths) == set(preset.widths),
                 len(depths) * len(widths))
        if best_score is None or score > best_score:
            best, best_score = key, score
    return best


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def paper_table(df: pd.DataFrame, config: SweepConfig | None) -> tuple[pd.DataFrame, str] | None:
    """The paper's Figure-6 numbers beside this sweep's AGD runs: its best and worst cell (final
    test accuracy), and AGD's test accuracy by depth at the widest width for the qualitative rows.
    A frame (Figure, Paper, Measured here, role) and a caption; None when no paper preset matches."""
    key = paper_preset_for(config)
    if key is None:
        return None
    preset = PAPER_PRESETS[key]
    agd = df[(df["optimizer"] == "agd") & (df["status"] == "finished")] if len(df) else df
    agd = agd[np.isfinite(agd["final_test_acc"].astype(float))] if len(agd) else agd
    rows = []
    for role, names in (("expected", preset.expected), ("for orientation", preset.context)):
        for name in names:
            result = paper_mod.PAPER_RESULTS[name]
            got = "–"
            if len(agd):
                if name.endswith("_best") or name.endswith("_worst"):
                    pick = agd.loc[agd["final_test_acc"].astype(float).idxmax() if name.endswith("_best")
                                   else agd["final_test_acc"].astype(float).idxmin()]
                    got = (f"{'best' if name.endswith('_best') else 'worst'} cell: depth {int(pick['depth'])}, "
                           f"width {int(pick['width'])}, {_pct(float(pick['final_test_acc']))}")
                else:
                    widest = agd[agd["width"] == agd["width"].max()].sort_values("depth")
                    got = (f"AGD at width {int(widest['width'].iloc[0])}, by depth: "
                           + ", ".join(f"{int(d)}: {_pct(float(a))}"
                                       for d, a in zip(widest["depth"], widest["final_test_acc"])))
            rows.append({"Figure": result.figure, "Paper": result.display, "Measured here": got, "": role})
    caption = (f"Measured: final test accuracy of this sweep's finished AGD runs (preset “{preset.title}”). "
               f"The paper trained with square loss and data augmentation, for longer: expect close, not "
               f"equal, numbers.")
    if config is not None and config.steps != preset.spec.get("steps"):
        caption += f" This sweep ran {config.steps:,} steps per run; the preset runs {preset.spec.get('steps', 0):,}."
    return pd.DataFrame(rows), caption
