"""The run store: what writing metrics costs training, and how fast the Live page reads new rows.

    python -m benchmarks.store_sink [--rounds 3] [--threads N] [--tiny]

Write cost. The worker's own sink (`worker.train_into`, one transaction per run per sync) training AGD with
every metric, into a real SQLite store (WAL, a temporary file) vs into no store (the null sink,
`--no-store`), interleaved round by round on this process's CPU time (SQLite runs in-process;
in WAL mode with synchronous=NORMAL a commit does not wait for the disk).
Target: SQLite / null <= 1.05 (median over rounds).

Read latency. A store holding 10 runs x 10,000 steps x 32 layers, every metric at every step
(the worst case; the default cadence logs layers ~40x less often). The Live page's incremental read
of one run's newest second of data: `metrics(run_id, since_step)` with since_step = last step minus
the steps a fast run makes in one second (`--rate`), and `layer_metrics` likewise; also every run
at once (`metrics_many`). Target: metrics() <= 20 ms (median of `--queries` reads, wall clock).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

TARGET_WRITE = 1.05
TARGET_READ_MS = 20.0


def train_into(store, spec) -> None:
    from agd_viz import worker

    run_ids = [None] * len(spec.optimizers)
    if store is not None:
        gid = store.create_group("compare", "bench", spec.to_dict())
        run_ids = [store.create_run(spec.with_optimizer(o).to_dict(), o, group_id=gid) for o in spec.optimizers]
    ends = worker.train_into(spec, store, run_ids)
    assert all(e.status == "finished" for e in ends.values()), ends


def write_cost(configs, rounds: int, tmp: Path) -> list[dict]:
    from agd_viz import cost
    from agd_viz.spec import RunSpec
    from agd_viz.store import Store

    out = []
    for depth, width, steps in configs:
        spec = RunSpec(dataset="digits", depth=depth, width=width, steps=steps, batch_size=128,
                       device="cpu", optimizers=("agd",), metrics="full")
        store = Store(tmp / f"write-{depth}x{width}.db")

        def timed(s):
            def run():
                t0 = time.process_time()
                train_into(s, spec)
                return time.process_time() - t0
            return run

        train_into(store, spec.replace(steps=4)), train_into(None, spec.replace(steps=4))  # warm-up
        times = C.interleaved({"null": timed(None), "sqlite": timed(store)}, rounds=rounds, warmup=0)
        rows = len(store.metrics(store.list_runs()[0]["id"]))
        store.close()
        out.append({"depth": depth, "width": width, "steps": steps,
                    "layer_every": cost.resolved_layer_every(spec),
                    "s_null": C.rounded(C.median(times["null"])), "s_sqlite": C.rounded(C.median(times["sqlite"])),
                    "ratio": C.rounded(C.paired_ratio(times["sqlite"], times["null"])),
                    "ratio_rounds": [C.rounded(a / b) for a, b in zip(times["sqlite"], times["null"])],
                    "rows_per_run": rows})
    return out


def fill(store, runs: int, steps: int, layers: int, batch: int = 1000) -> list[int]:
    """Runs of synthetic records shaped like the worker's, written in its batch size."""
    import numpy as np

    from agd_viz.store import LAYER_METRICS

    rng = np.random.default_rng(0)
    ids = []
    for r in range(runs):
        rid = store.create_run({"depth": layers, "width": 256, "steps": steps}, "agd", name=f"bench {r}")
        ids.append(rid)
        for lo in range(0, steps, batch):
            recs = []
            block = rng.random((batch, len(LAYER_METRICS), layers), dtype=np.float32)
            for k, step in enumerate(range(lo, min(steps, lo + batch))):
                rec = {"step": step, "t": step / 500, "loss": 1.0 / (step + 1), "acc": 0.5, "eta": 0.1,
                       "G": 1.0, "layers": {m: block[k, j] for j, m in enumerate(LAYER_METRICS)}}
                if step % 100 == 0:
                    rec.update(train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=0.5)
                recs.append(rec)
            store.append_metrics(rid, recs, progress={"steps": steps})
    return ids


def read_latency(tmp: Path, runs: int, steps: int, layers: int, rate: int, queries: int) -> dict:
    from agd_viz.store import Store

    path = tmp / "read.db"
    store = Store(path)
    t0 = time.perf_counter()
    ids = fill(store, runs, steps, layers)
    fill_s = time.perf_counter() - t0
    store.close()
    store = Store(path)  # a fresh connection, as the app's
    since = steps - 1 - rate

    def timed(fn):
        def run():
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        return run

    rid = ids[len(ids) // 2]
    got = {"metrics": len(store.metrics(rid, since_step=since)),
           "layer_metrics": len(store.layer_metrics(rid, since_step=since))}
    times = C.interleaved({
        "metrics": timed(lambda: store.metrics(rid, since_step=since)),
        "layer_metrics": timed(lambda: store.layer_metrics(rid, since_step=since)),
        "metrics_many_all_runs": timed(lambda: store.metrics_many(ids, since={r: since for r in ids})),
        "metrics_full_run": timed(lambda: store.metrics(rid)),
    }, rounds=queries, warmup=2)
    store.close()
    return {"runs": runs, "steps": steps, "layers": layers, "rate_steps_per_s": rate,
            "db_mb": C.rounded(path.stat().st_size / 1e6), "fill_s": C.rounded(fill_s),
            "rows_read": got,
            "ms": {k: C.rounded(1000 * statistics.median(v)) for k, v in times.items()},
            "ms_p90": {k: C.rounded(1000 * sorted(v)[int(0.9 * (len(v) - 1))]) for k, v in times.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--rate", type=int, default=1000, help="steps a fast run makes per second")
    C.add_thread_args(ap)
    ap.add_argument("--tiny", action="store_true", help="a few seconds, for the smoke test")
    args = ap.parse_args(argv)
    threads = C.setup_torch(args.threads)
    configs = [(8, 128, 600), (16, 256, 300)]
    runs, steps, layers = 10, 10_000, 32
    if args.tiny:
        configs, args.rounds, args.queries = [(3, 16, 30)], 1, 3
        runs, steps, layers, args.rate = 2, 300, 4, 100
    with tempfile.TemporaryDirectory(prefix="agd_viz_bench_store_") as d:
        write = write_cost(configs, args.rounds, Path(d))
        read = read_latency(Path(d), runs, steps, layers, args.rate, args.queries)

    print(f"store write cost: worker.train_into, AGD, every metric (auto cadence), digits batch 128, CPU, "
          f"{threads} thread(s), CPU time, median of {args.rounds} interleaved rounds")
    print(C.table([(f"{w['depth']}x{w['width']}", w["steps"], w["s_null"], w["s_sqlite"], w["ratio"],
                    w["ratio"] <= TARGET_WRITE) for w in write],
                  ("net", "steps", "null sink s", "SQLite s", "ratio", f"<= {TARGET_WRITE}")))
    ms = read["ms"]
    print(f"\nstore reads: {read['runs']} runs x {read['steps']:,} steps x {read['layers']} layers "
          f"({read['db_mb']} MB), newest {args.rate} steps (1 s of a run at {args.rate} steps/s); "
          f"median of {args.queries} reads, wall clock")
    print(C.table([
        ("metrics(run, since_step)", read["rows_read"]["metrics"], ms["metrics"], read["ms_p90"]["metrics"],
         ms["metrics"] <= TARGET_READ_MS),
        ("layer_metrics(run, since_step)", read["rows_read"]["layer_metrics"], ms["layer_metrics"],
         read["ms_p90"]["layer_metrics"], None),
        (f"metrics_many(all {read['runs']} runs, since)", read["rows_read"]["metrics"] * read["runs"],
         ms["metrics_many_all_runs"], read["ms_p90"]["metrics_many_all_runs"], None),
        ("metrics(run) whole run", read["steps"], ms["metrics_full_run"], read["ms_p90"]["metrics_full_run"], None),
    ], ("read", "rows", "median ms", "p90 ms", f"<= {TARGET_READ_MS:g} ms")))
    C.emit({"benchmark": "store_sink", "target_write_ratio": TARGET_WRITE, "target_read_ms": TARGET_READ_MS,
            "threads": threads, "tiny": args.tiny, "write": write, "read": read, "machine": C.machine(),
            "pass": all(w["ratio"] <= TARGET_WRITE for w in write) and ms["metrics"] <= TARGET_READ_MS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
