"""Does the app server stay responsive while runs train in the background?

    python -m benchmarks.app_responsiveness [--requests 30] [--runs 2] [--nice 10]

Starts a real `streamlit run app.py` on a free port, measures the latency of two trivial requests
(GET `/`, the page shell, and GET `/_stcore/health`) with nothing training, then again while
`--runs` runs train through `agd_viz.jobs.JobManager`, and prints a table plus one JSON line whose
`ratio` is training / idle median latency. The baseline is measured in the same invocation on
the same machine, so the ratio means something on a laptop and on a loaded CI box alike.

Why these requests: they are served by the server's event loop alone, so their latency is
exactly "is the server process getting CPU". Training never runs in the server (workers are
subprocesses), so what this measures is contention for cores, which the manager limits by its
cap, its OMP_NUM_THREADS share and the workers' nice level.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = ("/", "/_stcore/health")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10.0) -> float:
    """Latency in ms of one GET on a fresh connection (as a new browser tab would make)."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        r.read()
        if r.status != 200:
            raise RuntimeError(f"GET {url} answered {r.status}")
    return 1000 * (time.perf_counter() - t0)


def start_server(port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_healthy(base: str, server: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{server.stderr.read()}")
        try:
            get(base + "/_stcore/health", timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"streamlit did not become healthy within {timeout} s")


def measure(base: str, n: int) -> dict[str, list[float]]:
    out = {e: [] for e in ENDPOINTS}
    for _ in range(n):
        for e in ENDPOINTS:  # interleaved, so both see the same conditions
            out[e].append(get(base + e))
            time.sleep(0.02)
    return out


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "p90": xs[int(0.9 * (len(xs) - 1))], "max": xs[-1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=30, help="requests per endpoint per phase")
    ap.add_argument("--runs", type=int, default=2, help="runs training during the second phase")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--nice", type=int, default=10, help="workers' nice increment (0: same priority as the app)")
    args = ap.parse_args(argv)

    from agd_viz.jobs import JobManager
    from agd_viz.spec import RunSpec

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(port)
    tmp = tempfile.TemporaryDirectory(prefix="agd_viz_bench_")
    manager = None
    try:
        wait_healthy(base, server)
        measure(base, 5)  # warm-up: first requests pay for imports and caches
        idle = measure(base, args.requests)

        manager = JobManager(Path(tmp.name) / "runs.db", max_workers=args.runs, nice=args.nice)
        opts = ("agd", "adam:lr=1e-3", "sgd:lr=0.1", "adamw:lr=1e-3")
        spec = RunSpec(dataset="digits", depth=args.depth, width=args.width, steps=1_000_000, device="auto",
                       optimizers=tuple(opts[k % len(opts)] for k in range(args.runs)))
        _, ids = manager.submit(spec, name="responsiveness benchmark")
        deadline = time.monotonic() + 120
        while not all((p["step"] or 0) > 0 for p in manager.progress(ids).values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the training runs did not start within 120 s")
            time.sleep(0.1)
        before = manager.progress(ids)
        t0 = time.perf_counter()
        training = measure(base, args.requests)
        elapsed = time.perf_counter() - t0
        after = manager.progress(ids)
        steps_per_s = sum((after[r]["step"] - before[r]["step"]) for r in ids) / elapsed
        statuses = sorted({p["status"] for p in after.values()})
    finally:
        if manager is not None:
            manager.shutdown(cancel_running=True, timeout=5)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        tmp.cleanup()

    rows = []
    for e in ENDPOINTS:
        rows.append(("idle", e, summary(idle[e])))
        rows.append((f"{args.runs} runs training", e, summary(training[e])))
    print(f"{'phase':<18} {'request':<21} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for phase, e, s in rows:
        print(f"{phase:<18} {'GET ' + e:<21} {s['median']:>10.2f} {s['p90']:>8.2f} {s['max']:>8.2f}")
    idle_all = [x for e in ENDPOINTS for x in idle[e]]
    train_all = [x for e in ENDPOINTS for x in training[e]]
    result = {
        "benchmark": "app_responsiveness",
        "requests_per_endpoint": args.requests,
        "runs": args.runs,
        "run_statuses_during": statuses,
        "training_steps_per_s_total": round(steps_per_s, 1),
        "worker_nice": args.nice,
        "cpu_count": os.cpu_count(),
        "idle_median_ms": round(statistics.median(idle_all), 3),
        "training_median_ms": round(statistics.median(train_all), 3),
        "ratio": round(statistics.median(train_all) / statistics.median(idle_all), 3),
        **{f"ratio_{name}": round(summary(training[e])["median"] / summary(idle[e])["median"], 3)
           for name, e in zip(("page", "health"), ENDPOINTS)},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
