"""Run every benchmark and print the figures against their targets (docs/performance.md).

    python -m benchmarks.all [--tiny] [--skip first_point] [--json results.json]

Each benchmark runs in its own process (so one's threads, imports or server cannot colour the
next), prints its table, and ends with one JSON line; this collects those lines into a summary.
`--tiny` runs every benchmark's smoke mode (seconds each; the figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

BENCHMARKS = ("instrumentation", "plain_loop", "optimizer_step", "stable_rank", "store_sink", "ui_figures",
              "first_point", "cold_draw", "sweep_estimate", "ray_cluster")


def summary_rows(name: str, r: dict) -> list[tuple]:
    """(target, figure, limit, pass) rows of one benchmark's JSON line."""
    if r.get("skipped"):
        return [(name, r["skipped"], "-", None)]
    rows = []
    if name == "instrumentation":
        for x in r["results"]:
            rows.append((f"1. metrics on/off, {x['depth']}x{x['width']} (auto cadence)", x["ratio_auto"], "<= 1.15",
                         x["ratio_auto"] <= 1.15))
            rows.append((f"1. metrics on/off, {x['depth']}x{x['width']} (layers every step)", x["ratio_every"], "(info)",
                         None))
    elif name == "plain_loop":
        for x in r["results"]:
            rows.append((f"2. ours/plain loop per step, {x['depth']}x{x['width']}", x["ratio"], "<= 1.05",
                         x["ratio"] <= 1.05))
    elif name == "optimizer_step":
        for x in r["results"]:
            rows.append((f"3. AGD/Adam step, {x['depth']}x{x['width']}", x["ratio"], "<= 1.0", x["ratio"] <= 1.0))
            rows.append((f"3. state bytes AGD / Adam÷weights, {x['depth']}x{x['width']}",
                         f"{x['state_bytes_agd']} / {x['adam_state_over_weights']}", "0 / 2", x["state_bytes_agd"] == 0))
    elif name == "stable_rank":
        worst = max(max(a["max_rel_err_w_srank"], a["max_rel_err_g_srank"]) for a in r["accuracy"])
        rows.append(("4. stable rank max relative error", worst, "<= 0.01", worst <= 0.01))
        for c in r["cost"]:
            rows.append((f"4. probe cost in training steps, {c['depth']}x{c['width']}", c["probe_over_step"],
                         f"(model {c['model_probe_over_step']})", None))
    elif name == "store_sink":
        for w in r["write"]:
            rows.append((f"5. SQLite/null sink, {w['depth']}x{w['width']}", w["ratio"], "<= 1.05", w["ratio"] <= 1.05))
        ms = r["read"]["ms"]["metrics"]
        rows.append(("5. metrics(run, since) newest 1 s, ms", ms, "<= 20", ms <= 20))
    elif name == "ui_figures":
        for x in r["results"]:
            tag = f"layers every {x['layer_every']}, x={x['x']}"
            rows.append((f"6. build Live figures ms ({tag})", x["build_ms"], "<= 150", x["build_ms"] <= 150))
            rows.append((f"6. JSON per refresh MB ({tag})", round(x["json_bytes"] / 1e6, 3), "<= 1",
                         x["json_bytes"] <= 1e6))
    elif name == "first_point":
        for mode, target in (("cold", r.get("target_cold_s")), ("warm", r.get("target_warm_s"))):
            if mode in r:
                rows.append((f"7. Start -> first point, {mode}, s (median)", r[mode]["median_s"], f"<= {target:g}",
                             r[mode]["pass"]))
    elif name == "cold_draw":
        rows.append(("8. finished comparison, cold page, s (median)", r["all_s"], f"<= {r['target_s']:g}",
                     r["all_s"] <= r["target_s"]))
        rows.append(("8. same / bare Streamlit app with one Plotly chart", r["ratio_to_bare_plotly_app"], "(info)",
                     None))
    elif name == "sweep_estimate":
        for x in r["results"]:
            rows.append((f"9. sweep estimate/measured, {x['sweep']}, calibrated on {x['calibrated_on']} runs",
                         x["ratio"], f"{r['low']:g}-{r['high']:g}", r["low"] <= x["ratio"] <= r["high"]))
    elif name == "ray_cluster":
        if "overhead" in r:
            o = r["overhead"]
            rows.append(("10. Ray / local job, training per step", o["step_ratio"], "<= 1.10", o["step_ratio"] <= 1.10))
            first = o["first_s"]["ray_after_warm_up"]
            rows.append(("10. Ray job submit -> first record, s (app: after warm-up)", first, "<= 2", first <= 2))
        if "sweep" in r:
            rows.append(("10. 4 x 2 sweep, Ray two nodes / local, wall", r["sweep"]["ratio"], "(reported)", None))
        if "ingest" in r:
            rows.append(("10. driver ingest through Ray, rows/s", r["ingest"]["capacity_rows_per_s"], "(reported)",
                         None))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--skip", action="append", default=[], choices=BENCHMARKS)
    ap.add_argument("--only", action="append", default=None, choices=BENCHMARKS)
    ap.add_argument("--json", default=None, help="write every benchmark's JSON result to this file")
    args = ap.parse_args(argv)
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    results, rows = {}, []
    t0 = time.perf_counter()
    for name in names:
        cmd = [sys.executable, "-m", f"benchmarks.{name}"] + (["--tiny"] if args.tiny else [])
        print(f"\n$ {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        p = subprocess.run(cmd, cwd=C.ROOT, capture_output=True, text=True)
        lines = p.stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        if p.returncode != 0 or not lines:
            print(p.stderr[-3000:], file=sys.stderr)
            rows.append((name, f"failed (exit {p.returncode})", "-", False))
            continue
        r = json.loads(lines[-1])
        r["seconds"] = round(time.perf_counter() - start, 1)
        results[name] = r
        rows += summary_rows(name, r)
    print(f"\nsummary ({time.perf_counter() - t0:.0f} s{', tiny: figures are not meaningful' if args.tiny else ''})")
    print(C.table(rows, ("target", "figure", "limit", "met")))
    if args.json:
        C.setup_torch(0)  # the machine line reports what the benchmarks ran with
        with open(args.json, "w") as f:
            json.dump({"machine": C.machine(), "results": results}, f, indent=1)
    return 1 if any(r[3] is False and r[1] and str(r[1]).startswith("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
