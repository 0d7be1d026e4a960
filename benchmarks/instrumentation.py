"""What do the per-step metrics cost? Training with every metric (docs/architecture.md) vs the same loop with none.

    python -m benchmarks.instrumentation [--rounds 3] [--steps 300] [--threads N] [--tiny]

Variants, each `agd_viz.train.run` of AGD on digits, batch 128, on the CPU:
  none   metrics="none" and no evaluation inside the loop (only at step 0 and the end): the
         baseline, a loop that logs only what it computes anyway (loss, accuracy, η, G);
  auto   metrics="full" with the default cadences of a `--steps`-step run (the default 300 steps:
         per-layer metrics every `cost.resolved_layer_every` = 5 steps, 60 columns per layer chart;
         train/test evaluation every `cost.resolved_eval_every` steps) (target: ratio <= 1.15);
  every  metrics="full" with per-layer metrics at every step (layer_every=1), timed over a
         shorter window (30 steps) that holds no evaluation.
Time per step is read from the records' own clock (`t`, taken at the start of each step), from
step 2 to the last step: setup, the cold first estimates and the forced probe of step 1 are left
out; the whole rest of the run is in, with its mix of probes (those of the first
`cost.WEIGHT_SETTLE_STEPS` steps cost more) and evaluations. The clock is this process's CPU time
by default (`--clock`), which other people's processes on a shared machine do not inflate.
Variants are interleaved round by round; the ratio is the median over rounds.
"""

from __future__ import annotations

import argparse
import sys

try:
    from benchmarks import _common as C
except ImportError:  # run as a file: python benchmarks/instrumentation.py
    import _common as C  # type: ignore[no-redef]

TARGET = 1.15
EVERY_WINDOW = 30
CONFIGS = ((16, 256), (8, 1024))


def per_step_seconds(spec, clock: str = "cpu") -> float:
    from agd_viz import train

    t = {}
    with C.train_clock(clock):
        for rec in train.run(spec):
            if isinstance(rec, train.Step) and rec.opt == 0:
                t[rec.step] = rec.t
    last = max(t)
    return (t[last] - t[2]) / (last - 2)


def measure(depth: int, width: int, rounds: int, steps: int, clock: str = "cpu", tiny: bool = False) -> dict:
    from agd_viz import cost, data
    from agd_viz.spec import RunSpec

    base = RunSpec(dataset="digits", depth=depth, width=width, batch_size=128, device="cpu",
                   optimizers=("agd",), seed=0, steps=steps)
    ds = data.load("digits")
    n_eval = min(ds.x_train.shape[0], cost.EVAL_MAX) + min(ds.x_test.shape[0], cost.EVAL_MAX)
    specs = {
        "none": base.replace(metrics="none", eval_every=steps),
        "auto": base.replace(metrics="full"),
        # Every step is slow and its cost per step is steady: a short window, which holds no
        # evaluation, so this ratio is the per-layer metrics' cost alone.
        "every": base.replace(steps=2 + min(steps - 2, EVERY_WINDOW), metrics="full", layer_every=1),
    }
    if tiny:
        specs["auto"] = specs["auto"].replace(eval_every=3, layer_every=3)
        specs["every"] = specs["every"].replace(eval_every=3)
    # Warm-up: a short run of each variant (allocator, thread pool, first-call costs).
    warm = {k: s.replace(steps=4) for k, s in specs.items()}
    for s in warm.values():
        per_step_seconds(s, clock)
    times = C.interleaved({k: (lambda s=s: per_step_seconds(s, clock)) for k, s in specs.items()},
                          rounds=rounds, warmup=0)
    return {
        "depth": depth, "width": width, "batch": 128, "steps": steps,
        "layer_every_auto": cost.resolved_layer_every(specs["auto"]),
        "eval_every_auto": cost.resolved_eval_every(specs["auto"], n_eval),
        "ms_per_step": {k: C.rounded(1000 * C.median(v)) for k, v in times.items()},
        "ratio_auto": C.rounded(C.paired_ratio(times["auto"], times["none"])),
        "ratio_every": C.rounded(C.paired_ratio(times["every"], times["none"])),
        "ratio_auto_rounds": [C.rounded(a / b) for a, b in zip(times["auto"], times["none"])],
        "rounds": rounds,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", choices=C.CLOCKS, default="cpu",
                    help="cpu: this process's CPU time (robust on a shared machine); wall: elapsed time")
    ap.add_argument("--steps", type=int, default=300, help="the run timed (its cadence is the one measured)")
    C.add_thread_args(ap)
    ap.add_argument("--config", action="append", default=None, metavar="DEPTHxWIDTH",
                    help="e.g. 16x256 (repeatable; default 16x256 and 8x1024)")
    ap.add_argument("--tiny", action="store_true", help="a few seconds, for the smoke test")
    args = ap.parse_args(argv)
    threads = C.setup_torch(args.threads)
    configs = [tuple(int(v) for v in c.lower().split("x")) for c in args.config] if args.config else CONFIGS
    if args.tiny:
        configs, args.rounds, args.steps = [(3, 16)], 1, 8
    results = [measure(d, w, args.rounds, args.steps, args.clock, args.tiny) for d, w in configs]
    print(f"instrumentation: AGD on digits, batch 128, {args.steps}-step runs timed from step 2, CPU, "
          f"{threads} thread(s), {args.clock} clock; ms/step median of {args.rounds} interleaved rounds; "
          f"ratio = median over rounds of full/none")
    rows = []
    for r in results:
        name = f"{r['depth']}x{r['width']}"
        ms = r["ms_per_step"]
        rows.append((name, "none (baseline)", "-", ms["none"], 1.0, None))
        rows.append((name, "full, auto cadence", f"{r['layer_every_auto']} / {r['eval_every_auto']}",
                     ms["auto"], r["ratio_auto"], r["ratio_auto"] <= TARGET))
        rows.append((name, "full, layers every step", "1 / -", ms["every"],
                     r["ratio_every"], r["ratio_every"] <= TARGET))
    print(C.table(rows, ("net", "metrics", "layer/eval every", "ms/step", "ratio", f"<= {TARGET}")))
    C.emit({"benchmark": "instrumentation", "target": TARGET, "threads": threads, "clock": args.clock,
            "tiny": args.tiny,
            "results": results, "machine": C.machine(),
            "pass": all(r["ratio_auto"] <= TARGET for r in results)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
