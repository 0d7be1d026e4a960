"""Time to open a finished comparison on the Live page, in a browser with an empty cache.

    python -m benchmarks.cold_draw [--repeats 5] [--tiny]

A real `streamlit run app.py` (tests/browser/server.py) against a temporary run store holding one
finished comparison, trained by the command line first: the "Adam fails at depth 32" preset
(digits, depth 32 × width 128, 400 steps, AGD + Adam; --tiny: depth 3 × width 16, 30 steps).
Each repeat opens a new browser context (no cache, no session: a cold page, as for someone
following a link), goes to `/?group=1` at 1280×720 and times, from the navigation:
  first screen  the loss and accuracy charts drawn with their data;
  all charts    every chart of the page drawn and the app's script finished (the page is done);
  layers open   the same with the per-layer charts opened too (`&layers=1`: the 7 charts the
                page drew before issue 15).
The baseline, timed in the same rounds and the same way: the smallest Streamlit app with one
Plotly chart (three points, st.plotly_chart), served by a second `streamlit run`: what loading
Streamlit and its Plotly.js costs in this browser on this machine. The page draws its charts with
the app's own renderer (app_widgets.chart: Plotly.js's cartesian bundle, a third of the size), so
it can come in under the baseline. Target: all charts <= 2 s.

It also prints the figure JSON each view sends (the store's frames through the page's own
figure builders): what the browser has to parse and draw.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

sys.path.insert(0, str(C.ROOT / "tests" / "browser"))

TARGET_S = 2.0
VIEWPORT = {"width": 1280, "height": 720}
FULL = ["--dataset", "digits", "--depth", "32", "--width", "128", "--steps", "400", "--batch-size", "128"]
TINY = ["--dataset", "digits", "--depth", "3", "--width", "16", "--steps", "30", "--batch-size", "32"]

# Charts whose SVG is drawn and which hold data; `n` of them at least.
DRAWN_JS = """
(n) => {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const ready = plots.filter(d => d.querySelector('.main-svg') && (d.data || []).length > 0);
  return plots.length >= n && ready.length >= n;
}
"""
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
BARE_APP = """import plotly.graph_objects as go
import streamlit as st

st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2])))
"""


def train(db: Path, args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "agd_viz", "train", "--db", str(db), "--device", "cpu", "--quiet",
                    "--optimizer", "agd", "--optimizer", "adam:lr=1e-3", *args], cwd=C.ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(C.ROOT)})


def figure_bytes(db: Path) -> dict[str, int]:
    """Figure JSON of the default view (4 charts) and of every chart (7), as the page builds them."""
    from agd_viz import charts
    from agd_viz.store import Store
    from agd_viz.views import live_panel as panel

    store = Store(db)
    try:
        rows = panel.group_runs(store, 1)
        frames = panel.LiveFrames().refresh(store, [r["id"] for r in rows])
        runs = [charts.RunData(r["id"], r["label"] or r["optimizer"], r["optimizer"], frames[r["id"]].scalars,
                               frames[r["id"]].layers, r["status"]) for r in rows]
        out = {}
        for name, wanted in (("default view", ["loss", "acc", "step_size", "rel_update"]), ("every chart", None)):
            figs = charts.all_live_figures(runs, names=wanted)
            out[name] = sum(len(f.to_json()) for f in figs.values())
        return out
    finally:
        store.close()


def cold_open(browser, url: str, charts: int, first: int = 2, timeout_s: float = 120.0) -> dict:
    """Open `url` in a fresh context; seconds to the first `first` charts drawn, and to all
    `charts` drawn with the script finished."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(timeout_s * 1000)
    try:
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_function(DRAWN_JS, arg=first, polling=20)
        out = {"first_screen_s": time.perf_counter() - t0}
        page.wait_for_function(DRAWN_JS, arg=charts, polling=20)
        page.wait_for_selector(IDLE)
        out["all_s"] = time.perf_counter() - t0
        return out
    finally:
        context.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="a tiny comparison and one repeat, for the smoke test")
    args = ap.parse_args(argv)
    from server import chromium_available, launch_chromium, running_app

    if not chromium_available():
        C.emit({"benchmark": "cold_draw", "skipped": "chromium is not installed (/usr/bin/chromium)"})
        return 0
    if args.tiny:
        args.repeats = 1
    from playwright.sync_api import sync_playwright

    results = {"bare": [], "comparison": [], "layers_open": []}
    with tempfile.TemporaryDirectory(prefix="agd_viz_bench_cold_draw_") as d:
        db, bare = Path(d) / "runs.db", Path(d) / "bare_app.py"
        bare.write_text(BARE_APP)
        train(db, TINY if args.tiny else FULL)
        sizes = figure_bytes(db)
        with running_app(db, Path(d) / "streamlit.log", env={"AGD_VIZ_PREWARM": "0"}) as url, \
                running_app(db, Path(d) / "bare.log", script=str(bare)) as bare_url, sync_playwright() as p:
            browser = launch_chromium(p)
            cold_open(browser, f"{url}/?group=1", 4)  # each server's first session imports its pages: not timed
            cold_open(browser, bare_url, 1, first=1)
            for _ in range(args.repeats):  # interleaved, so a busy moment hits every variant alike
                results["bare"].append(cold_open(browser, bare_url, 1, first=1))
                results["comparison"].append(cold_open(browser, f"{url}/?group=1", 4))
                results["layers_open"].append(cold_open(browser, f"{url}/?group=1&layers=1", 7))
            browser.close()

    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in results.items()}
    base = med["bare"]["all_s"]
    print(f"cold open of a finished comparison ({'tiny' if args.tiny else 'depth 32 × width 128, 400 steps'}, "
          f"AGD + Adam), Live page at 1280×720, new browser context each time; median of {args.repeats}")
    rows = [("bare Streamlit app, one Plotly chart (baseline)", med["bare"]["first_screen_s"], base, 1.0, None),
            ("finished comparison (4 charts)", med["comparison"]["first_screen_s"], med["comparison"]["all_s"],
             med["comparison"]["all_s"] / base, med["comparison"]["all_s"] <= TARGET_S),
            ("with per-layer charts open (7 charts)", med["layers_open"]["first_screen_s"],
             med["layers_open"]["all_s"], med["layers_open"]["all_s"] / base, None)]
    print(C.table(rows, ("", "first screen s", "all charts s", "/ baseline", f"<= {TARGET_S:g} s")))
    print("figure JSON sent: " + ", ".join(f"{k} {v / 1e3:.0f} kB" for k, v in sizes.items()))
    C.emit({"benchmark": "cold_draw", "target_s": TARGET_S, "tiny": args.tiny, "repeats": args.repeats,
            "bare_plotly_app_s": C.rounded(base), "first_screen_s": C.rounded(med["comparison"]["first_screen_s"]),
            "all_s": C.rounded(med["comparison"]["all_s"]), "layers_open_s": C.rounded(med["layers_open"]["all_s"]),
            "ratio_to_bare_plotly_app": C.rounded(med["comparison"]["all_s"] / base),
            "figure_bytes": sizes, "runs": {k: [{kk: C.rounded(vv) for kk, vv in r.items()} for r in v]
                                           for k, v in results.items()},
            "machine": C.machine(), "pass": med["comparison"]["all_s"] <= TARGET_S})
    return 0


if __name__ == "__main__":
    sys.exit(main())
