"""Targets 1-3 on a GPU: training throughput with and without metrics against a bare loop, the
optimiser step against Adam, and a check that the step path never waits on the device.

    python -m benchmarks.gpu                       # --device cuda, depth 16 x width 4096, batch 1024
    python -m benchmarks.gpu --device cpu --small  # a smoke run of the same code on the CPU

Throughput (AGD on digits, data on the device). Variants, interleaved round by round:
  bare   a hand-written loop: forward, backward, AGD (Algorithm 1) one parameter at a time, the
         loss copied to the host every 100 steps;
  none   `train.run` with metrics="none";
  auto   `train.run` with every metric at the default cadences;
  every  `train.run` with per-layer metrics at every step.
Time per step: from the start of step 2 to the end of the run, both after the device has finished
its queue (train.run copies step 1's values to the host, which waits for the device; its end record's
elapsed time is taken after the last copy; the bare loop synchronises itself), over steps - 1 steps:
setup and the first (cold) estimates are left out. Ratios are medians over rounds of the per-round
ratio to `bare` (targets on the CPU: none <= 1.05, auto <= 1.15).
Optimiser step: AGD `step_tensors()` vs Adam(foreach=True) on the same network (target <= 1.0),
state bytes (AGD 0, Adam 2x the weights).
Host syncs (CUDA only): the loop's per-step work (batch indexing, forward, backward, AGD,
accuracy, the per-step scalars, the per-layer probe, an evaluation) run under
torch.cuda.set_sync_debug_mode("error"); and a whole `train.run` under "warn", counting the syncs
it reports against its own batched copies (one per sync record).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
import warnings

try:
    from benchmarks import _common as C
    from benchmarks import optimizer_step
except ImportError:
    import _common as C  # type: ignore[no-redef]
    import optimizer_step  # type: ignore[no-redef]


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(ds, depth: int, width: int, batch: int, steps: int, device, seed: int = 0) -> float:
    """What a user writes on a GPU: data on the device, AGD by hand, one parameter at a time.
    Returns seconds per step from the start of step 2 (numbered from 1) to the end."""
    import torch
    import torch.nn.functional as F

    from agd_viz import nets

    model = nets.MLP(ds.d_in, ds.d_out, depth, width)
    nets.init_agd_model_(model, torch.Generator().manual_seed(seed + 1))
    model.to(device)
    weights = list(model.parameters())
    L = len(weights)
    scales = [math.sqrt(w.shape[0] / w.shape[1]) for w in weights]
    gen = torch.Generator(device=device).manual_seed(seed + 2)
    n = ds.x_train.shape[0]
    b = min(batch, n)
    perm, pos = None, n
    t2 = None
    for step in range(steps):
        if step == 1:
            _sync(device)
            t2 = time.perf_counter()
        if pos + b > n:
            perm, pos = torch.randperm(n, generator=gen, device=device), 0
        idx = perm[pos:pos + b]
        pos += b
        loss = F.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx])
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            norms = [w.grad.norm() for w in weights]
            G = sum(s * g for s, g in zip(scales, norms)) / L
            eta = torch.log((1 + torch.sqrt(1 + 4 * G)) / 2)
            for w, s, g in zip(weights, scales, norms):
                w -= eta / L * s * w.grad / g
        if step % 100 == 0:
            loss.item()
    _sync(device)
    return (time.perf_counter() - t2) / (steps - 1)


def ours(spec) -> float:
    """train.run; seconds per step from the start of step 2 to the end of the run."""
    from agd_viz import train

    t2 = end = None
    for rec in train.run(spec):
        if isinstance(rec, train.Step) and rec.opt == 0 and rec.step == 2:
            t2 = rec.t
        elif isinstance(rec, train.End):
            if rec.status != "finished":
                raise RuntimeError(f"run ended {rec.status}: {rec.error}")
            end = rec.summary["elapsed_s"]
    return (end - t2) / (spec.steps - 1)


def throughput(args, device) -> dict:
    from agd_viz import cost, data
    from agd_viz.spec import RunSpec

    ds = data.load("digits").to(device)
    base = RunSpec(dataset="digits", depth=args.depth, width=args.width, batch_size=args.batch,
                         device=device.type, optimizers=("agd",), steps=args.steps)

    def variant(kind, spec=base, depth=args.depth):
        def run():
            if kind == "bare":
                return bare_loop(ds, depth, args.width, args.batch, spec.steps, device)
            if kind == "none":
                return ours(spec.replace(metrics="none"))
            if kind == "every":
                return ours(spec.replace(layer_every=1))
            return ours(spec)
        return run

    kinds = ("bare", "none", "auto", "every")
    # Warm-up (CUDA context, kernels, allocator) on a shallow copy of the network: building the
    # deep one (AGD's init: a QR per layer, on the CPU) is the slow part of a run's setup.
    warm = base.replace(depth=min(3, args.depth), steps=4)
    for k in kinds:
        variant(k, warm, warm.depth)()
    times = C.interleaved({k: variant(k) for k in kinds}, rounds=args.rounds, warmup=0)
    return {
        "depth": args.depth, "width": args.width, "batch": args.batch, "steps": args.steps,
        "device": str(device),
        "layer_every_auto": cost.resolved_layer_every(base),
        "eval_every_auto": cost.resolved_eval_every(base, ds.x_train.shape[0] + ds.x_test.shape[0]),
        "steps_per_s": {k: C.rounded(1 / C.median(v)) for k, v in times.items()},
        "ratio_to_bare": {k: C.rounded(C.paired_ratio(v, times["bare"])) for k, v in times.items()},
        "ratio_full_over_none": {k: C.rounded(C.paired_ratio(times[k], times["none"])) for k in ("auto", "every")},
    }


def sync_check(args, device) -> dict:
    """Per-step host syncs: the step path under 'error' mode; a whole run under 'warn' mode."""
    import torch

    from agd_viz import data, nets, train
    from agd_viz.optim import AGD
    from agd_viz.spec import RunSpec

    if device.type != "cuda":
        return {"skipped": "host syncs are only observable on CUDA"}
    out = {}
    ds = data.load("digits").to(device)
    model = nets.MLP(ds.d_in, ds.d_out, args.depth, args.width)
    nets.init_agd_model_(model, torch.Generator().manual_seed(1))
    model.to(device)
    opt = AGD(model.parameters())
    weights = list(model.parameters())
    probe = train._LayerProbe(weights, 1)
    batches = train._Batches(ds.x_train.shape[0], args.batch, 0, device)
    loss_fn = data.loss_fn(ds.task)
    nan = torch.tensor(float("nan"), device=device)

    def step():
        idx = batches.next()
        xb, yb = ds.x_train[idx], ds.y_train[idx]
        probe.before_step()
        opt.zero_grad(set_to_none=True)
        outp = model(xb)
        loss = loss_fn(outp, yb)
        loss.backward()
        eta, G = opt.step_tensors()
        acc = data.accuracy(outp.detach(), yb, ds.task)
        sc = torch.stack([loss.detach(), acc, eta, G, nan])
        ly = probe.after_step()
        ev = train._evaluate(model, ds.x_train, ds.y_train, loss_fn, ds.task)
        return sc, ly, ev

    probe.at_init()
    for _ in range(3):  # warm: cold estimator blocks are copied to the device once
        step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            step()
        out["step_path_syncs"] = 0
    except RuntimeError as exc:
        out["step_path_syncs"] = "found"
        out["step_path_error"] = str(exc).splitlines()[0][:300]
        out["step_path_where"] = traceback.format_exc().strip().splitlines()[-6:]
    finally:
        torch.cuda.set_sync_debug_mode(0)

    spec = RunSpec(dataset="digits", depth=args.depth, width=args.width, batch_size=args.batch,
                   device="cuda", optimizers=("agd",), steps=50, metrics="full")
    list(train.run(spec.replace(steps=3)))  # warm
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            recs = list(train.run(spec))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    flushes = sum(1 for r in recs if isinstance(r, train.Sync))
    evals = sum(1 for r in recs if isinstance(r, train.Step) and not math.isnan(r.train_loss))
    out.update(run_steps=spec.steps, run_syncs_reported=len(syncs), run_flushes=flushes, run_evals=evals,
               run_syncs_per_step=C.rounded(len(syncs) / spec.steps))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="a small network, for a smoke run (e.g. on the CPU)")
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=3)
    C.add_thread_args(ap)
    args = ap.parse_args(argv)
    if args.small:
        args.depth, args.width, args.batch, args.steps, args.rounds = 4, 64, 64, 24, 1
    import torch

    threads = C.setup_torch(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks.gpu: no CUDA device here; use --device cpu --small for a smoke run", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else C.machine()["cpu"]
    t0 = time.perf_counter()
    thr = throughput(args, device)
    opt = optimizer_step.measure(args.depth, args.width, max(3, args.rounds), 5 if args.small else 20,
                                 str(device), "wall")
    syncs = sync_check(args, device)
    elapsed = time.perf_counter() - t0

    print(f"GPU benchmark on {name}: AGD on digits, depth {args.depth} x width {args.width}, batch {args.batch}; "
          f"{args.steps}-step runs timed from step 2, median of {args.rounds} rounds")
    sps, ratio = thr["steps_per_s"], thr["ratio_to_bare"]
    rows = [("bare loop (hand-written AGD)", sps["bare"], 1.0, "-"),
            ("train.run, metrics none", sps["none"], ratio["none"], "<= 1.05"),
            (f"train.run, all metrics (layers every {thr['layer_every_auto']}, eval every "
             f"{thr['eval_every_auto']})", sps["auto"], ratio["auto"], "<= 1.15 vs none: "
             f"{thr['ratio_full_over_none']['auto']}"),
            ("train.run, layer metrics every step", sps["every"], ratio["every"],
             f"vs none: {thr['ratio_full_over_none']['every']}")]
    print(C.table(rows, ("loop", "steps/s", "time ratio to bare", "target")))
    us = opt["us_per_step"]
    print(f"\noptimiser step: Adam(foreach) {us['adam']:.0f} us, AGD step_tensors {us['agd_step_tensors']:.0f} us "
          f"(ratio {opt['ratio']}, target <= 1.0); state bytes: AGD {opt['state_bytes_agd']}, Adam "
          f"{opt['state_bytes_adam']:,} = {opt['adam_state_over_weights']}x the weights")
    print(f"host syncs: {syncs}")
    print(f"total {elapsed:.0f} s")
    C.emit({"benchmark": "gpu", "device": str(device), "device_name": name, "threads": threads,
            "small": args.small, "throughput": thr, "optimizer_step": opt, "syncs": syncs,
            "elapsed_s": C.rounded(elapsed), "machine": C.machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
