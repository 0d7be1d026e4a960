"""Jobs on a Ray cluster (agd_viz.cluster) against the local job manager, on a two-node Ray cluster
started here on loopback (a head and a worker node, one CPU each, `ray.cluster_utils.Cluster`).

    python -m benchmarks.ray_cluster [--rounds 3] [--only overhead,sweep,ingest] [--tiny]

1. Overhead of one job. The Live page's default comparison (digits, depth 8 x width 128, AGD and
   Adam side by side, every metric, `--steps` steps) as one job through the Ray backend and as one
   job of the local job manager (a worker subprocess, no pre-started spare), interleaved round by
   round. Submit -> first record (the first minibatch loss in the store): locally; the driver's
   first job on the cluster (Ray starts a worker process); the app's first job (joined with
   `warm_up()`, as `cluster.from_env` does, idle until it is done); later jobs (worker reused).
   Per-step cost in the steady state: the second half of the run on the training process's own
   clock (training plus handing records on: to the SQLite store locally, to Ray's stream on the
   cluster), so a fresh process's warm-up is not counted as streaming; also the whole run, and the
   driver's view (first record -> last step written, per step). Targets: per-step ratio <= 1.10,
   first record <= 2 s (the app's first job).
2. A 4 x 2 digits sweep (depths 2, 4, 8, 16 x widths 64, 128; AGD and Adam; 300 steps, no
   per-layer metrics, as the Sweep page runs it) on the two-node cluster against the local job
   manager with the same two jobs at a time: wall-time ratio Ray / local.
3. The driver's ingest. Synthetic jobs (a Ray task that streams rows shaped like `train.Step`'s
   at a set rate, no training) through the real backend and writer, 2 runs per job at `--rate`
   steps/s each, for more and more jobs at once: rows written per second against rows offered;
   the point where the writer falls behind is where one driver saturates. Then past it with the
   writer's thinning on (runs of a sweep, which nobody watches step by step): the backlog stays
   bounded, and every evaluated and final row is still stored. A separate cluster with many
   logical CPUs, so that the jobs are not limited by the two real cores' slots.

Each part prints a table; the last line is the JSON result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# Ray reads these at import: loopback only, no auth token (docs/cluster.md).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

TARGET_STEP_RATIO = 1.10
TARGET_FIRST_S = 2.0
FINAL = ("finished", "failed", "cancelled", "diverged", "interrupted")
NODE = {"object_store_memory": 100 * 2**20, "node_ip_address": "127.0.0.1"}


class LocalCluster:
    """A head and a worker node on this machine, for the life of a `with` block."""

    def __init__(self, cpus_per_node: int):
        self.cpus = cpus_per_node
        self.temp = tempfile.mkdtemp(prefix="agdray-bench-")

    def __enter__(self):
        import ray  # noqa: F401
        from ray.cluster_utils import Cluster

        # Cluster() writes the head's address to Ray's default folder whatever temp_dir is.
        os.makedirs(os.path.join(tempfile.gettempdir(), "ray"), exist_ok=True)
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(C.ROOT), saved) if p)  # "installed"
        try:
            self.cluster = Cluster(initialize_head=True, head_node_args={
                **NODE, "num_cpus": self.cpus, "include_dashboard": False, "temp_dir": self.temp})
            self.cluster.add_node(**NODE, num_cpus=self.cpus)
            self.cluster.wait_for_nodes()
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        return self.cluster.address

    def __exit__(self, *exc):
        import shutil

        import ray

        ray.shutdown()
        self.cluster.shutdown()
        shutil.rmtree(self.temp, ignore_errors=True)


class Watch(threading.Thread):
    """Polls a store file: when each run got its first minibatch loss."""

    def __init__(self, db: Path, period: float = 0.01):
        super().__init__(daemon=True)
        self.db, self.period = db, period
        self.first: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self):
        import sqlite3

        while not self.stop.is_set():
            try:
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
                for (rid,) in conn.execute("SELECT DISTINCT run_id FROM metrics WHERE loss IS NOT NULL"):
                    self.first.setdefault(rid, time.time())
                conn.close()
            except sqlite3.Error:
                pass
            time.sleep(self.period)


def wait_for(cond, timeout: float = 300, period: float = 0.01):
    end = time.monotonic() + timeout
    while not (got := cond()):
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {timeout:g} s")
        time.sleep(period)
    return got


def wait_ended(store, ids, timeout: float = 600) -> float:
    end = time.monotonic() + timeout
    while True:
        rows = [store.get_run(r) for r in ids]
        if all(r["status"] in FINAL for r in rows):
            return time.time()
        if time.monotonic() > end:
            raise RuntimeError(f"runs {ids} did not end within {timeout:g} s")
        time.sleep(0.02)


def one_job(manager, spec, watch: Watch) -> dict:
    t0 = time.time()
    _, ids = manager.submit(spec)
    t_end = wait_ended(manager.store, ids)
    time.sleep(0.05)
    rows = [manager.store.get_run(r) for r in ids]
    assert all(r["status"] == "finished" for r in rows), [(r["status"], r["error"]) for r in rows]
    first = min(watch.first.get(r, t_end) for r in ids)
    steps = spec.steps
    # Steady state: the second half of the run, on the training process's own clock (`t`), so a
    # fresh process's warm-up (allocator, kernel caches) does not count as a cost of streaming.
    m = manager.store.metrics(ids[0])
    half, last = m[m.step >= steps // 2].iloc[0], m.iloc[-1]
    return {"first_s": first - t0, "driver_per_step_ms": 1e3 * (t_end - first) / steps,
            "train_per_step_ms": 1e3 * rows[0]["summary"]["elapsed_s"] / steps,
            "steady_per_step_ms": 1e3 * (last.t - half.t) / (last.step - half.step)}


# -- 1. one job ------------------------------------------------------------------------------------


def overhead(address: str, rounds: int, steps: int, tmp: Path, settle: float = 1.0) -> dict:
    from agd_viz.cluster import RayBackend
    from agd_viz.jobs import JobManager
    from agd_viz.spec import RunSpec

    spec = RunSpec(dataset="digits", depth=8, width=128, batch_size=128, steps=steps,
                   optimizers=("agd", "adam:lr=1e-3"), metrics="full", device="cpu")
    import ray

    db_l, db_r, db_w = tmp / "local.db", tmp / "ray.db", tmp / "warm.db"
    # The app's first Start: joined with warm_up() (from_env does it), idle until the warm-up is
    # done (a presenter talking; it takes seconds), then a job.
    warm_manager = JobManager(db_w, backend=RayBackend.connect(address, db_w))
    t0 = time.time()
    ray.get(warm_manager.backend.warm_up())
    warm_up_s = time.time() - t0
    time.sleep(settle)
    watch = Watch(db_w)
    watch.start()
    try:
        warmed = one_job(warm_manager, spec, watch)
    finally:
        watch.stop.set()
        warm_manager.shutdown()
        ray.shutdown()  # a new driver: Ray ends the old one's worker processes
    local = JobManager(db_l, max_workers=1, prewarm=0, nice=0)  # Ray's workers are not niced either
    t0 = time.time()
    ray_manager = JobManager(db_r, backend=RayBackend.connect(address, db_r))
    connect_s = time.time() - t0
    watches = {"local": Watch(db_l), "ray": Watch(db_r)}
    for w in watches.values():
        w.start()
    try:
        cold = one_job(ray_manager, spec, watches["ray"])  # the driver's first job, no warm-up: a worker starts
        got = {"local": [], "ray": []}
        for r in range(rounds):
            for name in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
                got[name].append(one_job(local if name == "local" else ray_manager, spec, watches[name]))
    finally:
        for w in watches.values():
            w.stop.set()
        local.shutdown()
        ray_manager.shutdown()

    def med(name, key):
        return statistics.median(x[key] for x in got[name])

    train_ratio = C.paired_ratio([x["steady_per_step_ms"] for x in got["ray"]],
                                 [x["steady_per_step_ms"] for x in got["local"]])
    driver_ratio = C.paired_ratio([x["driver_per_step_ms"] for x in got["ray"]],
                                  [x["driver_per_step_ms"] for x in got["local"]])
    print(f"1. one job: digits 8 x 128, AGD + Adam side by side, every metric, {steps} steps; "
          f"{rounds} rounds, median; joining the cluster took {connect_s:.1f} s, the warm-up {warm_up_s:.1f} s")
    rows = [("local subprocess (no spare)", med("local", "first_s"), med("local", "steady_per_step_ms"),
             med("local", "train_per_step_ms"), med("local", "driver_per_step_ms")),
            ("Ray, first job, no warm-up (CLI)", cold["first_s"], cold["steady_per_step_ms"],
             cold["train_per_step_ms"], cold["driver_per_step_ms"]),
            ("Ray, first job after warm-up (app)", warmed["first_s"], warmed["steady_per_step_ms"],
             warmed["train_per_step_ms"], warmed["driver_per_step_ms"]),
            ("Ray, later jobs (worker reused)", med("ray", "first_s"), med("ray", "steady_per_step_ms"),
             med("ray", "train_per_step_ms"), med("ray", "driver_per_step_ms")),
            ("ratio Ray / local", None, train_ratio, None, driver_ratio)]
    print(C.table(rows, ("job", "submit -> first record s", "steady ms/step", "whole run ms/step",
                         "driver ms/step")))
    return {"steps": steps, "connect_s": C.rounded(connect_s), "warm_up_s": C.rounded(warm_up_s),
            "first_s": {"local": C.rounded(med("local", "first_s")), "ray_cold": C.rounded(cold["first_s"]),
                        "ray_after_warm_up": C.rounded(warmed["first_s"]),
                        "ray_warm": C.rounded(med("ray", "first_s"))},
            "steady_ms_per_step": {"local": C.rounded(med("local", "steady_per_step_ms")),
                                   "ray": C.rounded(med("ray", "steady_per_step_ms"))},
            "train_ms_per_step": {"local": C.rounded(med("local", "train_per_step_ms")),
                                  "ray": C.rounded(med("ray", "train_per_step_ms"))},
            "driver_ms_per_step": {"local": C.rounded(med("local", "driver_per_step_ms")),
                                   "ray": C.rounded(med("ray", "driver_per_step_ms"))},
            "step_ratio": C.rounded(train_ratio), "driver_step_ratio": C.rounded(driver_ratio),
            "pass": train_ratio <= TARGET_STEP_RATIO and warmed["first_s"] <= TARGET_FIRST_S}


# -- 2. a sweep ------------------------------------------------------------------------------------


def sweep(address: str, rounds: int, steps: int, tmp: Path, depths="2,4,8,16", widths="64,128") -> dict:
    from agd_viz.cluster import RayBackend
    from agd_viz.jobs import JobManager
    from agd_viz.spec import SweepConfig

    config = SweepConfig(depths=depths, widths=widths, optimizers=("agd", "adam:lr=1e-3"), steps=steps,
                         batch_size=128, metrics="none", device="cpu")
    times = {"local": [], "ray": []}
    for r in range(rounds):
        for name in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
            db = tmp / f"sweep-{name}-{r}.db"
            backend = RayBackend.connect(address, db) if name == "ray" else None
            manager = JobManager(db, max_workers=None if backend else 2, prewarm=0, nice=0, backend=backend)
            try:
                t0 = time.time()
                _, ids = manager.submit_group(config.specs(), group_spec=config.to_dict())
                times[name].append(wait_ended(manager.store, ids) - t0)
                assert all(manager.store.get_run(i)["status"] == "finished" for i in ids)
            finally:
                manager.shutdown()
    ratio = C.paired_ratio(times["ray"], times["local"])
    print(f"\n2. sweep: {config.describe_size()}, {steps} steps, two jobs at a time on each side; {rounds} rounds")
    print(C.table([("local job manager (2 workers)", C.median(times["local"])),
                   ("Ray, two nodes x 1 CPU", C.median(times["ray"])), ("ratio Ray / local", ratio)],
                  ("", "wall s")))
    return {"cells": config.n_cells, "runs": config.n_cells * 2, "steps": steps,
            "local_s": C.rounded(C.median(times["local"])), "ray_s": C.rounded(C.median(times["ray"])),
            "ratio": C.rounded(ratio)}


# -- 3. the driver's ingest ------------------------------------------------------------------------


def make_producer(rate: float, layers: int, batch_s: float = 0.1, eval_every: int = 50):
    """A Ray task with the node task's signature that streams rows like train's, `rate` steps/s
    for each optimiser of its spec, and ends them; no torch."""
    from agd_viz.store import LAYER_METRICS

    def produce(spec_dict, run_ids, driver_version, flags, data_url, threads):
        import os
        import time

        nan = float("nan")
        steps, n = int(spec_dict["steps"]), len(spec_dict["optimizers"])
        per_layer = {k: [0.5] * layers for k in LAYER_METRICS} if layers else None
        yield {"hello": {"node": "synthetic", "node_id": "", "pid": os.getpid(), "device": "cpu",
                         "version": driver_version, "code": "benchmarks.ray_cluster"}}
        t0, done = time.perf_counter(), 0
        while done < steps:
            time.sleep(batch_s)
            t = time.perf_counter() - t0
            due = min(steps, int(t * rate))
            if due <= done:
                continue
            batch = []
            for opt in range(n):
                rows = []
                for s in range(done + 1, due + 1):
                    ev = s % eval_every == 0 or s == steps
                    row = {"step": s, "t": t, "loss": 1.0 / s, "acc": 0.5, "eta": 0.1, "G": 0.2, "lr": nan,
                           "train_loss": 1.0 / s if ev else nan, "train_acc": 0.5 if ev else nan,
                           "test_loss": 1.0 / s if ev else nan, "test_acc": 0.5 if ev else nan}
                    if per_layer is not None:
                        row["layers"] = per_layer
                    rows.append(row)
                batch.append((opt, rows))
            done = due
            yield {"steps": batch}
        yield {"ends": [(opt, "finished", steps, None, {"steps": steps, "elapsed_s": time.perf_counter() - t0})
                        for opt in range(n)]}

    return produce


def ingest_level(address: str, tmp: Path, jobs: int, rate: float, seconds: float, layers: int, thin: bool) -> dict:
    import ray

    from agd_viz.cluster import RayBackend
    from agd_viz.jobs import JobManager
    from agd_viz.spec import RunSpec

    db = tmp / f"ingest-{jobs}-{layers}-{int(thin)}.db"
    backend = RayBackend.connect(address, db, thin_after=None if thin else float("inf"))
    backend.task = ray.remote(max_retries=0)(make_producer(rate, layers))
    manager = JobManager(db, backend=backend)
    steps = int(rate * seconds)
    specs = [RunSpec(dataset="digits", depth=2, width=8, steps=steps, seed=k, optimizers=("agd", "adam"),
                     metrics="none") for k in range(jobs)]
    peak = 0
    try:
        _, ids = manager.submit_group(specs, kind="sweep")  # a sweep: its runs may be thinned
        writer = backend.writer
        # From the moment every job streams (Ray starts their worker processes first).
        t0 = wait_for(lambda: len(backend.jobs) == jobs and all(j.node for j in backend.jobs) and time.time())
        while not all(manager.store.get_run(r)["status"] in FINAL for r in ids):
            peak = max(peak, writer.waiting_rows)
            time.sleep(0.05)
        elapsed = time.time() - t0
        offered = jobs * 2 * steps
        written, dropped = writer.written_rows, writer.dropped_rows
        # How long the producers took to stream their rows (2 cores: they may fall behind their rate too).
        produced_s = max(manager.store.get_run(r)["summary"]["elapsed_s"] for r in ids)
        kept_all_final = True
        for rid in ids:
            m = manager.store.metrics(rid)
            evals = set(m.step[m.train_loss.notna()])
            want = {s for s in range(50, steps + 1, 50)} | {steps}
            kept_all_final &= want <= evals and int(m.step.max()) == steps
            kept_all_final &= manager.store.get_run(rid)["status"] == "finished"
    finally:
        manager.shutdown()
    return {"jobs": jobs, "rate": rate, "layers": layers, "thin": thin, "offered_per_s": offered / seconds,
            "produced_per_s": offered / produced_s, "written_per_s": written / elapsed,
            "handled_per_s": (written + dropped) / elapsed, "elapsed_s": elapsed, "produced_s": produced_s,
            "behind_s": elapsed - produced_s, "seconds": seconds, "peak_backlog": peak, "dropped": dropped,
            "kept_evaluated_and_final": bool(kept_all_final)}


def saturated(x: dict) -> bool:
    """The writer fell behind: it finished writing more than a second after the producers finished
    producing, with more than a second of rows waiting at some point."""
    return x["behind_s"] > 1.0 and x["peak_backlog"] > x["produced_per_s"]


def ingest(rate: float, seconds: float, levels: list[int], layers: int, tmp: Path) -> dict:
    print(f"\n3. ingest: synthetic jobs of 2 runs x {rate:g} steps/s, {seconds:g} s each"
          + (f", {layers} layers per row" if layers else "") + "; one driver, one writer")
    out = []
    with LocalCluster(cpus_per_node=64) as address:
        for n in levels:
            out.append(ingest_level(address, tmp, n, rate, seconds, layers, thin=False))
        over = ingest_level(address, tmp, levels[-1], rate, seconds, layers, thin=True)
    rows = [(f"{x['jobs']} jobs" + (", thinning on" if x["thin"] else ""), x["offered_per_s"], x["produced_per_s"],
             x["written_per_s"], x["behind_s"], x["peak_backlog"], x["dropped"],
             x["kept_evaluated_and_final"] if x["thin"] else None) for x in [*out, over]]
    print(C.table(rows, ("", "rows offered/s", "produced/s", "written/s", "writer behind s", "peak backlog",
                         "rows dropped", "evaluated + final kept")))
    capacity = max(x["written_per_s"] for x in out)
    kept_up = [x for x in out if not saturated(x)]
    saturates_at = next((x["jobs"] for x in out if saturated(x)), None)
    print(f"one driver wrote up to {capacity:,.0f} rows/s"
          + (f"; it fell behind from {saturates_at} jobs" if saturates_at else
             f"; it kept up with every level (to {kept_up[-1]['produced_per_s']:,.0f} rows/s produced)")
          + f"; {capacity / 1000:,.0f} rows/s per 1,000 = workers of small nets at 500 steps/s x 2 runs")
    return {"rate": rate, "seconds": seconds, "layers": layers, "levels": [_round(x) for x in out],
            "thinning": _round(over), "capacity_rows_per_s": C.rounded(capacity), "saturates_at_jobs": saturates_at}


def _round(x: dict) -> dict:
    return {k: (C.rounded(v) if isinstance(v, float) else v) for k, v in x.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600, help="steps of the one-job comparison")
    ap.add_argument("--sweep-steps", type=int, default=300)
    ap.add_argument("--rate", type=float, default=4000.0, help="steps/s per synthetic run")
    ap.add_argument("--seconds", type=float, default=6.0, help="how long each synthetic job streams")
    ap.add_argument("--levels", default="1,2,4,8,12,16", help="synthetic jobs at once, comma-separated")
    ap.add_argument("--layers", type=int, default=0, help="per-layer metrics in every synthetic row (0: none)")
    ap.add_argument("--only", default="overhead,sweep,ingest")
    ap.add_argument("--tiny", action="store_true", help="one short round of each, for the smoke test")
    args = ap.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        C.emit({"benchmark": "ray_cluster", "skipped": "Ray is not installed (pip install 'ray==2.60.0')"})
        return 0
    if args.tiny:
        args.rounds, args.steps, args.sweep_steps, args.seconds, args.levels = 1, 60, 30, 2.0, "1,2"
    parts = set(args.only.split(","))
    result = {"benchmark": "ray_cluster", "tiny": args.tiny}
    C.setup_torch(1)
    with tempfile.TemporaryDirectory(prefix="agd_viz_bench_ray_") as d:
        tmp = Path(d)
        if parts & {"overhead", "sweep"}:
            with LocalCluster(cpus_per_node=1) as address:
                if "overhead" in parts:
                    result["overhead"] = overhead(address, args.rounds, args.steps, tmp)
                if "sweep" in parts:
                    result["sweep"] = sweep(address, max(1, args.rounds - 1), args.sweep_steps, tmp,
                                            *(("2,4", "64") if args.tiny else ()))
        if "ingest" in parts:
            levels = [int(v) for v in args.levels.split(",")]
            result["ingest"] = ingest(args.rate, args.seconds, levels, args.layers, tmp)
    result["machine"] = C.machine()
    C.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
