"""Shared helpers of the benchmarks: thread setup, interleaved timing, medians, the output format.

Method (docs/performance.md): every cost is a ratio against a baseline timed in the same process,
baseline and candidates interleaved round by round (A B C, then B C A, ...) so that a neighbour
taking the cores for a while, or the machine warming up, hits every variant alike; the reported
ratio is the median over rounds of each round's candidate/baseline ratio.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` as well as `python -m benchmarks.x`
    sys.path.insert(0, str(ROOT))


def worker_threads() -> int:
    """Intra-op threads of an app worker on this machine: $OMP_NUM_THREADS if set, else the job
    manager's share (agd_viz.jobs.worker_threads)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    from agd_viz.jobs import default_max_workers
    from agd_viz.jobs import worker_threads as share

    return share(default_max_workers())


def setup_torch(threads: int | None) -> int:
    """Set torch's intra-op threads: `threads`, or 0/None for an app worker's share."""
    import torch

    n = threads or worker_threads()
    torch.set_num_threads(n)
    return n


def add_thread_args(ap) -> None:
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (default 0: what an app worker gets on this machine, "
                         "agd_viz.jobs.worker_threads)")


CLOCKS = ("cpu", "wall")


@contextlib.contextmanager
def train_clock(kind: str = "cpu"):
    """Within the block `agd_viz.train` timestamps records (`t`) with `kind`'s clock.

    "cpu" is this process's CPU time (time.process_time): time other processes take from the
    cores does not count, which on a shared machine turns +-30% wall-clock noise into +-3%. It
    counts every thread of the process, so with several torch threads it includes their spinning,
    as wall time on an idle machine would. "wall" is train's own clock (time.perf_counter).
    """
    from agd_viz import train

    if kind not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {kind!r}")
    real = train.time
    if kind == "cpu":
        train.time = types.SimpleNamespace(perf_counter=time.process_time)
    try:
        yield
    finally:
        train.time = real


def interleaved(variants: Mapping[str, Callable[[], float | None]], rounds: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Time each variant once per round, rotating the order every round; returns seconds per
    variant. A variant may return its own measurement (seconds) instead of being timed whole."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        if r % 2:
            order = order[::-1]
        for name in order:
            t0 = time.perf_counter()
            got = variants[name]()
            out[name].append(got if got is not None else time.perf_counter() - t0)
    return out


def paired_ratio(cand: Sequence[float], base: Sequence[float]) -> float:
    """Median over rounds of candidate/baseline (the two timed in the same round)."""
    return statistics.median(c / b for c, b in zip(cand, base))


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def machine() -> dict:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__.split("+")[0], "python": platform.python_version(),
            "load_1min": load}


def table(rows: Sequence[Sequence], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(c) -> str:
    if isinstance(c, bool) or c is None:
        return {True: "yes", False: "NO", None: "-"}[c]
    if isinstance(c, float):
        return f"{c:.3g}" if abs(c) < 1000 else f"{c:,.0f}"
    return str(c)


def emit(result: dict) -> dict:
    """The benchmark's one JSON line (last line of its output)."""
    print(json.dumps(result, allow_nan=False, default=_json_default), flush=True)
    return result


def _json_default(x):
    if isinstance(x, float):
        return None
    return str(x)


def rounded(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")
