"""Time from pressing "Start training" to the first point on the Live page's loss chart, in a browser.

    python -m benchmarks.first_point [--mode both|cold|warm] [--repeats 3] [--click-after 2] [--tiny]

A real `streamlit run app.py` (tests/browser/server.py) against a temporary run store, Debian's
chromium driven by Playwright, the Live page's default comparison (AGD + Adam at lr 1e-3, depth
8 x 128 on digits).

cold  As a presenter lives it: for each repeat a fresh server and a fresh run store; open `/` in a
      new browser context as soon as the server answers its health check, wait for the Start
      button, press it `--click-after` s later (the issue's presenter presses within 5 s of the page
      appearing), and time until the loss chart holds a point. Median over fresh servers;
      target <= 1.5 s.
warm  One server that has been up a while: open the page, let it idle `--settle` s, then press
      Start, wait for the runs to end, idle again, press again (200-step runs). Median over the
      starts; target <= 1 s.

Meanwhile a thread watches the run store, which splits each start into
  submit    click -> the runs' rows exist (the browser's message, the page's callback, `submit`);
  worker    rows -> the worker runs the job (it records its device: a pre-started worker that
            was ready takes the job at once, one still importing torch finishes that first);
  first row worker -> the first minibatch loss is in the store (run ids, data, models, the state
            at init, the first step, its host copy and write);
  chart     first row -> a point on the chart (the page's next poll, its script run, rendering).
The loss chart is read in the page every 50 ms (`server.PLOT_POINTS_JS`).
The baseline, timed in the same run: `python -c "import torch"` in a fresh process, the one cost
a worker that was not started ahead cannot avoid.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

sys.path.insert(0, str(C.ROOT / "tests" / "browser"))

TARGET_COLD_S = 1.5
TARGET_WARM_S = 1.0
MAX_CLICK_AFTER_S = 5.0
WARM_CONFIG = "depth=8&width=128&batch_size=128&steps={steps}&optimizers=agd,adam&adam_lr=1e-3"
FINAL = {"finished", "failed", "cancelled", "diverged", "interrupted"}
PARTS = ("submit_s", "worker_s", "first_row_s", "chart_s")


def torch_import_s(n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class StoreWatch(threading.Thread):
    """Polls the run store: when each run appeared, started, and got its first finite loss."""

    def __init__(self, db: Path, period: float = 0.02):
        super().__init__(daemon=True)
        self.db, self.period = db, period
        self.seen: dict[int, dict] = {}
        self.stop = threading.Event()

    def run(self):
        import sqlite3

        while not self.stop.is_set():
            try:
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
                rows = conn.execute("SELECT id, status, created, device FROM runs").fetchall()
                for rid, status, created, device in rows:
                    info = self.seen.setdefault(rid, {"created": created, "seen": time.time()})
                    info["status"] = status
                    if device and "started" not in info:  # the worker's start_run(): it is training
                        info["started"] = time.time()
                    if "first_row" not in info:
                        hit = conn.execute("SELECT 1 FROM metrics WHERE run_id = ? AND loss IS NOT NULL LIMIT 1",
                                           (rid,)).fetchone()
                        if hit:
                            info["first_row"] = time.time()
                conn.close()
            except sqlite3.Error:
                pass  # not created yet, or busy: next poll
            time.sleep(self.period)


def loss_points(page) -> int:
    from server import PLOT_POINTS_JS

    found = page.evaluate(PLOT_POINTS_JS)
    return found[0]["points"] if found else 0


def one_start(page, watch: StoreWatch, group: int, timeout: float = 90.0) -> tuple[dict, list[int]]:
    """Press Start; seconds to the first point on the loss chart, split by what the store saw."""
    from server import wait_idle

    before = set(watch.seen)
    t_click = time.time()
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(f"Comparison {group}", exact=True).wait_for(timeout=timeout * 1000)
    t_page = time.time()
    while loss_points(page) == 0:
        if time.time() - t_click > timeout:
            raise RuntimeError(f"no point on the loss chart {timeout:g} s after Start")
        page.wait_for_timeout(50)
    t_point = time.time()
    wait_idle(page)
    new = sorted(set(watch.seen) - before)
    first = watch.seen.get(new[0], {}) if new else {}
    out = {"total_s": t_point - t_click, "page_rerun_s": t_page - t_click}
    if first.get("created") and first.get("started") and first.get("first_row"):
        out.update(submit_s=first["created"] - t_click, worker_s=first["started"] - first["created"],
                   first_row_s=first["first_row"] - first["started"], chart_s=t_point - first["first_row"])
    return out, new


def wait_final(watch: StoreWatch, ids, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not all(watch.seen.get(r, {}).get("status") in FINAL for r in ids):
        if time.time() > end:
            raise RuntimeError(f"runs {ids} did not finish within {timeout:g} s")
        time.sleep(0.1)


def new_page(browser):
    page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
    page.set_default_timeout(90_000)
    return page


def cold(browser, repeats: int, click_after: float) -> list[dict]:
    """One fresh server per start: open `/`, press Start `click_after` s after it appears."""
    from server import running_app

    results = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="agd_viz_bench_first_point_") as d:
            db = Path(d) / "runs.db"
            watch = StoreWatch(db)
            watch.start()
            t_server = time.time()
            with running_app(db, Path(d) / "streamlit.log") as url:
                t_up = time.time()
                page = new_page(browser)
                page.goto(f"{url}/")
                page.get_by_role("button", name="Start training").wait_for(state="visible")
                t_shown = time.time()
                time.sleep(max(0.0, t_shown + click_after - time.time()))
                got, _ = one_start(page, watch, group=1)
                got.update(server_up_s=t_up - t_server, page_shown_s=t_shown - t_up)
                results.append(got)
                page.context.close()
            watch.stop.set()
    return results


def warm(browser, repeats: int, settle: float, steps: int) -> list[dict]:
    """One server: idle `settle` s, press Start, wait for the runs to end, repeat."""
    from server import running_app, wait_idle

    results = []
    with tempfile.TemporaryDirectory(prefix="agd_viz_bench_first_point_") as d:
        db = Path(d) / "runs.db"
        watch = StoreWatch(db)
        with running_app(db, Path(d) / "streamlit.log") as url:
            page = new_page(browser)
            page.goto(f"{url}/?{WARM_CONFIG.format(steps=steps)}")
            wait_idle(page)
            time.sleep(settle)  # the app has just started: give it the idle time a presenter would
            watch.start()
            for k in range(repeats):
                got, ids = one_start(page, watch, group=k + 1)
                results.append(got)
                wait_final(watch, ids)
                if k + 1 < repeats:
                    time.sleep(settle)
            page.context.close()
        watch.stop.set()
    return results


def summary(results: list[dict]) -> dict:
    keys = ("total_s", *PARTS, "server_up_s", "page_shown_s")
    return {k: statistics.median(r[k] for r in results) for k in keys if results and all(k in r for r in results)}


def show(title: str, results: list[dict], target: float) -> dict:
    med = summary(results)
    print(title)
    rows = [(f"start {i + 1}", *(r.get(k) for k in PARTS), r["total_s"], r["total_s"] <= target)
            for i, r in enumerate(results)]
    rows.append(("median", *(med.get(k) for k in PARTS), med["total_s"], med["total_s"] <= target))
    print(C.table(rows, ("", "submit s", "worker s", "first row s", "chart s", "total s", f"<= {target:g} s")))
    return med


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("both", "cold", "warm"), default="both")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--click-after", type=float, default=2.0,
                    help=f"cold: seconds between the page appearing and the click (<= {MAX_CLICK_AFTER_S:g})")
    ap.add_argument("--settle", type=float, default=10.0, help="warm: idle seconds before each start")
    ap.add_argument("--steps", type=int, default=200, help="warm: steps per run")
    ap.add_argument("--tiny", action="store_true", help="one cold and one warm start, for the smoke test")
    args = ap.parse_args(argv)
    if not 0 <= args.click_after <= MAX_CLICK_AFTER_S:
        ap.error(f"--click-after must be between 0 and {MAX_CLICK_AFTER_S:g} s")
    from server import chromium_available, launch_chromium

    if not chromium_available():
        C.emit({"benchmark": "first_point", "skipped": "chromium is not installed (/usr/bin/chromium)"})
        return 0
    if args.tiny:
        args.repeats, args.settle, args.steps = 1, 5.0, 50
    from playwright.sync_api import sync_playwright

    C.setup_torch(0)  # only for the machine line: the workers set their own
    base_import = torch_import_s(1 if args.tiny else 3)
    out = {"benchmark": "first_point", "tiny": args.tiny, "target_cold_s": TARGET_COLD_S,
           "target_warm_s": TARGET_WARM_S, "click_after_s": args.click_after}
    with sync_playwright() as p:
        browser = launch_chromium(p)  # a presenter's browser is already open: not timed
        try:
            if args.mode in ("both", "cold"):
                starts = cold(browser, args.repeats, args.click_after)
                med = show(f"cold: a fresh server per start, Start pressed {args.click_after:g} s after the page "
                           f"appears; default comparison (AGD + Adam, depth 8 x 128); chromium via Playwright",
                           starts, TARGET_COLD_S)
                print(f"  (server start to health check {med.get('server_up_s', 0):.2f} s, then the page shown in "
                      f"{med.get('page_shown_s', 0):.2f} s; medians, not counted)")
                out["cold"] = {"median_s": C.rounded(med["total_s"]),
                               "median_parts_s": {k: C.rounded(v) for k, v in med.items()},
                               "starts": [{k: C.rounded(v) for k, v in r.items()} for r in starts],
                               "pass": med["total_s"] <= TARGET_COLD_S}
            if args.mode in ("both", "warm"):
                starts = warm(browser, args.repeats, args.settle, args.steps)
                med = show(f"warm: one server, {args.settle:g} s idle before each start ({args.steps}-step runs)",
                           starts, TARGET_WARM_S)
                out["warm"] = {"median_s": C.rounded(med["total_s"]),
                               "median_parts_s": {k: C.rounded(v) for k, v in med.items()},
                               "starts": [{k: C.rounded(v) for k, v in r.items()} for r in starts],
                               "pass": med["total_s"] <= TARGET_WARM_S}
        finally:
            browser.close()
    print(f"baseline: `python -c 'import torch'` {base_import:.2f} s" + "".join(
        f"; {m} first point / torch import = {out[m]['median_s'] / base_import:.2f}" for m in ("cold", "warm") if m in out))
    out.update(torch_import_s=C.rounded(base_import), machine=C.machine(),
               **{f"ratio_{m}_to_torch_import": C.rounded(out[m]["median_s"] / base_import)
                  for m in ("cold", "warm") if m in out},
               **{"pass": all(out[m]["pass"] for m in ("cold", "warm") if m in out)})
    C.emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
