"""Does our training loop cost more than the few lines a user would write? train.run vs a plain loop.

    python -m benchmarks.plain_loop [--rounds 3] [--threads N] [--tiny]

theirs  a hand-written PyTorch loop: the same data, model and minibatch order, AGD written naively
        one parameter at a time (Algorithm 1), `model.zero_grad()`, the loss read every 100 steps;
ours    `agd_viz.train.run` with metrics="none" (records every step: loss, accuracy, η, G; host
        copies batched; evaluation at step 0 and at the end for the summary).
Both on this process's CPU time, interleaved round by round. Two figures: per step, from the start
of step 2 to the start of the last (the loop's own overhead: the target, ours/theirs <= 1.05,
median over rounds), and the whole run (data, model, training, and our two evaluations).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

TARGET = 1.05
CONFIGS = ((16, 256, 300), (8, 1024, 60))


def theirs(depth: int, width: int, steps: int, batch: int = 128, seed: int = 0, clock=time.process_time):
    """What a user writes: data, a bias-free MLP with AGD's init, and Algorithm 1 by hand.
    Returns (seconds per step from the start of step 2 to the start of the last, losses)."""
    import torch
    import torch.nn.functional as F

    from agd_viz import data, nets

    ds = data.load("digits", seed=seed)
    model = nets.MLP(ds.d_in, ds.d_out, depth, width)
    nets.init_agd_model_(model, torch.Generator().manual_seed(seed + 1))
    weights = list(model.parameters())
    L = len(weights)
    scales = [math.sqrt(w.shape[0] / w.shape[1]) for w in weights]
    gen = torch.Generator().manual_seed(seed + 2)
    n = ds.x_train.shape[0]
    perm, pos = None, n
    losses = []
    t = {}
    for step in range(steps):
        t[step + 1] = clock()  # numbered from 1, as train.run numbers its steps
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + batch]
        pos += batch
        loss = F.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx])
        model.zero_grad()
        loss.backward()
        with torch.no_grad():  # G = (1/L) Σ s_k ||g_k||, η = log((1 + sqrt(1 + 4G)) / 2)
            norms = [w.grad.norm() for w in weights]
            G = sum(s * g for s, g in zip(scales, norms)) / L
            eta = torch.log((1 + torch.sqrt(1 + 4 * G)) / 2)
            for w, s, g in zip(weights, scales, norms):
                w -= eta / L * s * w.grad / g
        if step % 100 == 0:
            losses.append(loss.item())
    return (t[steps] - t[2]) / (steps - 2), losses


def ours(depth: int, width: int, steps: int, batch: int = 128, seed: int = 0, clock: str = "cpu"):
    """train.run with metrics off; returns (seconds per step, as for `theirs`, end record)."""
    from agd_viz import train
    from agd_viz.spec import RunSpec

    spec = RunSpec(dataset="digits", depth=depth, width=width, steps=steps, batch_size=batch,
                         seed=seed, device="cpu", optimizers=("agd",), metrics="none")
    end, t = None, {}
    with C.train_clock(clock):
        for rec in train.run(spec):
            if isinstance(rec, train.End):
                end = rec
            elif isinstance(rec, train.Step):
                t[rec.step] = rec.t
    return (t[steps] - t[2]) / (steps - 2), end


def both(fn, clock: str, per_step: dict, key: str):
    """A variant for C.interleaved: returns the whole run's time, keeps its per-step time."""
    now = time.process_time if clock == "cpu" else time.perf_counter

    def timed():
        t0 = now()
        step_s, _ = fn()
        per_step.setdefault(key, []).append(step_s)
        return now() - t0
    return timed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", choices=C.CLOCKS, default="cpu")
    C.add_thread_args(ap)
    ap.add_argument("--tiny", action="store_true", help="a few seconds, for the smoke test")
    args = ap.parse_args(argv)
    threads = C.setup_torch(args.threads)
    configs = [(3, 16, 20)] if args.tiny else CONFIGS
    rounds = 1 if args.tiny else args.rounds
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    results = []
    for depth, width, steps in configs:
        ours(depth, width, 4, clock=args.clock), theirs(depth, width, 4, clock=clock)  # warm-up
        per_step: dict[str, list[float]] = {}
        whole = C.interleaved({
            "theirs": both(lambda: theirs(depth, width, steps, clock=clock), args.clock, per_step, "theirs"),
            "ours": both(lambda: ours(depth, width, steps, clock=args.clock), args.clock, per_step, "ours"),
        }, rounds=rounds, warmup=0)
        results.append({
            "depth": depth, "width": width, "batch": 128, "steps": steps,
            "ms_per_step_theirs": C.rounded(1000 * C.median(per_step["theirs"])),
            "ms_per_step_ours": C.rounded(1000 * C.median(per_step["ours"])),
            "ratio": C.rounded(C.paired_ratio(per_step["ours"], per_step["theirs"])),
            "ratio_rounds": [C.rounded(a / b) for a, b in zip(per_step["ours"], per_step["theirs"])],
            "s_whole_theirs": C.rounded(C.median(whole["theirs"])),
            "s_whole_ours": C.rounded(C.median(whole["ours"])),
            "ratio_whole": C.rounded(C.paired_ratio(whole["ours"], whole["theirs"])),
        })
    print(f"plain loop vs train.run(metrics='none'): AGD on digits, batch 128, CPU, {threads} thread(s), "
          f"{args.clock} clock, median of {rounds} interleaved rounds")
    rows = [(f"{r['depth']}x{r['width']}", r["steps"], r["ms_per_step_theirs"], r["ms_per_step_ours"],
             r["ratio"], r["ratio"] <= TARGET, r["s_whole_theirs"], r["s_whole_ours"], r["ratio_whole"])
            for r in results]
    print(C.table(rows, ("net", "steps", "theirs ms/step", "ours ms/step", "ours/theirs", f"<= {TARGET}",
                         "whole run theirs s", "ours s", "ratio")))
    C.emit({"benchmark": "plain_loop", "target": TARGET, "threads": threads, "clock": args.clock,
            "tiny": args.tiny, "results": results, "machine": C.machine(),
            "pass": all(r["ratio"] <= TARGET for r in results)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
