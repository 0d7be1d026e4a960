"""The Sweep page's time estimate against the wall time of real sweeps.

    python -m benchmarks.sweep_estimate [--tiny]

Runs small depth × width sweeps exactly as the Sweep page does: a `JobManager` as the app builds it
(its worker cap, one pre-started worker while idle), `submit_group` of every cell, one worker
process per cell. Before each sweep it prints the page's estimate, `SweepConfig.seconds(speed,
workers)` with the manager's calibrated `speed()`; after it, the wall time from submitting to the
last run's end, and how that time splits into training (the runs' own `elapsed_s`) and the rest
(worker start-up: a Python process importing torch, reading the data, building the networks).

The first sweep runs on an empty store (the model's constants only); the next ones on a store
holding the earlier sweeps' runs, as the page would after a first sweep (calibrated). Target: the
estimate within 0.67-1.5× of the measured wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

LOW, HIGH = 0.67, 1.5
FINAL = {"finished", "failed", "cancelled", "diverged", "interrupted"}


def run_sweep(manager, config, timeout_s: float = 1800.0) -> dict:
    speed, workers = manager.speed(), manager.max_workers
    estimate = config.seconds(speed, workers=workers)
    t0 = time.time()
    gid, ids = manager.submit_group(config.specs(), kind="sweep", group_spec=config.to_dict())
    while True:
        runs = manager.store.list_runs(group_id=gid)
        if runs and all(r["status"] in FINAL for r in runs):
            break
        if time.time() - t0 > timeout_s:
            raise RuntimeError(f"sweep {gid} did not finish in {timeout_s:g} s")
        time.sleep(0.2)
    ended = max(r["ended"] or t0 for r in runs)
    wall = ended - t0
    # Runs of one cell train side by side in one process: count each job's training once.
    jobs = {}
    for r in runs:
        jobs.setdefault(r["pid"] or r["id"], (r.get("summary") or {}).get("elapsed_s") or 0.0)
    training = sum(jobs.values())
    return {"cells": config.n_cells, "runs": config.n_runs, "workers": workers, "estimate_s": estimate,
            "wall_s": wall, "ratio": estimate / wall, "training_s": training,
            "other_s_per_cell": max(0.0, wall * min(workers, config.n_cells) - training) / config.n_cells,
            "calibrated_on": speed.n_runs, "statuses": sorted({r["status"] for r in runs})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="one 2-cell sweep of 20 steps (the smoke test)")
    args = ap.parse_args(argv)
    from agd_viz.jobs import JobManager, default_prewarm
    from agd_viz.spec import SweepConfig

    if args.tiny:
        sweeps = [SweepConfig(depths=(2,), widths=(8, 16), optimizers=("agd",), steps=20, batch_size=32)]
    else:
        sweeps = [SweepConfig(depths=(2, 4), widths=(32, 64), optimizers=("agd", "adam:lr=1e-3"), steps=300),
                  SweepConfig(depths=(2, 8), widths=(64, 128), optimizers=("agd", "adam:lr=1e-3"), steps=300),
                  SweepConfig(depths=(4, 16), widths=(32,), optimizers=("agd", "sgd:lr=0.1"), steps=500)]
    results = []
    with tempfile.TemporaryDirectory(prefix="agd_viz_bench_sweep_estimate_") as d:
        os.environ.pop("AGD_VIZ_MAX_WORKERS", None)
        manager = JobManager(Path(d) / "runs.db", prewarm=default_prewarm(1))  # as app_resources builds it
        try:
            time.sleep(3 if args.tiny else 15)  # the app idles before a sweep: its spare worker is ready
            for config in sweeps:
                results.append({"sweep": config.describe_size(), **run_sweep(manager, config)})
        finally:
            manager.shutdown()

    print("Sweep page estimate vs measured wall time (JobManager as the app builds it: "
          f"{results[0]['workers']} worker(s) at a time, one pre-started)")
    rows = [(r["sweep"], r["calibrated_on"], r["estimate_s"], r["wall_s"], r["ratio"], r["training_s"],
             r["other_s_per_cell"], LOW <= r["ratio"] <= HIGH) for r in results]
    print(C.table(rows, ("sweep", "calibrated on runs", "estimate s", "measured s", "estimate/measured",
                         "training s", "other s/cell", f"{LOW:g}-{HIGH:g}x")))
    C.setup_torch(0)
    C.emit({"benchmark": "sweep_estimate", "tiny": args.tiny, "low": LOW, "high": HIGH,
            "results": [{k: (C.rounded(v) if isinstance(v, float) else v) for k, v in r.items()} for r in results],
            "machine": C.machine(), "pass": all(LOW <= r["ratio"] <= HIGH for r in results)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
