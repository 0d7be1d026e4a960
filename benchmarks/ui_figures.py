"""The Live page's refresh: building every figure, and the JSON each refresh sends to the browser.

    python -m benchmarks.ui_figures [--rounds 7] [--tiny]

Four runs (AGD and three baselines) x 20,000 steps x 32 layers, frames shaped as the run store
returns them (`store.metrics`, `store.layer_metrics`), per-layer metrics at every step (the worst
case; the default cadence stores ~40x fewer rows) and, for comparison, at the default cadence.
Each round builds fresh `RunData` (a refresh after new rows arrived: no cached pivots) and times
  build      `charts.all_live_figures(runs)` (target <= 150 ms, median over rounds),
  serialize  what `st.plotly_chart` does with each figure: `fig.to_dict()` then
             `plotly.io.to_json(..., validate=False)`;
and counts the bytes of that JSON over all figures (target <= 1 MB per refresh). Wall clock, one
thread (figure building is numpy and Python).
"""

from __future__ import annotations

import argparse
import sys
import time

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

TARGET_MS = 150.0
TARGET_BYTES = 1_000_000
OPTIMIZERS = ("agd", "adam:lr=0.001", "sgd:lr=0.1", "adam:lr=0.01")


def frames(steps: int, layers: int, layer_every: int, seed: int):
    """(scalars, layers) frames like the store's: columns, dtypes, NaN where not logged."""
    import numpy as np
    import pandas as pd

    from agd_viz.store import LAYER_METRICS, SCALAR_METRICS

    rng = np.random.default_rng(seed)
    step = np.arange(steps + 1, dtype=np.int64)
    t = step / 200.0
    loss = 2.3 * np.exp(-step / 4000) + 0.05 * rng.random(steps + 1)
    sc = {"step": step, "t": t}
    for name in SCALAR_METRICS:
        sc[name] = np.full(steps + 1, np.nan)
    sc["loss"], sc["acc"] = loss, 1 - loss / 2.5
    evals = step % 800 == 0
    for name, v in (("train_loss", loss), ("train_acc", 1 - loss / 2.5), ("test_loss", loss * 1.1),
                    ("test_acc", 1 - loss / 2.2)):
        sc[name] = np.where(evals, v, np.nan)
    if seed == 0:
        sc["eta"], sc["G"] = 0.1 + 0.01 * rng.random(steps + 1), 1 + rng.random(steps + 1)
    else:
        sc["lr"] = np.full(steps + 1, 1e-3)
    scalars = pd.DataFrame(sc)
    logged = step[(step % layer_every == 0) | (step == 1) | (step == steps)]
    n = len(logged) * layers
    lay = {"step": np.repeat(logged, layers), "t": np.repeat(logged / 200.0, layers),
           "layer": np.tile(np.arange(layers, dtype=np.int64), len(logged))}
    for k, name in enumerate(LAYER_METRICS):
        lay[name] = (1 + k) * (0.5 + rng.random(n)).astype(np.float32).astype(np.float64)
    return scalars, pd.DataFrame(lay)


def measure(steps: int, layers: int, layer_every: int, rounds: int, x: str = "step") -> dict:
    import plotly.io
    import plotly.tools

    from agd_viz import charts

    data = [frames(steps, layers, layer_every, seed) for seed in range(len(OPTIMIZERS))]

    def runs():
        return [charts.RunData(run_id=i + 1, label=o, optimizer=o, scalars=s.copy(deep=False),
                               layers=lay.copy(deep=False), status="running")
                for i, (o, (s, lay)) in enumerate(zip(OPTIMIZERS, data))]

    sizes: dict[str, int] = {}

    def build():
        t0 = time.perf_counter()
        figs = charts.all_live_figures(runs(), x=x)
        built = time.perf_counter() - t0
        for name, fig in figs.items():  # as st.plotly_chart serialises a figure
            spec = plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(fig, True), validate=False)
            sizes[name] = len(spec.encode())
        return built, time.perf_counter() - t0

    build()  # warm-up (imports, plotly's first-use caches)
    b, total = [], []
    for _ in range(rounds):
        got = build()
        b.append(got[0])
        total.append(got[1])
    return {"runs": len(OPTIMIZERS), "steps": steps, "layers": layers, "layer_every": layer_every, "x": x,
            "build_ms": C.rounded(1000 * C.median(b)), "build_and_serialize_ms": C.rounded(1000 * C.median(total)),
            "json_bytes": sum(sizes.values()), "json_bytes_by_figure": sizes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    C.add_thread_args(ap)
    ap.add_argument("--tiny", action="store_true", help="a second, for the smoke test")
    args = ap.parse_args(argv)
    threads = C.setup_torch(args.threads)
    steps, layers = 20_000, 32
    if args.tiny:
        steps, layers, args.rounds = 500, 4, 1
    from agd_viz import cost

    auto = cost.resolved_layer_every({"steps": steps, "batch_size": 128})
    results = [measure(steps, layers, 1, args.rounds), measure(steps, layers, 1, args.rounds, x="time"),
               measure(steps, layers, auto, args.rounds)]
    print(f"Live page refresh: {len(OPTIMIZERS)} runs x {steps:,} steps x {layers} layers, "
          f"median of {args.rounds} builds, wall clock")
    rows = [(f"every {r['layer_every']}", r["x"], r["build_ms"], r["build_ms"] <= TARGET_MS,
             r["build_and_serialize_ms"], f"{r['json_bytes'] / 1e6:.3f}", r["json_bytes"] <= TARGET_BYTES)
            for r in results]
    print(C.table(rows, ("layers logged", "x axis", "build ms", f"<= {TARGET_MS:g}", "build+serialize ms",
                         "JSON MB", "<= 1 MB")))
    worst = results[0]
    print("JSON bytes by figure (layers every step, x=step): "
          + ", ".join(f"{k} {v:,}" for k, v in worst["json_bytes_by_figure"].items()))
    C.emit({"benchmark": "ui_figures", "target_ms": TARGET_MS, "target_bytes": TARGET_BYTES, "threads": threads,
            "tiny": args.tiny, "results": results, "machine": C.machine(),
            "pass": all(r["build_ms"] <= TARGET_MS and r["json_bytes"] <= TARGET_BYTES for r in results)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
