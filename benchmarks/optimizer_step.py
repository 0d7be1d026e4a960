"""AGD's optimiser step alone vs torch.optim.Adam(foreach=True).step(), and their state memory.

    python -m benchmarks.optimizer_step [--rounds 5] [--threads N] [--device cpu] [--tiny]

On one bias-free depth-32 MLP (digits shapes: 64 inputs, 10 outputs) with fixed random gradients,
each round times a burst of steps of: Adam (foreach=True, the baseline), AGD's `step_tensors()`
(what the training loop calls: no host sync) and AGD's `step()` (returns η as a float: one sync).
Target: AGD step_tensors / Adam <= 1.0 (median over rounds). Optimiser state after a step:
AGD 0 bytes, Adam 2x the weights (exp_avg and exp_avg_sq; plus a 4-byte step count per tensor).
"""

from __future__ import annotations

import argparse
import sys
import time

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

TARGET = 1.0
WIDTHS = (128, 512)


def make(depth: int, width: int, device: str):
    import torch

    from agd_viz import nets

    model = nets.MLP(64, 10, depth, width).to(device)
    nets.init_agd_model_(model, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    for w in model.parameters():  # a gradient's typical size, well away from zero
        w.grad = (torch.randn(w.shape, generator=gen) * 1e-2).to(device)
    return list(model.parameters())


def burst(step, n: int, sync):
    def timed():
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        return (time.perf_counter() - t0) / n
    return timed


def cpu_burst(step, n: int, sync):
    def timed():
        t0 = time.process_time()
        for _ in range(n):
            step()
        return (time.process_time() - t0) / n
    return timed


def measure(depth: int, width: int, rounds: int, n: int, device: str, clock: str) -> dict:
    import torch

    from agd_viz.optim import AGD, optimizer_state_bytes

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    # Separate copies of the same weights and gradients: the updates do not interact.
    w_adam, w_agd = make(depth, width, device), make(depth, width, device)
    adam = torch.optim.Adam(w_adam, lr=1e-3, foreach=True)
    agd = AGD(w_agd)
    timer = cpu_burst if clock == "cpu" and device == "cpu" else burst
    times = C.interleaved({
        "adam": timer(adam.step, n, sync),
        "agd_step_tensors": timer(agd.step_tensors, n, sync),
        "agd_step": timer(agd.step, n, sync),
    }, rounds=rounds, warmup=1)
    weights = sum(w.numel() * w.element_size() for w in w_agd)
    return {
        "depth": depth, "width": width, "device": device, "weight_tensors": len(w_agd),
        "us_per_step": {k: C.rounded(1e6 * C.median(v)) for k, v in times.items()},
        "ratio": C.rounded(C.paired_ratio(times["agd_step_tensors"], times["adam"])),
        "ratio_step_float": C.rounded(C.paired_ratio(times["agd_step"], times["adam"])),
        "weight_bytes": weights,
        "state_bytes_agd": optimizer_state_bytes(agd),
        "state_bytes_adam": optimizer_state_bytes(adam),
        "adam_state_over_weights": C.rounded(optimizer_state_bytes(adam) / weights, 4),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--width", type=int, action="append", default=None, help=f"repeatable; default {WIDTHS}")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed burst")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=C.CLOCKS, default="cpu", help="cpu clock applies to --device cpu only")
    C.add_thread_args(ap)
    ap.add_argument("--tiny", action="store_true", help="a second, for the smoke test")
    args = ap.parse_args(argv)
    threads = C.setup_torch(args.threads)
    widths = args.width or WIDTHS
    if args.tiny:
        args.depth, widths, args.rounds, args.steps = 4, [16], 1, 3
    results = [measure(args.depth, w, args.rounds, args.steps, args.device, args.clock) for w in widths]
    print(f"optimiser step: depth {args.depth} MLP on {args.device}, {threads} thread(s), {args.clock} clock, "
          f"median of {args.rounds} interleaved rounds of {args.steps} steps")
    rows = []
    for r in results:
        us = r["us_per_step"]
        name = f"{r['depth']}x{r['width']}"
        rows.append((name, "Adam foreach (baseline)", us["adam"], 1.0, None, r["state_bytes_adam"],
                     f"{r['adam_state_over_weights']:.3f}x weights"))
        rows.append((name, "AGD step_tensors()", us["agd_step_tensors"], r["ratio"], r["ratio"] <= TARGET,
                     r["state_bytes_agd"], "0"))
        rows.append((name, "AGD step() -> float", us["agd_step"], r["ratio_step_float"], None,
                     r["state_bytes_agd"], "0"))
    print(C.table(rows, ("net", "optimiser", "us/step", "ratio", f"<= {TARGET}", "state bytes", "state")))
    for r in results:
        print(f"{r['depth']}x{r['width']}: weights {r['weight_bytes']:,} bytes in {r['weight_tensors']} tensors; "
              f"Adam state {r['state_bytes_adam']:,} bytes, AGD state {r['state_bytes_agd']} bytes")
    C.emit({"benchmark": "optimizer_step", "target": TARGET, "threads": threads, "clock": args.clock,
            "tiny": args.tiny, "results": results, "machine": C.machine(),
            "pass": all(r["ratio"] <= TARGET and r["state_bytes_agd"] == 0 for r in results)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
