"""Many sessions on one server: does every run end, does any page fail, how long does a refresh take,
and does each attendee see and control only their own work?

    python -m benchmarks.load [--sessions 30] [--steps 200] [--workers 2] [--write-doc]
    python -m benchmarks.load --sessions 20 --arrive-every 2 --stop-every 3 [--write-doc]

Starts a real `streamlit run app.py` over a fresh run store, then opens `--sessions` sessions at
once, each a real websocket client (benchmarks/st_client.py) on the Live page, as a room of
workshop attendees would: each presses Start on a small comparison (AGD beside Adam, two runs),
then, as a browser does, reruns the page's live-chart fragment on the timer the page sets for it
(1 s, stretched up to 5 s when refreshes get slow) while the runs of everyone queue through the
server's `--workers` workers, until its runs have ended and the page drops the timer. A refresh
is timed from the request to the server's "script finished": it reads the new metrics from the
store and rebuilds the seven charts.

Checked at the end: every run ended in a final state, no page raised, no Start was refused, and
the store is consistent (integrity check; every run's steps 0..N with no gap, its progress row
matching its last metric; no metrics without a run). Printed: refresh latency median / p95 / max,
and one JSON line. `--write-doc` puts the figures into docs/reliability.md.

Sessions arriving while others train (`--arrive-every S`: one every S seconds; each browser has
its own owner cookie): each must open a clean page (not someone else's comparison), start its own
comparison (recorded with its owner), see its own two runs, and, every `--stop-every`-th one,
press Stop on a long comparison, which must end it `cancelled` while the others' runs go on. The
store check adds: every group belongs to the session that started it, and a stopped session's
runs are cancelled, everyone else's finished.

tests/test_load.py runs the same with 4 sessions arriving while others train and tiny runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.st_client import Session, free_port, healthy  # noqa: E402

FINAL = ("finished", "failed", "cancelled", "diverged", "interrupted")
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"
ARRIVALS = ("<!-- arrivals:begin -->", "<!-- arrivals:end -->")  # sessions arriving while others train


@dataclass
class SessionLog:
    refreshes: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    start_s: float | None = None
    token: str = ""  # its browser's owner cookie
    group: int | None = None  # the comparison it started
    stops: bool = False  # presses Stop on a long comparison
    saw_others: int = 0  # pages that showed a comparison it did not start


def owner_id(token: str) -> str:
    """What the app records for a browser with owner cookie `token` (app_resources.session_id)."""
    return hashlib.sha256(f"agd_viz owner {token}".encode()).hexdigest()[:32]


def _shown_group(page) -> int | None:
    found = [int(t.split()[1]) for t in page.texts if re.fullmatch(r"Comparison \d+", t)]
    return found[0] if found else None


def percentile(values, q: float) -> float:
    """The q-quantile by the nearest-rank rule (no interpolation: a real refresh's time)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))
    return ordered[k]


def _session(url: str, query: str, log: SessionLog, timeout: float, stop: threading.Event,
             interval: float | None, delay: float) -> None:
    time.sleep(delay)
    try:
        with Session(url, query=query, timeout=60, cookies={"agd_owner": log.token}) as s:
            page = s.run()
            if page.exceptions:
                log.errors += page.exceptions
                return
            if _shown_group(page) is not None:  # a new session starts clean, whoever trains
                log.saw_others += 1
                log.errors.append(f"a new session was shown comparison {_shown_group(page)}")
            t0 = time.perf_counter()
            page = s.run(triggers=(page.widget("lv_start"),))
            log.start_s = time.perf_counter() - t0
            refused = [a for a in page.alerts if a.startswith("Could not start")]
            if refused:
                log.errors.append(f"start refused: {refused[0]}")
                return
            log.group, stop_button = _shown_group(page), page.widgets.get("lv_stop")
            mine = [t for t in page.texts if re.match(r"^(queued|running|finished|cancelled)\b", t)]
            if log.group is None or len(mine) != 2 or "lv_stop" in page.disabled:
                log.errors.append(f"after Start: comparison {log.group}, runs {mine}, Stop disabled: "
                                  f"{'lv_stop' in page.disabled}")
                return
            deadline = time.monotonic() + timeout
            # As a browser does: rerun the live fragment on the beat the page set for it, until the
            # page drops its timer (its runs ended and it reran in full without one).
            while s.timers and not stop.is_set() and time.monotonic() < deadline:
                fragment, every = next(iter(s.timers.items()))
                time.sleep(every if interval is None else interval)
                page = s.run(fragment=fragment)
                log.refreshes.append(page.seconds)
                if page.exceptions:
                    log.errors += page.exceptions
                    return
                if log.stops and log.stops != "pressed":  # its own Stop, on its own long comparison
                    page = s.run(triggers=(stop_button,))
                    log.stops = "pressed"
            if s.timers and not stop.is_set():
                log.errors.append(f"runs still active after {timeout:g} s")
                return
            page = s.run()  # the page once more: its runs all ended, and say how
            mine = [t for t in page.texts if re.match(r"^(queued|running|finished|failed|cancelled|"
                                                      r"diverged|interrupted)\b", t)]
            if page.exceptions or len(mine) != 2 or not all(t.split(" ")[0] in FINAL for t in mine):
                log.errors.append(f"final page: {page.exceptions or mine}")
            if _shown_group(page) != log.group:
                log.saw_others += 1
                log.errors.append(f"its page shows comparison {_shown_group(page)}, not its own {log.group}")
    except Exception as exc:  # noqa: BLE001 - a failed session is a result, not a crash
        log.errors.append(f"{type(exc).__name__}: {exc}")


def check_store(db: Path, expected_runs: int, logs: list[SessionLog] = ()) -> list[str]:
    """Problems with the store after the load (empty when consistent); with the sessions' `logs`,
    also whether each group is its session's and ended as that session asked."""
    problems = []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            problems.append("integrity_check failed")
        runs = con.execute("SELECT id, status, step, group_id FROM runs").fetchall()
        if len(runs) != expected_runs:
            problems.append(f"{len(runs)} runs in the store, expected {expected_runs}")
        for rid, status, step, _ in runs:
            if status not in FINAL:
                problems.append(f"run {rid} is still {status}")
            steps = [r[0] for r in con.execute("SELECT step FROM metrics WHERE run_id = ? ORDER BY step", (rid,))]
            if steps != list(range(len(steps))):
                problems.append(f"run {rid}: metric steps have gaps or repeats")
            elif steps and step != steps[-1]:
                problems.append(f"run {rid}: progress says step {step}, metrics end at {steps[-1]}")
        orphans = con.execute("SELECT COUNT(*) FROM metrics WHERE run_id NOT IN (SELECT id FROM runs)").fetchone()[0]
        if orphans:
            problems.append(f"{orphans} metric rows without a run")
        groups = con.execute("SELECT group_id, COUNT(*) FROM runs GROUP BY group_id").fetchall()
        if any(n != 2 for _, n in groups):
            problems.append(f"comparisons without exactly two runs: {groups}")
        for i, lg in enumerate(logs):
            if lg.group is None:
                continue
            owners = {o for (o,) in con.execute("SELECT owner FROM runs WHERE group_id = ?", (lg.group,))}
            owners |= {o for (o,) in con.execute("SELECT owner FROM groups WHERE id = ?", (lg.group,))}
            if owners != {owner_id(lg.token)}:
                problems.append(f"session {i}: comparison {lg.group} is not recorded as its own")
            ended = sorted(st for (st,) in con.execute("SELECT status FROM runs WHERE group_id = ?", (lg.group,)))
            want = ["cancelled"] * 2 if lg.stops else ["finished"] * 2
            if ended != want:
                problems.append(f"session {i} ({'stopped' if lg.stops else 'left to finish'}): runs {ended}")
    finally:
        con.close()
    return problems


def run(sessions: int = 4, steps: int = 40, workers: int = 2, interval: float | None = None,
        timeout: float = 300.0, ramp_s: float = 1.0, keep: Path | None = None, arrive_s: float | None = None,
        stop_every: int = 0) -> dict:
    """Run the load against a fresh server; returns the figures and the problems found.
    `arrive_s`: one session every that many seconds (else all within `ramp_s`); `stop_every`:
    every such session (the k-th, 2k-th, ...) starts a long comparison and presses Stop."""
    tmp = Path(tempfile.mkdtemp(prefix="agd-load-")) if keep is None else keep
    db, log = tmp / "runs.db", tmp / "streamlit.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AGD_VIZ_DB": str(db), "PYTHONPATH": str(ROOT), "AGD_VIZ_MAX_WORKERS": str(workers),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(log, "ab") as out:
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    query = f"dataset=digits&depth=2&width=16&batch_size=32&steps={steps}&optimizers=agd,adam&adam_lr=1e-3"
    long_query = query.replace(f"steps={steps}", "steps=20000")
    logs = [SessionLog(token=f"{i:032x}", stops=bool(stop_every) and i % stop_every == stop_every - 1)
            for i in range(sessions)]
    stop = threading.Event()
    started = time.perf_counter()
    try:
        deadline = time.monotonic() + 90
        while not healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {log}")
            time.sleep(0.2)
        delays = [arrive_s * i if arrive_s is not None else ramp_s * i / max(sessions, 1) for i in range(sessions)]
        threads = [threading.Thread(target=_session, args=(url, long_query if logs[i].stops else query, logs[i],
                                                           timeout, stop, interval, delays[i]), daemon=True)
                   for i in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 60)
        stop.set()
        elapsed = time.perf_counter() - started
        alive = server.poll() is None
    finally:
        stop.set()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    refreshes = [r for lg in logs for r in lg.refreshes]
    starts = [lg.start_s for lg in logs if lg.start_s is not None]
    errors = [f"session {i}: {e}" for i, lg in enumerate(logs) for e in lg.errors]
    if not alive:
        errors.append("the server died during the load")
    problems = errors + check_store(db, 2 * sessions, logs if arrive_s is not None or stop_every else ())
    return {
        "sessions": sessions, "runs": 2 * sessions, "workers": workers, "steps": steps,
        "arrive_s": arrive_s, "stop_every": stop_every, "stopped": sum(bool(lg.stops) for lg in logs),
        "saw_others": sum(lg.saw_others for lg in logs),
        "refreshes": len(refreshes), "refresh_p50_s": round(statistics.median(refreshes), 3) if refreshes else None,
        "refresh_p95_s": round(percentile(refreshes, 0.95), 3), "refresh_max_s": round(max(refreshes), 3) if refreshes else None,
        "start_p95_s": round(percentile(starts, 0.95), 3), "elapsed_s": round(elapsed, 1),
        "cpus": os.cpu_count(), "machine": platform.machine(), "problems": problems, "db": str(db),
    }


def _doc_block(r: dict) -> str:
    return (f"{BEGIN}\n"
            f"| sessions | runs | workers | steps/run | refreshes | refresh p50 | refresh p95 | refresh max | "
            f"Start p95 | all runs done in | problems |\n"
            f"|---|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {r['sessions']} | {r['runs']} | {r['workers']} | {r['steps']} | {r['refreshes']} | "
            f"{r['refresh_p50_s']:.2f} s | {r['refresh_p95_s']:.2f} s | {r['refresh_max_s']:.2f} s | "
            f"{r['start_p95_s']:.2f} s | {r['elapsed_s']:.0f} s | {len(r['problems'])} |\n\n"
            f"Measured {time.strftime('%Y-%m-%d')} on {r['cpus']} CPU cores ({r['machine']}) with "
            f"`python -m benchmarks.load --sessions {r['sessions']} --steps {r['steps']} --workers {r['workers']}`.\n"
            f"{END}")


def _arrivals_block(r: dict) -> str:
    begin, end = ARRIVALS
    return (f"{begin}\n"
            f"| sessions | one arrives every | stopped by their owner | runs | workers | steps/run | refreshes | "
            f"refresh p50 | refresh p95 | Start p95 | all runs done in | pages showing another's comparison | "
            f"problems |\n"
            f"|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {r['sessions']} | {r['arrive_s']:g} s | {r['stopped']} | {r['runs']} | {r['workers']} | {r['steps']} | "
            f"{r['refreshes']} | {r['refresh_p50_s']:.2f} s | {r['refresh_p95_s']:.2f} s | {r['start_p95_s']:.2f} s | "
            f"{r['elapsed_s']:.0f} s | {r['saw_others']} | {len(r['problems'])} |\n\n"
            f"Measured {time.strftime('%Y-%m-%d')} on {r['cpus']} CPU cores ({r['machine']}) with "
            f"`python -m benchmarks.load --sessions {r['sessions']} --steps {r['steps']} --workers {r['workers']} "
            f"--arrive-every {r['arrive_s']:g} --stop-every {r['stop_every']}`.\n"
            f"{end}")


def write_doc(r: dict, path: Path = DOC) -> None:
    text = path.read_text() if path.exists() else ""
    (begin, end), block = ((ARRIVALS, _arrivals_block(r)) if r.get("arrive_s") is not None
                           else ((BEGIN, END), _doc_block(r)))
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=30)
    p.add_argument("--steps", type=int, default=200, help="steps of each run (AGD and Adam per session)")
    p.add_argument("--workers", type=int, default=2, help="the server's AGD_VIZ_MAX_WORKERS")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between a session's refreshes (default: the page's own timer, as a browser)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a session waits for its runs")
    p.add_argument("--arrive-every", type=float, default=None,
                   help="seconds between sessions arriving (default: all within the first second)")
    p.add_argument("--stop-every", type=int, default=0,
                   help="every k-th session starts a long comparison and presses Stop (default: none)")
    p.add_argument("--write-doc", action="store_true", help=f"put the figures into {DOC.relative_to(ROOT)}")
    args = p.parse_args(argv)
    r = run(args.sessions, args.steps, args.workers, args.interval, args.timeout, arrive_s=args.arrive_every,
            stop_every=args.stop_every)
    print(f"{r['sessions']} sessions, {r['runs']} runs on {r['workers']} workers, {r['steps']} steps each: "
          f"all done in {r['elapsed_s']:.0f} s")
    print(f"page refresh ({r['refreshes']} of them): median {r['refresh_p50_s']:.3f} s, "
          f"p95 {r['refresh_p95_s']:.3f} s, max {r['refresh_max_s']:.3f} s; Start p95 {r['start_p95_s']:.3f} s")
    for problem in r["problems"]:
        print(f"PROBLEM: {problem}")
    print(json.dumps({k: v for k, v in r.items() if k != "db"}))
    if args.write_doc:
        write_doc(r)
    return 1 if r["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
